//! `bench sink`: the sink's JSON → Arrow → Parquet (zstd) → object store path
//! on realistic enriched Result records, on one core, against DuckDB with one
//! thread doing `COPY (SELECT * FROM read_json_auto(...)) TO ... (FORMAT
//! parquet, COMPRESSION zstd)` on the same records. Best of three runs each.
//! Then, given a broker, the sink binary end to end: the same records from a
//! pre-filled topic into a local lake, with its peak RSS against the memory
//! budget it was given.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use schemas::EnrichedView;

use crate::report;

const RUNS: usize = 3;

/// Enriched Result records as the enricher produces them, one JSON per line.
fn records_file(dir: &Path, count: usize) -> anyhow::Result<(std::path::PathBuf, usize)> {
    records_file_on(dir, "enriched.jsonl", count, |_| "2025-03-01".to_string())
}

/// [`records_file`], the `i`th record's event on `day(i)` (YYYY-MM-DD).
fn records_file_on(
    dir: &Path,
    name: &str,
    count: usize,
    day: impl Fn(usize) -> String,
) -> anyhow::Result<(std::path::PathBuf, usize)> {
    let path = dir.join(name);
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let mut bytes = 0;
    for i in 0..count {
        let day = day(i);
        let line = enriched_result(
            i,
            &format!("{day}T08:00:00Z"),
            &format!("{day}T08:00:00.120Z"),
        )?;
        bytes += line.len() + 1;
        writeln!(file, "{line}")?;
    }
    file.flush()?;
    Ok((path, bytes / count))
}

/// The enriched record of the `i`th Result event.
fn enriched_result(i: usize, event_timestamp: &str, received_at: &str) -> anyhow::Result<String> {
    let id = format!("results/{i}-A");
    let record = mobaro_sim::records::record("results", &id).context("results exist")?;
    Ok(serde_json::json!({
        "event_id": format!("{i:032x}"), "resource": "Results", "event": "Updated",
        "object_id": id, "event_timestamp": event_timestamp,
        "received_at": received_at, "fetched_at": received_at,
        "status": "found", "record": record,
    })
    .to_string())
}

/// A day at one event per second (2025-03-01), with one event in a hundred
/// delivered twice, a second later; returns the file and the distinct events.
fn day_file(dir: &Path) -> anyhow::Result<(std::path::PathBuf, usize)> {
    const SECONDS: usize = 86_400;
    let path = dir.join("day.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let day = chrono::NaiveDate::from_ymd_opt(2025, 3, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .context("a date")?
        .and_utc();
    let at = |s: i64| {
        (day + chrono::Duration::seconds(s)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    for second in 0..SECONDS {
        let s = second as i64;
        writeln!(file, "{}", enriched_result(second, &at(s), &at(s))?)?;
        if second % 100 == 0 {
            writeln!(file, "{}", enriched_result(second, &at(s), &at(s + 1))?)?;
        }
    }
    file.flush()?;
    Ok((path, SECONDS))
}

/// The sink's path, on the current (single) thread: each line is decoded into
/// a batch as a consumed message would be (the Result goes to `results` and its
/// envelope to `events`), then the batch's files are closed and written.
async fn ours(input: &Path, output: &Path) -> anyhow::Result<(Duration, u64)> {
    let lake = lake::Lake::open(output.to_str().context("utf-8 path")?)?;
    let started = Instant::now();
    let text = std::fs::read(input)?;
    let mut files = lake::FileSet::new(lake::Compression::Zstd, 8 << 20);
    let mut last = 0;
    for (offset, line) in text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let record = EnrichedView::from_json(line)?;
        files.push(&record, line.len(), |_| false)?;
        last = offset as i64;
    }
    let origin = lake::Origin {
        topic: "bench",
        partition: 0,
        first: 0,
        last,
    };
    let mut size = 0;
    for file in files.finish(&origin, lake::Naming::Range)? {
        size += file.bytes.len() as u64;
        // A fresh memory lake each run: every file is new.
        let _created = lake
            .create(&lake.path(&file.path.in_lake()), file.bytes)
            .await?;
    }
    Ok((started.elapsed(), size))
}

/// Runs a Python script that uses DuckDB, with `args`; returns its stdout.
pub(crate) fn run_duckdb(python: &Path, script: &str, args: &[&Path]) -> anyhow::Result<String> {
    let out = Command::new(python)
        .args(["-c", script])
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "duckdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// Rows of the lake table at `table`, a Delta table or plain Parquet files.
fn rows_in(python: &Path, table: &Path) -> anyhow::Result<u64> {
    let dir = table.parent().context("a table folder")?;
    let name = table
        .file_name()
        .and_then(|n| n.to_str())
        .context("a table name")?;
    let rows = end_to_end::duckdb(
        python,
        &format!(
            "SELECT count(*) AS n FROM {}",
            end_to_end::table_scan(dir, name)
        ),
    )?;
    rows[0]["n"].as_u64().context("a count")
}

fn duckdb(python: &Path, input: &Path, output: &Path) -> anyhow::Result<(Duration, u64)> {
    const SCRIPT: &str = r#"
import duckdb, sys, time, os
con = duckdb.connect()
con.sql("SET threads = 1")
# Its progress bar would print into the figures read from stdout.
con.sql("SET enable_progress_bar = false")
started = time.perf_counter()
con.sql(f"COPY (SELECT * FROM read_json_auto('{sys.argv[1]}')) TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION zstd)")
print(time.perf_counter() - started, os.path.getsize(sys.argv[2]))
"#;
    let text = run_duckdb(python, SCRIPT, &[input, output])?;
    let mut parts = text.split_whitespace();
    let seconds: f64 = parts.next().context("time")?.parse()?;
    let size: u64 = parts.next().context("size")?.parse()?;
    Ok((Duration::from_secs_f64(seconds), size))
}

/// The sink binary consuming `{run}.enriched` into the lake at `lake`, with
/// its operations endpoint at `ops`.
fn sink_command(brokers: &str, run: &str, ops: &str, lake: &Path) -> Command {
    let mut command = Command::new(end_to_end::binary("sink"));
    command
        .env("KAFKA_BROKERS", brokers)
        .env("ENRICHED_TOPIC", format!("{run}.enriched"))
        .env("DEAD_LETTER_TOPIC", format!("{run}.dead"))
        .env("SINK_GROUP_ID", format!("{run}.group"))
        .env("SINK_OPS_LISTEN", ops)
        .env("LAKE_URL", lake);
    command
}

/// What the end-to-end run measured.
pub(crate) struct EndToEnd {
    /// A bare consumer reading the pre-filled topic: the broker's ceiling.
    pub bare_consumer: Duration,
    pub elapsed: Duration,
    pub startup: Duration,
    pub files: u64,
    pub peak_rss_mib: Option<f64>,
    pub budget: usize,
    /// Event ids deduplication tracked at the end, and their bytes.
    pub tracked: (f64, f64),
    /// The sink's log.
    pub log: String,
}

async fn prefill(brokers: &str, topic: &str, input: &Path) -> anyhow::Result<usize> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let config = {
        let mut config = rdkafka::ClientConfig::new();
        config.set("bootstrap.servers", brokers);
        config
    };
    let admin: AdminClient<_> = config.create()?;
    admin
        .create_topics(
            &[NewTopic::new(topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    let producer: FutureProducer = config
        .clone()
        .set("linger.ms", "20")
        .set("compression.type", "none")
        .create()?;
    let text = std::fs::read_to_string(input)?;
    let mut deliveries = std::collections::VecDeque::new();
    let mut count = 0;
    for line in text.lines() {
        let key = format!("results/{}", count % 1000);
        deliveries.push_back(
            producer
                .send_result(FutureRecord::to(topic).key(&key).payload(line))
                .map_err(|(e, _)| e)?,
        );
        count += 1;
        if deliveries.len() >= 10_000 {
            if let Some(delivery) = deliveries.pop_front() {
                delivery.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for delivery in deliveries {
        delivery.await?.map_err(|(e, _)| e)?;
    }
    Ok(count)
}

/// Time a bare consumer takes to read `count` records of `topic` from its start.
async fn bare_consumer(brokers: &str, topic: &str, count: usize) -> anyhow::Result<Duration> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}.bare"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let started = Instant::now();
    for read in 0..count {
        tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .with_context(|| format!("the topic went quiet after {read} of {count} records"))??;
    }
    Ok(started.elapsed())
}

/// The sink binary draining a pre-filled topic into a local lake: time until
/// every record is in a file, and its peak RSS.
async fn end_to_end(
    brokers: &str,
    input: &Path,
    lake: &Path,
    budget: &str,
    format: &str,
    env: &[(&str, &str)],
    wait_for: Option<&str>,
) -> anyhow::Result<EndToEnd> {
    use end_to_end::{free_port, log_dir, metric, Process};
    // A run of its own per lake and input: a group of its own, which no
    // earlier sink (stopped, static member) still holds.
    let name = |path: &Path| {
        path.file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or("x")
            .to_string()
    };
    let run = format!(
        "bench.sink.{}.{format}.{}.{}",
        std::process::id(),
        name(lake),
        name(input)
    );
    let topic = format!("{run}.enriched");
    let records = prefill(brokers, &topic, input).await?;
    let bare_consumer = bare_consumer(brokers, &topic, records).await?;
    let ops = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let mut command = sink_command(brokers, &run, &ops, lake);
    command
        .env("LAKE_FORMAT", format)
        .env("SINK_MEMORY_BUDGET", budget)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied());
    let mut sink = Process::spawn("sink", command, &log_dir("bench-sink-")?)?;
    // Drain the topic, then stop the sink: its shutdown flush writes what the
    // rotation limits have not closed yet.
    let mut startup = None;
    loop {
        let consumed = metric(&ops, "sink_messages_total").await;
        if consumed > 0.0 && startup.is_none() {
            startup = Some(started.elapsed());
        }
        if consumed >= records as f64 {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the sink consumed {consumed} of {records} records"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And for the metric asked for, when one is.
    if let Some(name) = wait_for {
        while metric(&ops, name).await <= 0.0 {
            ensure!(
                started.elapsed() < Duration::from_secs(600),
                "the sink never reported {name}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let files = metric(&ops, "sink_files_total").await as u64;
    let tracked = (
        metric(&ops, "sink_dedup_tracked_events").await,
        metric(&ops, "sink_dedup_tracked_bytes").await,
    );
    sink.signal("TERM")?;
    // Peak RSS as the final flush ends: read until the process exits.
    let mut peak_rss_mib = sink.peak_rss_mib();
    let exit = loop {
        if let Some(exit) = sink.try_exit_status()? {
            break exit;
        }
        peak_rss_mib = sink.peak_rss_mib().or(peak_rss_mib);
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let elapsed = started.elapsed();
    ensure!(exit.success(), "the sink exited with {exit}");
    Ok(EndToEnd {
        bare_consumer,
        elapsed,
        startup: startup.unwrap_or_default(),
        files,
        peak_rss_mib,
        budget: runtime::parse_bytes(budget).map_err(anyhow::Error::msg)?,
        tracked,
        log: sink.log_text(),
    })
}

/// What deduplication costs end to end.
struct Deduplication {
    events: usize,
    /// Deduplication off, column monitors on (the default).
    without: Duration,
    /// Deduplication and column monitors off.
    without_monitors: Duration,
    with: Duration,
    tracked: (f64, f64),
    peak_rss_mib: Option<f64>,
    /// Ids read back by a sink started on the deduplicated lake, and how
    /// long that took.
    rebuild: (u64, f64),
}

/// `count` distinct Result events spread over the last seven days through
/// the sink into Delta tables, once with `SINK_DEDUP_HORIZON=0` and once
/// with the default horizon, each from a pre-filled topic of its own; then
/// a sink started on the deduplicated lake with one more record reads the
/// tables' ids back: the rebuild after a restart or a rebalance.
async fn deduplication(
    brokers: &str,
    dir: &Path,
    count: usize,
    budget: &str,
) -> anyhow::Result<Deduplication> {
    let today = chrono::Utc::now().date_naive();
    let day = |i: usize| (today - chrono::Days::new((i % 7) as u64)).to_string();
    let (input, _) = records_file_on(dir, "week.jsonl", count, day)?;
    let off = end_to_end(
        brokers,
        &input,
        &dir.join("dedup-off"),
        budget,
        "delta",
        &[("SINK_DEDUP_HORIZON", "0")],
        None,
    )
    .await?;
    // After the run with them, so that a warmer machine favours the run
    // without: the ratio errs against the monitors.
    let unmonitored = end_to_end(
        brokers,
        &input,
        &dir.join("monitors-off"),
        budget,
        "delta",
        &[
            ("SINK_DEDUP_HORIZON", "0"),
            ("SINK_COLUMN_MONITORS", "false"),
        ],
        None,
    )
    .await?;
    let lake = dir.join("dedup-on");
    let on = end_to_end(brokers, &input, &lake, budget, "delta", &[], None).await?;
    let (one, _) = records_file_on(dir, "one.jsonl", 1, |_| today.to_string())?;
    let again = end_to_end(
        brokers,
        &one,
        &lake,
        budget,
        "delta",
        &[("RUST_LOG", "info")],
        Some("sink_dedup_tracked_events"),
    )
    .await?;
    let line = again
        .log
        .lines()
        .find(|l| l.contains("event ids read from the tables") && !l.contains(" ids=0 "))
        .context("the restarted sink did not read the ids")?;
    let field = |name: &str| -> anyhow::Result<f64> {
        let value = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .with_context(|| format!("{name} in {line}"))?;
        Ok(value.trim_matches('"').parse()?)
    };
    Ok(Deduplication {
        events: count,
        without: off.elapsed,
        without_monitors: unmonitored.elapsed,
        with: on.elapsed,
        tracked: on.tracked,
        peak_rss_mib: on.peak_rss_mib,
        rebuild: (field("ids")? as u64, field("seconds")?),
    })
}

impl Deduplication {
    fn render(&self) -> String {
        let (ids, bytes) = self.tracked;
        let (read, seconds) = self.rebuild;
        let week_at_10 = 7.0 * 86_400.0 * 10.0 * 2.0;
        format!(
            "\nDeduplication (Delta tables): {} distinct Result events of the last seven days \
through the sink binary, each table's rows left out when it holds the event id: \
{:.0} records/s with the default horizon (7 d) against {:.0} records/s with \
`SINK_DEDUP_HORIZON=0`, same run: **ratio {:.2}** (target ≥ 0.9). It tracked {:.0} ids \
(an event has a row in `events` and one in `results`) in {:.1} MiB: **{:.1} bytes per id**; \
peak RSS {}. A sink started on that lake read the {} ids back in {:.2} s \
({:.0} ids/s): a week at 10 events/s ({:.1} million ids) would take about {:.0} s at that \
rate.\n",
            self.events,
            self.events as f64 / self.with.as_secs_f64(),
            self.events as f64 / self.without.as_secs_f64(),
            self.without.as_secs_f64() / self.with.as_secs_f64(),
            ids,
            bytes / (1024.0 * 1024.0),
            if ids > 0.0 { bytes / ids } else { 0.0 },
            self.peak_rss_mib
                .map_or("unknown".to_string(), |r| format!("{r:.0} MiB")),
            read,
            seconds,
            read as f64 / seconds,
            week_at_10 / 1e6,
            week_at_10 / (read as f64 / seconds),
        ) + &format!(
            "\nColumn monitors (typed columns' nulls, fields no column reads, arrival delay), \
both runs with deduplication off: {:.0} records/s with them (the default) against {:.0} \
records/s with `SINK_COLUMN_MONITORS=false`, same run: **ratio {:.2}** (target ≥ 0.95). \
File statistics are written in both.\n",
            self.events as f64 / self.without.as_secs_f64(),
            self.events as f64 / self.without_monitors.as_secs_f64(),
            self.without_monitors.as_secs_f64() / self.without.as_secs_f64(),
        )
    }
}

pub(crate) async fn run(
    count: usize,
    python: &Path,
    report_path: &Path,
    brokers: Option<&str>,
    budget: &str,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (input, record_bytes) = records_file(dir.path(), count)?;
    let mut ours_best = (Duration::MAX, 0);
    let mut duck_best = (Duration::MAX, 0);
    for run in 0..RUNS {
        let lake = dir.path().join(format!("lake-{run}"));
        let result = ours(&input, &lake).await?;
        ours_best = ours_best.min(result);
        let result = duckdb(
            python,
            &input,
            &dir.path().join(format!("duckdb-{run}.parquet")),
        )?;
        duck_best = duck_best.min(result);
    }
    let mut text = render(count, record_bytes, ours_best, duck_best);
    if let Some(brokers) = brokers {
        let mut measured = Vec::new();
        for format in ["parquet", "delta"] {
            let lake = dir.path().join(format!("e2e-{format}"));
            let run = end_to_end(brokers, &input, &lake, budget, format, &[], None).await?;
            let rows = rows_in(python, &lake.join("results"))?;
            ensure!(
                rows == count as u64,
                "the {format} lake holds {rows} of {count} records"
            );
            measured.push(run);
        }
        text.push_str(&render_end_to_end(count, &measured[0], &measured[1]));
        // The same Delta run without committing on catching up (as before
        // `SINK_COMMIT_INTERVAL`): what freshness costs a backlog.
        let lake = dir.path().join("e2e-delta-no-interval");
        let unhurried = end_to_end(
            brokers,
            &input,
            &lake,
            budget,
            "delta",
            &[("SINK_COMMIT_INTERVAL", "1h")],
            None,
        )
        .await?;
        text.push_str(&format!(
            "\nThe same Delta run with `SINK_COMMIT_INTERVAL=1h` (no commit on catching up, as before it existed): \
{:.0} records/s, {} files. **Ratio defaults / without: {:.2}** (target ≥ 0.95).\n",
            count as f64 / unhurried.elapsed.as_secs_f64(),
            unhurried.files,
            unhurried.elapsed.as_secs_f64() / measured[1].elapsed.as_secs_f64(),
        ));
        let day = simulated_day(brokers, python, dir.path()).await?;
        text.push_str(&day.render());
        let dedup = deduplication(brokers, dir.path(), count, budget).await?;
        text.push_str(&dedup.render());
    }
    println!("{text}");
    report::replace_section(report_path, "sink", &text)?;
    Ok(())
}

fn render(
    records: usize,
    record_bytes: usize,
    ours: (Duration, u64),
    duckdb: (Duration, u64),
) -> String {
    let rate = |d: Duration| records as f64 / d.as_secs_f64();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    format!(
        "{records} enriched Result records of about {record_bytes} bytes of JSON each (with `values`), one core, best of three.\n\n\
| path | records/s | time | Parquet size |\n|---|---|---|---|\n\
| sink: JSON → Arrow → Parquet (zstd) → object store (local) | {:.0} | {:.2} s | {:.1} MiB |\n\
| DuckDB, 1 thread: COPY (SELECT * FROM read_json_auto) TO parquet (zstd) | {:.0} | {:.2} s | {:.1} MiB |\n\n\
**Ratio sink / DuckDB: {:.2}** (target ≥ 1.0).\n",
        rate(ours.0),
        ours.0.as_secs_f64(),
        mib(ours.1),
        rate(duckdb.0),
        duckdb.0.as_secs_f64(),
        mib(duckdb.1),
        rate(ours.0) / rate(duckdb.0),
    )
}

/// The end-to-end runs into plain Parquet and into Delta tables.
fn render_end_to_end(records: usize, parquet: &EndToEnd, delta: &EndToEnd) -> String {
    let mut text = String::new();
    for (format, e2e) in [("plain Parquet", parquet), ("Delta tables", delta)] {
        let budget = e2e.budget as f64 / (1024.0 * 1024.0);
        let limit = budget + 100.0;
        let rss = e2e
            .peak_rss_mib
            .map_or("unknown".to_string(), |r| format!("{r:.0} MiB"));
        let within = e2e.peak_rss_mib.is_some_and(|r| r <= limit);
        text.push_str(&format!(
            "\nEnd to end into {format}: the sink binary draining the same records from a pre-filled \
topic (3 partitions, tansu) into a local lake, `results` and `events` files, \
with a {budget:.0} MiB memory budget and the default rotation limits, stopped \
(SIGTERM, final flush) once every record was consumed: **{:.0} records/s** \
({:.2} s from start to exit, of which {:.2} s before the first record: start-up \
and joining the group; {} files before the final flush). \
Peak RSS {rss}, {} the budget + 100 MiB ({limit:.0} MiB). \
In the same run a bare consumer (rdkafka, no processing) read the topic at \
{:.0} records/s: **ratio sink / bare consumer {:.2}**, start-up included.\n",
            records as f64 / e2e.elapsed.as_secs_f64(),
            e2e.elapsed.as_secs_f64(),
            e2e.startup.as_secs_f64(),
            e2e.files,
            if within { "within" } else { "**over**" },
            records as f64 / e2e.bare_consumer.as_secs_f64(),
            e2e.bare_consumer.as_secs_f64() / e2e.elapsed.as_secs_f64(),
        ));
    }
    text.push_str(&format!(
        "\n**Ratio Delta / plain Parquet, records/s end to end: {:.2}** (target ≥ 0.9).\n",
        parquet.elapsed.as_secs_f64() / delta.elapsed.as_secs_f64()
    ));
    text
}

/// A day at one event per second through the sink into Delta tables, with
/// files closed every 20 rows per partition (a minute's worth at that rate
/// over 3 partitions, as the 1-minute file age closes them), then `sink
/// compact`.
struct Day {
    events: usize,
    delivered: usize,
    sink_elapsed: Duration,
    before: Vec<(String, usize, u64)>,
    after: Vec<(String, usize, u64, u64)>,
    compaction: Duration,
    rows_read: u64,
}

async fn simulated_day(brokers: &str, python: &Path, dir: &Path) -> anyhow::Result<Day> {
    use end_to_end::{free_port, log_dir, metric, Process};
    let (input, events) = day_file(dir)?;
    let run = format!("bench.day.{}", std::process::id());
    let topic = format!("{run}.enriched");
    let delivered = prefill(brokers, &topic, &input).await?;
    let lake = dir.join("day-lake");
    let ops = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let mut command = sink_command(brokers, &run, &ops, &lake);
    command
        .env("SINK_MAX_FILE_ROWS", "20")
        .env("RUST_LOG", "warn");
    let sink = Process::spawn("sink", command, &log_dir("bench-day-")?)?;
    while metric(&ops, "sink_messages_total").await < delivered as f64 {
        ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "the sink did not consume the day"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sink.interrupt(Duration::from_secs(60))?;
    let sink_elapsed = started.elapsed();
    let tables = ["events", "results"];
    let mut before = Vec::new();
    for table in tables {
        let read = end_to_end::deltalake(python, &lake.join(table).display().to_string(), None)?;
        before.push((table.to_string(), read.files.len(), read.rows));
    }
    let started = Instant::now();
    let output = end_to_end::run_binary(
        "sink",
        &["compact"],
        &[("LAKE_URL", &lake.display().to_string())],
    )?;
    let compaction = started.elapsed();
    let rows_read = output
        .lines()
        .filter_map(|l| {
            l.split(" files (")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    let mut after = Vec::new();
    for table in tables {
        let read = end_to_end::deltalake(python, &lake.join(table).display().to_string(), None)?;
        after.push((
            table.to_string(),
            read.files.len(),
            read.rows,
            read.distinct,
        ));
    }
    Ok(Day {
        events,
        delivered,
        sink_elapsed,
        before,
        after,
        compaction,
        rows_read,
    })
}

impl Day {
    fn render(&self) -> String {
        let mut text = format!(
            "\nA simulated day: {} events at one per second on 2025-03-01 ({} deliveries: one \
event in a hundred twice), through the sink into Delta tables with files closed every 20 rows \
per partition (a minute of traffic at that rate), in {:.1} s; then `sink compact` (grace 2 days, \
target 128 MiB) in {:.2} s: **{:.0} rows/s** read, deduplicated and rewritten.\n\n\
| table | files before | rows before | files after | rows after | distinct event_ids |\n|---|---|---|---|---|---|\n",
            self.events,
            self.delivered,
            self.sink_elapsed.as_secs_f64(),
            self.compaction.as_secs_f64(),
            self.rows_read as f64 / self.compaction.as_secs_f64(),
        );
        for ((table, files, rows), (_, files_after, rows_after, distinct)) in
            self.before.iter().zip(&self.after)
        {
            text.push_str(&format!(
                "| {table} | {files} | {rows} | {files_after} | {rows_after} | {distinct} |\n"
            ));
        }
        text
    }
}
