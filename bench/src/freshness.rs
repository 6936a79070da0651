//! `bench freshness`: how long a webhook takes from its 202 to being
//! queryable, with every stage on its defaults. The whole pipeline runs
//! (the simulator as Mobaro's API with 100 ms per request, ingest, the
//! enricher, the sink into a local lake); signed webhooks arrive at a
//! steady rate; DuckDB polls the `events` table with `delta_scan` every
//! second and reports when each `event_id` first appears. Each rate runs
//! on its own topics and lake.
//!
//! Then a longer run at a steady rate watches today's partition: active
//! files per table and day (sampled every 5 s), commits and log objects,
//! and a DuckDB query over today's `results` against the same query over
//! the same rows in one file.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context};
use end_to_end::{free_port, log_dir, start_simulator, wait_until_ready, Process};

use crate::latency::percentile;
use crate::report;

const SECRET: &str = "bench-freshness-secret";
const API_KEY: &str = "bench-freshness-key";

/// What `bench freshness` takes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BROKERS")]
    brokers: String,
    /// Python with duckdb, its delta extension and deltalake.
    #[arg(long, env = "LAKE_PYTHON", default_value = "python3")]
    python: PathBuf,
    /// Webhooks per second, one run each.
    #[arg(long, value_delimiter = ',', default_value = "2,50")]
    rates: Vec<f64>,
    /// How long webhooks are sent in each run.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Webhooks per second of the run that watches today's partition.
    #[arg(long, default_value_t = 10.0)]
    day_rate: f64,
    /// How long that run lasts (`24h` for a whole day).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    day_duration: Duration,
    /// Commits of the log-growth run (10000: 5.5 hours of commits every
    /// 2 s; 43200 for a whole day).
    #[arg(long, default_value_t = 10_000)]
    log_commits: usize,
    /// The simulated API's delay per request.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    api_latency: Duration,
    /// Report file whose `freshness` section is replaced.
    #[arg(long, default_value = "BENCHMARKS.md")]
    report: PathBuf,
}

/// Polls the table and records when each event id first shows up.
const POLLER: &str = r#"
import glob, os, sys, time
import duckdb, duckdb_extension_delta
path = glob.glob(os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "extensions", "*", "delta.duckdb_extension"))[0]
duckdb.sql(f"INSTALL '{path}'")
duckdb.sql("LOAD delta")
table, seen = sys.argv[1], set()
while True:
    started = time.time()
    if os.path.isdir(os.path.join(table, "_delta_log")):
        try:
            ids = duckdb.sql(f"SELECT DISTINCT event_id FROM delta_scan('{table}')").fetchall()
        except Exception as error:
            print("error", error, file=sys.stderr, flush=True)
            ids = []
        now = time.time()
        for (event_id,) in ids:
            if event_id not in seen:
                seen.add(event_id)
                print(event_id, now, flush=True)
    time.sleep(max(0.0, 1.0 - (time.time() - started)))
"#;

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    let mut rates = Vec::new();
    for (index, rate) in options.rates.iter().enumerate() {
        let pipeline = Pipeline::start(options, &format!("r{index}")).await?;
        let latencies = pipeline.latencies(options, *rate, options.duration).await?;
        pipeline.stop()?;
        println!("{rate}/s: {}", summary(&latencies));
        rates.push((*rate, latencies));
    }
    let pipeline = Pipeline::start(options, "day").await?;
    let day = pipeline.watch_today(options).await?;
    pipeline.stop()?;
    let mut text = render(options, &rates, &day);
    // Written now too: the log's run is long.
    println!("{text}");
    report::replace_section(&options.report, "freshness", &text)?;
    text.push_str(&log_growth(options).await?);
    println!("{text}");
    report::replace_section(&options.report, "freshness", &text)?;
    Ok(())
}

/// A day of commits, one record each, written as the sink writes them,
/// with open days merged every 15 commits (30 s at one commit per 2 s):
/// how long a reader takes to open `results` after a hundred commits, a
/// tenth of them and all of them.
async fn log_growth(options: &Options) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let mut writer = crate::compaction::Writer::open(dir.path()).await?;
    let settings = lake::CompactionSettings {
        grace: Duration::from_secs(2 * 86_400),
        target_bytes: 128 << 20,
        compression: lake::Compression::Zstd,
        upload: lake::Upload {
            multipart_threshold: 32 << 20,
            part_size: 16 << 20,
        },
        open_day_files: 32,
    };
    let day = chrono::Utc::now().date_naive();
    let marks = [100, options.log_commits / 10, options.log_commits];
    let mut rows = Vec::new();
    let started = Instant::now();
    for n in 1..=options.log_commits {
        let record = crate::compaction::enriched(day, n, 1)?;
        writer.commit(&[record]).await?;
        if n % 15 == 0 {
            lake::merge_open_days(writer.tables(), &settings, chrono::Utc::now()).await?;
        }
        if marks.contains(&n) {
            // Let the background checkpoint of the last hundred land.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let table = dir.path().join("results");
            let output = Command::new(&options.python)
                .args(["-c", OPEN_TIMER])
                .arg(&table)
                .output()?;
            ensure!(
                output.status.success(),
                "timing a reader's start failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let mut log = 0;
            let mut checkpoint = (0, 0);
            for entry in std::fs::read_dir(table.join("_delta_log"))? {
                let entry = entry?;
                log += 1;
                let name = entry.file_name().to_string_lossy().to_string();
                if let Some(version) = name
                    .strip_suffix(".checkpoint.parquet")
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    checkpoint = checkpoint.max((version, entry.metadata()?.len()));
                }
            }
            rows.push(format!(
                "| {n} | {log} | {:.0} KiB | {} |",
                checkpoint.1 as f64 / 1024.0,
                String::from_utf8_lossy(&output.stdout).trim()
            ));
        }
    }
    Ok(format!(
        "\nLog growth: {} commits of one record each to `results` and `events` as the sink makes them \
(one every 2 s: {:.1} hours of them), open days merged every 15 commits, written in {:.0} s. \
A reader opening `results` (median of 5, in one process) as the log grows:\n\n\
| commits | log objects | last checkpoint | active files | Python `deltalake` load | DuckDB `delta_scan` count |\n|---|---|---|---|---|---|\n{}\n\n\
A checkpoint every 10 commits, without the tombstones of the merged small files: it holds the active \
files and stays the same size however many commits came before. The log objects are what a reader \
lists on a local folder; on S3 it lists from its last checkpoint on.\n",
        options.log_commits,
        options.log_commits as f64 * 2.0 / 3600.0,
        started.elapsed().as_secs_f64(),
        rows.join("\n"),
    ))
}

/// Times opening the table at argv[1] with Python `deltalake` and counting
/// it with DuckDB: the active files, then the two medians.
const OPEN_TIMER: &str = r#"
import glob, os, statistics, sys, time
import duckdb, duckdb_extension_delta
from deltalake import DeltaTable
path = glob.glob(os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "extensions", "*", "delta.duckdb_extension"))[0]
duckdb.sql(f"INSTALL '{path}'")
duckdb.sql("LOAD delta")
table = sys.argv[1]
def median(run):
    times = []
    for _ in range(5):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000
files = len(DeltaTable(table).file_uris())
load = median(lambda: DeltaTable(table))
count = median(lambda: duckdb.sql(f"SELECT count(*) FROM delta_scan('{table}')").fetchall())
print(f"{files} | {load:.0f} ms | {count:.0f} ms")
"#;

/// The pipeline of one run: the stages on their defaults, and the lake.
struct Pipeline {
    processes: Vec<Process>,
    ingest: String,
    lake: tempfile::TempDir,
    logs: PathBuf,
}

impl Pipeline {
    async fn start(options: &Options, name: &str) -> anyhow::Result<Pipeline> {
        let logs = log_dir(&format!("bench-freshness-{name}-"))?;
        let lake = tempfile::tempdir()?;
        let run = format!("bench.fresh.{}.{name}", std::process::id());
        let (raw, enriched) = (format!("{run}.raw"), format!("{run}.enriched"));
        let dead = format!("{run}.dead");
        let kafka = [
            ("KAFKA_BROKERS", options.brokers.as_str()),
            ("RAW_TOPIC", raw.as_str()),
            ("ENRICHED_TOPIC", enriched.as_str()),
            ("DEAD_LETTER_TOPIC", dead.as_str()),
        ];
        let latency = format!("{}ms", options.api_latency.as_millis());
        let (sim, api) = start_simulator(API_KEY, &["--latency", &latency], &[], &logs).await?;
        let ingest_listen = format!("127.0.0.1:{}", free_port());
        let enricher_ops = format!("127.0.0.1:{}", free_port());
        let sink_ops = format!("127.0.0.1:{}", free_port());
        let api_url = format!("{api}/api/customers/");
        let lake_url = lake.path().display().to_string();
        let with = |extra: &[(&'static str, &str)]| -> Vec<(&str, String)> {
            kafka
                .iter()
                .chain(extra)
                .map(|(k, v)| (*k, v.to_string()))
                .collect()
        };
        let start = |name: &str, pairs: Vec<(&str, String)>| {
            let env: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Process::start(name, &[], &env, &logs)
        };
        let ingest = start(
            "ingest",
            with(&[
                ("INGEST_LISTEN", &ingest_listen),
                ("MOBARO_WEBHOOK_SECRETS", SECRET),
            ]),
        )?;
        let enricher = start(
            "enricher",
            with(&[
                ("MOBARO_API_URL", &api_url),
                ("MOBARO_API_KEY", API_KEY),
                ("ENRICHER_OPS_LISTEN", &enricher_ops),
                ("ENRICHER_GROUP_ID", &format!("{run}.enricher")),
            ]),
        )?;
        let sink = start(
            "sink",
            with(&[
                ("LAKE_URL", &lake_url),
                ("SINK_OPS_LISTEN", &sink_ops),
                ("SINK_GROUP_ID", &format!("{run}.sink")),
            ]),
        )?;
        for url in [
            format!("http://{ingest_listen}/readyz"),
            format!("http://{enricher_ops}/readyz"),
            format!("http://{sink_ops}/readyz"),
        ] {
            wait_until_ready(&url, Duration::from_secs(60)).await?;
        }
        Ok(Pipeline {
            processes: vec![ingest, enricher, sink, sim],
            ingest: ingest_listen,
            lake,
            logs,
        })
    }

    fn stop(self) -> anyhow::Result<()> {
        for process in self.processes {
            process.interrupt(Duration::from_secs(30))?;
        }
        Ok(())
    }

    /// Sends webhooks at `rate` for `duration` while DuckDB polls `events`:
    /// each one's time from its 202 to the first poll that returned it.
    async fn latencies(
        &self,
        options: &Options,
        rate: f64,
        duration: Duration,
    ) -> anyhow::Result<Vec<Duration>> {
        let seen: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
        let mut poller = Command::new(&options.python)
            .args(["-c", POLLER])
            .arg(self.lake.path().join("events"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = poller.stdout.take().context("poller output")?;
        let recorder = {
            let seen = seen.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let mut parts = line.split_whitespace();
                    if let (Some(id), Some(Ok(at))) = (parts.next(), parts.next().map(str::parse)) {
                        seen.lock()
                            .expect("not poisoned")
                            .insert(id.to_string(), at);
                    }
                }
            })
        };
        let accepted = send(&self.ingest, rate, duration).await?;
        let deadline = Instant::now() + Duration::from_secs(300);
        while seen.lock().expect("not poisoned").len() < accepted.len() {
            ensure!(
                Instant::now() < deadline,
                "only {} of {} webhooks became queryable within 5 minutes (logs: {})",
                seen.lock().expect("not poisoned").len(),
                accepted.len(),
                self.logs.display()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        poller.kill()?;
        let _ = poller.wait();
        let _ = recorder.join();
        let seen = seen.lock().expect("not poisoned");
        let mut latencies: Vec<Duration> = accepted
            .iter()
            .filter_map(|(id, at)| Some(Duration::from_secs_f64((seen.get(id)? - at).max(0.0))))
            .collect();
        latencies.sort();
        Ok(latencies)
    }

    /// Sends webhooks at the day rate while a watcher samples today's
    /// files; then times the query over today against the same rows in one
    /// file.
    async fn watch_today(&self, options: &Options) -> anyhow::Result<Day> {
        let mut watcher = Command::new(&options.python)
            .args(["-c", WATCHER])
            .arg(self.lake.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = watcher.stdout.take().context("watcher output")?;
        let samples = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        let sent = send(&self.ingest, options.day_rate, options.day_duration)
            .await?
            .len();
        // Whatever is buffered is committed within seconds of the last one.
        tokio::time::sleep(Duration::from_secs(10)).await;
        watcher.kill()?;
        let _ = watcher.wait();
        let samples = samples.join().unwrap_or_default();
        let output = Command::new(&options.python)
            .args(["-c", TODAY_QUERY])
            .arg(self.lake.path())
            .output()?;
        ensure!(
            output.status.success(),
            "timing the query over today failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Day::parse(sent, &samples, &String::from_utf8_lossy(&output.stdout))
    }
}

/// What the run at the day rate found.
#[derive(Debug, Default)]
struct Day {
    sent: usize,
    /// Per table: most active files in today's partition, and at the end.
    files: Vec<(String, u64, u64)>,
    /// Per table: commits, and objects in the log.
    log: Vec<(String, u64, u64)>,
    /// The query over today, as written and in one file (seconds).
    today: f64,
    compacted: f64,
    rows: u64,
}

impl Day {
    fn parse(sent: usize, samples: &[String], timed: &str) -> anyhow::Result<Day> {
        let mut day = Day {
            sent,
            ..Day::default()
        };
        let mut files: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        for line in samples {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let ["files", table, count] = parts.as_slice() {
                let count: u64 = count.parse()?;
                let entry = files.entry(table.to_string()).or_default();
                *entry = (entry.0.max(count), count);
            }
        }
        day.files = files
            .into_iter()
            .map(|(t, (most, last))| (t, most, last))
            .collect();
        for line in timed.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["log", table, commits, objects] => {
                    day.log
                        .push((table.to_string(), commits.parse()?, objects.parse()?))
                }
                ["files", table, count] => {
                    if let Some(entry) = day.files.iter_mut().find(|(t, _, _)| t == table) {
                        entry.2 = count.parse()?;
                        entry.1 = entry.1.max(entry.2);
                    }
                }
                ["today", seconds, rows] => {
                    day.today = seconds.parse()?;
                    day.rows = rows.parse()?;
                }
                ["compacted", seconds] => day.compacted = seconds.parse()?,
                _ => {}
            }
        }
        ensure!(
            day.today > 0.0 && day.compacted > 0.0,
            "no query timings in {timed:?}"
        );
        Ok(day)
    }
}

/// Samples the active files of today's partition of `events` and
/// `results` every 5 s.
const WATCHER: &str = r#"
import datetime, os, sys, time
from deltalake import DeltaTable
lake = sys.argv[1]
while True:
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    for table in ("events", "results"):
        try:
            files = DeltaTable(os.path.join(lake, table)).file_uris()
            print("files", table, sum(1 for f in files if f"dt={today}/" in f), flush=True)
        except Exception:
            pass
    time.sleep(5)
"#;

/// Counts the log, then times a count by location and hour over today's
/// `results` (median of 5) as written, and over the same rows written
/// again as one file.
const TODAY_QUERY: &str = r#"
import datetime, glob, os, statistics, sys, tempfile, time
import duckdb, duckdb_extension_delta
from deltalake import DeltaTable, QueryBuilder, write_deltalake
path = glob.glob(os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "extensions", "*", "delta.duckdb_extension"))[0]
duckdb.sql(f"INSTALL '{path}'")
duckdb.sql("LOAD delta")
lake = sys.argv[1]
today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
for table in ("events", "results"):
    log = os.listdir(os.path.join(lake, table, "_delta_log"))
    print("log", table, sum(1 for f in log if f.endswith(".json")), len(log))
    files = DeltaTable(os.path.join(lake, table)).file_uris()
    print("files", table, sum(1 for f in files if f"dt={today}/" in f))
query = "SELECT location_id, date_trunc('hour', event_timestamp) AS hour, count(*) FROM delta_scan('{}') WHERE dt = '" + today + "' GROUP BY ALL"
def timed(table):
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        rows = duckdb.sql(query.format(table)).fetchall()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs), sum(r[2] for r in rows)
seconds, rows = timed(os.path.join(lake, "results"))
print("today", seconds, rows)
one = os.path.join(tempfile.mkdtemp(), "results")
rows_now = QueryBuilder().register("t", DeltaTable(os.path.join(lake, "results"))).execute("SELECT * FROM t")
write_deltalake(one, rows_now, partition_by=["dt"])
seconds, same = timed(one)
assert same == rows, (same, rows)
print("compacted", seconds)
"#;

/// Sends signed webhooks at `rate` for `duration`; each accepted one's
/// event id and when its 202 came.
async fn send(listen: &str, rate: f64, duration: Duration) -> anyhow::Result<Vec<(String, f64)>> {
    let client = reqwest::Client::new();
    let url = format!("http://{listen}/webhooks/mobaro");
    let count = (rate * duration.as_secs_f64()).round() as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut accepted = Vec::with_capacity(count);
    for i in 0..count {
        tick.tick().await;
        let object = format!("results/{}-A", i % 5000);
        let id = end_to_end::post_result_update(&client, &url, SECRET, &object).await?;
        accepted.push((id, now_seconds()));
    }
    Ok(accepted)
}

fn summary(latencies: &[Duration]) -> String {
    let seconds = |d: Duration| d.as_secs_f64();
    format!(
        "p50 {:.1} s, p95 {:.1} s, max {:.1} s",
        seconds(percentile(latencies, 0.50)),
        seconds(percentile(latencies, 0.95)),
        seconds(latencies.last().copied().unwrap_or_default()),
    )
}

fn render(options: &Options, rates: &[(f64, Vec<Duration>)], day: &Day) -> String {
    let mut text = format!(
        "Every stage on its defaults (Delta tables, `SINK_COMMIT_INTERVAL` 1 s, open days merged past 32 small files every 30 s), \
the simulated API answering in {} ms. Signed webhooks through ingest, the enricher and the sink into a local lake; \
DuckDB's `delta_scan` polled `events` every second. From each 202 to the first poll that returned its `event_id` \
(target p95 ≤ 5 s):\n\n| webhooks/s | sent | p50 | p95 | max |\n|---|---|---|---|---|\n",
        options.api_latency.as_millis()
    );
    for (rate, latencies) in rates {
        let seconds = |p: f64| percentile(latencies, p).as_secs_f64();
        text.push_str(&format!(
            "| {rate} | {} | {:.1} s | **{:.1} s** | {:.1} s |\n",
            latencies.len(),
            seconds(0.50),
            seconds(0.95),
            latencies.last().map_or(0.0, Duration::as_secs_f64),
        ));
    }
    let minutes = options.day_duration.as_secs_f64() / 60.0;
    text.push_str(&format!(
        "\nToday's partition at {}/s for {:.0} min ({} webhooks): active files in today's `dt` (sampled every 5 s), \
most / at the end: {}. Commits and log objects: {} ({:.0} commits per table per minute). \
DuckDB counting today's {} `results` rows by location and hour: **{:.0} ms as written, {:.0} ms over the same rows in one file: {:.2}×** (target ≤ 2×).\n",
        options.day_rate,
        minutes,
        day.sent,
        day.files
            .iter()
            .map(|(t, most, last)| format!("`{t}` {most} / {last}"))
            .collect::<Vec<_>>()
            .join(", "),
        day.log
            .iter()
            .map(|(t, commits, objects)| format!("`{t}` {commits} commits, {objects} objects"))
            .collect::<Vec<_>>()
            .join("; "),
        day.log.iter().map(|(_, c, _)| *c as f64).fold(0.0, f64::max) / minutes.max(1e-9),
        day.rows,
        day.today * 1000.0,
        day.compacted * 1000.0,
        day.today / day.compacted,
    ));
    text
}
