//! `bench freshness`: how long a webhook takes from its 202 to being
//! queryable, with every stage on its defaults (Delta tables, files closed
//! after a minute). The whole pipeline runs (simulator, ingest, enricher,
//! sink into a local lake); signed webhooks arrive at a steady rate; DuckDB
//! polls the `events` table with `delta_scan` every second and reports when
//! each `event_id` first appears.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context};
use end_to_end::{free_port, log_dir, sign, start_simulator, wait_until_ready, Process};

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
    /// Python with duckdb and its delta extension.
    #[arg(long, env = "LAKE_PYTHON", default_value = "python3")]
    python: PathBuf,
    /// Webhooks per second.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// How long webhooks are sent.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    duration: Duration,
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
    let logs = log_dir("bench-freshness-")?;
    let lake = tempfile::tempdir()?;
    let run = format!("bench.fresh.{}", std::process::id());
    let (raw, enriched) = (format!("{run}.raw"), format!("{run}.enriched"));
    let dead = format!("{run}.dead");
    let kafka = [
        ("KAFKA_BROKERS", options.brokers.as_str()),
        ("RAW_TOPIC", raw.as_str()),
        ("ENRICHED_TOPIC", enriched.as_str()),
        ("DEAD_LETTER_TOPIC", dead.as_str()),
    ];
    let (sim, api) = start_simulator(API_KEY, &[], &[], &logs).await?;
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

    let seen: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
    let mut poller = Command::new(&options.python)
        .args(["-c", POLLER])
        .arg(lake.path().join("events"))
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

    let accepted = send(options, &ingest_listen).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen.lock().expect("not poisoned").len() < accepted.len() {
        ensure!(
            Instant::now() < deadline,
            "only {} of {} webhooks became queryable within 5 minutes",
            seen.lock().expect("not poisoned").len(),
            accepted.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    poller.kill()?;
    let _ = poller.wait();
    let _ = recorder.join();
    for process in [ingest, enricher, sink, sim] {
        process.interrupt(Duration::from_secs(30))?;
    }

    let seen = seen.lock().expect("not poisoned");
    let mut latencies: Vec<Duration> = accepted
        .iter()
        .filter_map(|(id, at)| Some(Duration::from_secs_f64((seen.get(id)? - at).max(0.0))))
        .collect();
    latencies.sort();
    let text = render(options, accepted.len(), &latencies);
    println!("{text}");
    report::replace_section(&options.report, "freshness", &text)?;
    Ok(())
}

/// Sends signed webhooks at the rate for the duration; each accepted one's
/// event id and when its 202 came.
async fn send(options: &Options, listen: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let client = reqwest::Client::new();
    let url = format!("http://{listen}/webhooks/mobaro");
    let count = (options.rate * options.duration.as_secs_f64()).round() as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / options.rate));
    let mut accepted = Vec::with_capacity(count);
    for i in 0..count {
        tick.tick().await;
        let body = format!(
            r#"{{"resource":"Results","event":"Updated","objectId":"results/{}-A","timestamp":"{}"}}"#,
            i % 500,
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
        let response = client
            .post(&url)
            .header("X-Webhook-Signature", sign(SECRET, &body))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?
            .error_for_status()?;
        let at = now_seconds();
        let answer: serde_json::Value = response.json().await?;
        let id = answer["event_id"]
            .as_str()
            .context("no event_id in the 202")?;
        accepted.push((id.to_string(), at));
    }
    Ok(accepted)
}

fn render(options: &Options, sent: usize, latencies: &[Duration]) -> String {
    let seconds = |d: Duration| d.as_secs_f64();
    format!(
        "Webhook to queryable, every stage on its defaults (Delta tables, files closed after 1 min): \
{sent} signed webhooks at {}/s for {} s through ingest, the enricher (simulated API) and the sink \
into a local lake; DuckDB's `delta_scan` polled `events` every second. From each 202 to the \
first poll that returned its `event_id`: **p50 {:.1} s, p95 {:.1} s, max {:.1} s** (target p95 ≤ 90 s).\n",
        options.rate,
        options.duration.as_secs(),
        seconds(percentile(latencies, 0.50)),
        seconds(percentile(latencies, 0.95)),
        seconds(latencies.last().copied().unwrap_or_default()),
    )
}
