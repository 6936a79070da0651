//! `bench backfill`: objects per second through `enricher backfill` from the
//! simulator's list endpoints into the broker, against the ceiling its
//! configuration allows (page size / API latency for one sequential scan, or
//! page size × the rate share), and API calls per object.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use end_to_end::{backfill_summary, binary, log_dir, start_simulator};

use crate::report;

const API_KEY: &str = "bench-api-key";
const PAGE_SIZE: usize = 128;

/// What `bench backfill` is asked to do.
#[derive(clap::Args)]
pub(crate) struct Options {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BROKERS")]
    brokers: String,
    /// Report file whose `backfill` section is replaced.
    #[arg(long, default_value = "BENCHMARKS.md")]
    report: PathBuf,
}

struct Scenario {
    name: &'static str,
    latency_ms: u64,
    rate_limit: f64,
    objects: u32,
}

const SCENARIOS: [Scenario; 2] = [
    Scenario {
        name: "API at 50 ms, share 1000 req/s",
        latency_ms: 50,
        rate_limit: 1000.0,
        objects: 20_000,
    },
    Scenario {
        name: "API at 0 ms, share 5 req/s",
        latency_ms: 0,
        rate_limit: 5.0,
        objects: 5_000,
    },
];

struct Outcome {
    objects: u64,
    elapsed: Duration,
    /// The scan alone, from its first list request to its last
    /// acknowledgement, as the command reports it.
    scanning: Duration,
    list_requests: u64,
}

pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    let mut outcomes = vec![];
    for (index, scenario) in SCENARIOS.iter().enumerate() {
        eprintln!("{}", scenario.name);
        outcomes.push(measure(&options.brokers, scenario, index).await?);
    }
    let text = render(&outcomes);
    println!("{text}");
    report::replace_section(&options.report, "backfill", &text)?;
    Ok(())
}

async fn measure(brokers: &str, scenario: &Scenario, index: usize) -> anyhow::Result<Outcome> {
    let logs = log_dir("bench-backfill-")?;
    let run = format!("bench.backfill.{}.{index}", std::process::id());
    let latency = format!("{}ms", scenario.latency_ms);
    let objects = scenario.objects.to_string();
    let (_sim, api) = start_simulator(
        API_KEY,
        &["--latency", &latency, "--objects", &objects],
        &[("RUST_LOG", "warn")],
        &logs,
    )
    .await?;
    // The simulator builds its catalogue on the first list request, which a
    // real API does not: that request is made before the clock starts.
    let warm_up = reqwest::Client::new()
        .get(format!("{api}/api/customers/results?limit=1"))
        .header("x-api-key", API_KEY)
        .send()
        .await?;
    anyhow::ensure!(
        warm_up.status().is_success(),
        "warm-up list request: {}",
        warm_up.status()
    );
    let started = Instant::now();
    let output = std::process::Command::new(binary("enricher"))
        .args(["backfill", "--resource", "Results", "--page-size"])
        .arg(PAGE_SIZE.to_string())
        .arg("--rate-limit")
        .arg(scenario.rate_limit.to_string())
        .env("KAFKA_BROKERS", brokers)
        .env("ENRICHED_TOPIC", format!("{run}.enriched"))
        .env("BACKFILL_CHECKPOINT_TOPIC", format!("{run}.checkpoints"))
        .env("MOBARO_API_URL", format!("{api}/api/customers/"))
        .env("MOBARO_API_KEY", API_KEY)
        .env("RUST_LOG", "warn")
        .output()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        output.status.success(),
        "backfill failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (objects, scanning) = backfill_summary(&String::from_utf8_lossy(&output.stdout))?;
    let stats: Value = reqwest::get(format!("{api}/sim/stats"))
        .await?
        .json()
        .await?;
    Ok(Outcome {
        objects,
        elapsed,
        scanning: Duration::from_secs_f64(scanning),
        list_requests: stats["list_requests"].as_u64().context("list_requests")? - 1,
    })
}

fn render(outcomes: &[Outcome]) -> String {
    let mut text = format!(
        "Results listed {PAGE_SIZE} per page from the simulator into the broker (tansu, sqlite), \
         one sequential scan. *Command*: from the command's start to its exit (start-up, topic \
         creation and reading the checkpoint topic included: about 2.5 s, most of it the \
         reader's idle wait on an empty topic); *scan*: from the first list request to the last \
         acknowledgement, as the command reports it. Ratios against the ceiling.\n\n\
         | scenario | objects | command | scan | scan objects/s | ceiling | ratio (scan) | ratio (command) | list requests | calls/object |\n\
         |---|---|---|---|---|---|---|---|---|---|\n"
    );
    for (scenario, outcome) in SCENARIOS.iter().zip(outcomes) {
        let per_second = outcome.objects as f64 / outcome.elapsed.as_secs_f64();
        let scan_per_second = outcome.objects as f64 / outcome.scanning.as_secs_f64().max(0.001);
        let by_latency = if scenario.latency_ms == 0 {
            f64::INFINITY
        } else {
            PAGE_SIZE as f64 * 1000.0 / scenario.latency_ms as f64
        };
        let ceiling = by_latency.min(PAGE_SIZE as f64 * scenario.rate_limit);
        text.push_str(&format!(
            "| {} | {} | {:.1} s | {:.1} s | {scan_per_second:.0} | {ceiling:.0}/s | {:.2} | {:.2} | {} | {:.4} |\n",
            scenario.name,
            outcome.objects,
            outcome.elapsed.as_secs_f64(),
            outcome.scanning.as_secs_f64(),
            scan_per_second / ceiling,
            per_second / ceiling,
            outcome.list_requests,
            outcome.list_requests as f64 / outcome.objects as f64,
        ));
    }
    text.push_str(&format!(
        "\nTargets: ratio (scan) ≥ 0.8 at 50 ms per request; calls/object ≤ 1/{PAGE_SIZE} + 1 % = {:.4}.\n",
        1.0 / PAGE_SIZE as f64 * 1.01
    ));
    text
}
