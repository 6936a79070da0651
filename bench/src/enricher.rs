//! `bench enricher`: enriched events per second from a pre-filled raw topic,
//! with the simulated API answering at 0 ms and at 50 ms; the achieved request
//! rate under a configured limit; API calls per event on a bursty stream. The
//! baselines are the ceilings the configuration allows: concurrency / latency,
//! and the configured rate.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

use end_to_end::{binary, free_port, log_dir, start_simulator, wait_until_ready, Process};

use crate::report;
use crate::READY_WITHIN;

const API_KEY: &str = "bench-api-key";
const CONCURRENCY: usize = 16;

pub(crate) struct Scenario {
    pub name: &'static str,
    pub latency_ms: u64,
    pub rate_limit: Option<f64>,
    pub objects: usize,
    pub updates_per_object: usize,
}

pub(crate) struct Outcome {
    pub events: usize,
    pub per_second: f64,
    pub api_calls: u64,
    pub api_per_second: f64,
    pub peak_rss_mib: Option<f64>,
}

pub(crate) const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "API at 0 ms",
        latency_ms: 0,
        rate_limit: None,
        objects: 20_000,
        updates_per_object: 1,
    },
    Scenario {
        name: "API at 50 ms",
        latency_ms: 50,
        rate_limit: None,
        objects: 3_000,
        updates_per_object: 1,
    },
    Scenario {
        name: "limit 50 req/s",
        latency_ms: 0,
        rate_limit: Some(50.0),
        objects: 750,
        updates_per_object: 1,
    },
    Scenario {
        name: "bursty, 10 updates per object, 50 ms",
        latency_ms: 50,
        rate_limit: None,
        objects: 300,
        updates_per_object: 10,
    },
];

async fn prefill(brokers: &str, topic: &str, scenario: &Scenario) -> anyhow::Result<usize> {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .create()?;
    let mut deliveries = vec![];
    for update in 0..scenario.updates_per_object {
        for object in 0..scenario.objects {
            let id = format!("results/{object}-A");
            let body = serde_json::json!({
                "resource": "Results", "event": "Updated", "objectId": id,
                "timestamp": format!("2025-03-01T08:00:{:02}Z", update % 60),
            })
            .to_string();
            let record = FutureRecord::to(topic).key(&id).payload(&body);
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
        }
    }
    let count = deliveries.len();
    for delivery in deliveries {
        delivery.await?.map_err(|(e, _)| e)?;
    }
    Ok(count)
}

/// Time between the first and the last of `count` records in `topic`, by the
/// broker timestamps the enricher's producer set.
async fn watch(brokers: &str, topic: &str, count: usize) -> anyhow::Result<Duration> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-watch-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for received in 0..count {
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .with_context(|| {
                format!("enriched records stopped arriving after {received} of {count}")
            })??;
        let at = message
            .timestamp()
            .to_millis()
            .context("record without timestamp")?;
        (first, last) = (first.min(at), last.max(at));
    }
    Ok(Duration::from_millis(
        u64::try_from(last - first).unwrap_or_default(),
    ))
}

async fn api_requests(api: &str) -> anyhow::Result<u64> {
    let stats: serde_json::Value = reqwest::get(format!("{api}/sim/stats"))
        .await?
        .json()
        .await?;
    stats["requests"].as_u64().context("requests")
}

async fn measure(brokers: &str, scenario: &Scenario, index: usize) -> anyhow::Result<Outcome> {
    let run = format!("bench.enricher.{}.{index}", std::process::id());
    let (raw, enriched) = (format!("{run}.raw"), format!("{run}.enriched"));
    let logs = log_dir("bench-enricher-")?;
    let latency = format!("{}ms", scenario.latency_ms);
    let (_sim, api) = start_simulator(
        API_KEY,
        &["--latency", &latency],
        &[("RUST_LOG", "warn")],
        &logs,
    )
    .await?;

    let ops_port = free_port();
    let mut enricher = Command::new(binary("enricher"));
    enricher
        .env("KAFKA_BROKERS", brokers)
        .env("RAW_TOPIC", &raw)
        .env("ENRICHED_TOPIC", &enriched)
        .env("DEAD_LETTER_TOPIC", format!("{run}.dead"))
        .env("ENRICHER_GROUP_ID", format!("{run}.group"))
        .env("ENRICHER_OPS_LISTEN", format!("127.0.0.1:{ops_port}"))
        .env("ENRICHER_CONCURRENCY", CONCURRENCY.to_string())
        .env("MOBARO_API_URL", format!("{api}/api/customers/"))
        .env("MOBARO_API_KEY", API_KEY)
        .env("RUST_LOG", "info");
    if let Some(rate) = scenario.rate_limit {
        enricher
            .env("MOBARO_API_RATE_LIMIT", rate.to_string())
            .env("MOBARO_API_RATE_BURST", "1");
    }
    // The enricher creates the topics; fill the raw topic before it consumes.
    enricher.env("ENRICHER_MAX_IN_FLIGHT", "10000");
    let enricher = Process::spawn("enricher", enricher, &logs)?;
    wait_until_ready(&format!("http://127.0.0.1:{ops_port}/readyz"), READY_WITHIN).await?;
    let events = prefill(brokers, &raw, scenario).await?;
    let elapsed = watch(brokers, &enriched, events).await?;
    let api_calls = api_requests(&api).await?;
    Ok(Outcome {
        events,
        per_second: (events - 1) as f64 / elapsed.as_secs_f64(),
        api_calls,
        api_per_second: api_calls as f64 / elapsed.as_secs_f64(),
        peak_rss_mib: enricher.peak_rss_mib(),
    })
}

pub(crate) async fn run(brokers: &str, report_path: &Path) -> anyhow::Result<()> {
    let mut outcomes = vec![];
    for (index, scenario) in SCENARIOS.iter().enumerate() {
        let outcome = measure(brokers, scenario, index).await?;
        eprintln!(
            "{}: {:.0} events/s, {} API calls",
            scenario.name, outcome.per_second, outcome.api_calls
        );
        outcomes.push(outcome);
    }
    let text = render(CONCURRENCY, &SCENARIOS, &outcomes);
    println!("{text}");
    report::replace_section(report_path, "enricher", &text)?;
    Ok(())
}

fn render(concurrency: usize, scenarios: &[Scenario], outcomes: &[Outcome]) -> String {
    let mut text = format!(
        "Pre-filled raw topic, concurrency {concurrency}, simulated API on the same machine; \
         rates are measured between the first and the last enriched record's broker timestamp.\n\n\
| scenario | events | events/s | ceiling | ratio | API calls | calls/event | API req/s | peak RSS |\n\
|---|---|---|---|---|---|---|---|---|\n"
    );
    for (scenario, outcome) in scenarios.iter().zip(outcomes) {
        let ceiling = match (scenario.rate_limit, scenario.latency_ms) {
            (Some(rate), _) => Some(rate),
            (None, 0) => None,
            (None, ms) if scenario.updates_per_object == 1 => {
                Some(concurrency as f64 * 1000.0 / ms as f64)
            }
            _ => None,
        };
        let measured = if scenario.rate_limit.is_some() {
            outcome.api_per_second
        } else {
            outcome.per_second
        };
        let (ceiling, ratio) = match ceiling {
            Some(c) => (format!("{c:.0}/s"), format!("{:.2}", measured / c)),
            None => ("-".to_string(), "-".to_string()),
        };
        text.push_str(&format!(
            "| {} | {} | {:.0} | {ceiling} | {ratio} | {} | {:.3} | {:.1} | {} |\n",
            scenario.name,
            outcome.events,
            outcome.per_second,
            outcome.api_calls,
            outcome.api_calls as f64 / outcome.events as f64,
            outcome.api_per_second,
            report::rss(outcome.peak_rss_mib),
        ));
    }
    text.push_str(
        "\nTargets: at 50 ms, ratio ≥ 0.9 of concurrency / latency; under a limit, the API \
         request rate within 5% of it (ratio 0.95–1.05); bursty stream ≤ 0.2 calls/event.\n",
    );
    text
}
