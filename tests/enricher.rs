//! `enricher` against a real broker, with the simulator as Mobaro's API and its
//! fault injection: every outcome, and the pause on a refused key.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use end_to_end::{free_port, header, read_topic, unique, wait_until_ready, Process, Services};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use serde_json::{json, Value};

const API_KEY: &str = "enricher-test-key";

fn event(resource: &str, kind: &str, object: &str) -> String {
    json!({"resource": resource, "event": kind, "objectId": object, "timestamp": "2025-03-01T08:00:00Z"}).to_string()
}

async fn produce(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &str,
) -> anyhow::Result<()> {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    Ok(())
}

async fn faults(sim: &str, faults: Value) -> anyhow::Result<()> {
    reqwest::Client::new()
        .post(format!("{sim}/sim/faults"))
        .json(&faults)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

fn by_object(records: &[OwnedMessage]) -> anyhow::Result<Vec<(String, Value)>> {
    records
        .iter()
        .map(|r| {
            let value: Value = serde_json::from_slice(r.payload().context("payload")?)?;
            Ok((
                value["object_id"]
                    .as_str()
                    .context("object_id")?
                    .to_string(),
                value,
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_outcome_is_recorded_and_a_refused_key_pauses_until_fixed() -> anyhow::Result<()> {
    let services = Services::from_env();
    let run = unique("enricher");
    let logs = tempfile::Builder::new()
        .prefix("enricher-logs-")
        .tempdir()?
        .keep();
    eprintln!("logs in {}", logs.display());
    let api_addr = format!("127.0.0.1:{}", free_port());
    let ops_addr = format!("127.0.0.1:{}", free_port());
    let sim_url = format!("http://{api_addr}");
    let (raw, enriched, dead) = (
        format!("{run}.raw"),
        format!("{run}.enriched"),
        format!("{run}.dead"),
    );
    let _sim = Process::start(
        "mobaro-sim",
        &["serve", "--listen", &api_addr, "--api-key", API_KEY],
        &[],
        &logs,
    )?;
    let api_url = format!("{sim_url}/api/customers/");
    let group = format!("{run}-group");
    let enricher = Process::start(
        "enricher",
        &[],
        &[
            ("KAFKA_BROKERS", &services.brokers),
            ("RAW_TOPIC", &raw),
            ("ENRICHED_TOPIC", &enriched),
            ("DEAD_LETTER_TOPIC", &dead),
            ("MOBARO_API_URL", &api_url),
            ("MOBARO_API_KEY", API_KEY),
            ("MOBARO_API_MAX_ATTEMPTS", "2"),
            ("MOBARO_API_BACKOFF", "50ms"),
            ("ENRICHER_GROUP_ID", &group),
            ("ENRICHER_OPS_LISTEN", &ops_addr),
        ],
        &logs,
    )?;
    wait_until_ready(&format!("{sim_url}/sim/stats"), Duration::from_secs(20)).await?;
    wait_until_ready(
        &format!("http://{ops_addr}/readyz"),
        Duration::from_secs(30),
    )
    .await?;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &services.brokers)
        .create()?;

    // Found, not found, deleted, passed through, and unparsable.
    faults(&sim_url, json!({"not_found": ["results/404-A"]})).await?;
    produce(
        &producer,
        &raw,
        "results/404-A",
        &event("Results", "Updated", "results/404-A"),
    )
    .await?;
    produce(
        &producer,
        &raw,
        "results/5-A",
        &event("Results", "Deleted", "results/5-A"),
    )
    .await?;
    produce(
        &producer,
        &raw,
        "users/6-B",
        &event("users", "Created", "users/6-B"),
    )
    .await?;
    produce(
        &producer,
        &raw,
        "notes/7-C",
        &event("Notes", "Created", "notes/7-C"),
    )
    .await?;
    produce(&producer, &raw, "junk", "{\"resource\":").await?;
    let records =
        by_object(&read_topic(&services.brokers, &enriched, 4, Duration::from_secs(30)).await?)?;
    let status = |id: &str| {
        records
            .iter()
            .find(|(o, _)| o == id)
            .map(|(_, v)| v["status"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(status("results/404-A").as_deref(), Some("not_found"));
    assert_eq!(status("results/5-A").as_deref(), Some("deleted"));
    assert_eq!(status("users/6-B").as_deref(), Some("found"));
    assert_eq!(status("notes/7-C").as_deref(), Some("not_fetched"));
    let user = &records
        .iter()
        .find(|(o, _)| o == "users/6-B")
        .context("user")?
        .1;
    assert_eq!(user["record"]["id"], "users/6-B");
    assert_eq!(
        user["resource"], "Users",
        "names are stored in canonical casing"
    );
    let dead_letters = read_topic(&services.brokers, &dead, 1, Duration::from_secs(30)).await?;
    assert_eq!(
        header(&dead_letters[0], "dlq_error_class").as_deref(),
        Some("unparsable")
    );
    assert_eq!(
        header(&dead_letters[0], "dlq_original_topic").as_deref(),
        Some(raw.as_str())
    );

    // Retries exhausted on 503: dead-lettered with the reason, then it moves on.
    faults(&sim_url, json!({"status": 503})).await?;
    produce(
        &producer,
        &raw,
        "results/9-A",
        &event("Results", "Updated", "results/9-A"),
    )
    .await?;
    let dead_letters = read_topic(&services.brokers, &dead, 2, Duration::from_secs(30)).await?;
    let exhausted = dead_letters
        .iter()
        .find(|m| header(m, "dlq_error_class").as_deref() == Some("exhausted"))
        .context("exhausted dead letter")?;
    assert_eq!(header(exhausted, "dlq_http_status").as_deref(), Some("503"));
    assert_eq!(header(exhausted, "dlq_attempts").as_deref(), Some("2"));
    assert_eq!(exhausted.key(), Some("results/9-A".as_bytes()));

    // A refused key pauses: not ready, nothing emitted, nothing dead-lettered...
    faults(&sim_url, json!({"status": 401})).await?;
    produce(
        &producer,
        &raw,
        "results/10-A",
        &event("Results", "Updated", "results/10-A"),
    )
    .await?;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .get(format!("http://{ops_addr}/readyz"))
        .send()
        .await?
        .status()
        != 503
    {
        ensure!(
            Instant::now() < deadline,
            "enricher stayed ready with a refused key"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        read_topic(&services.brokers, &enriched, 5, Duration::from_secs(3))
            .await
            .is_err()
    );
    assert!(
        read_topic(&services.brokers, &dead, 3, Duration::from_secs(1))
            .await
            .is_err()
    );
    // ...and resumes by itself once the key works again.
    faults(&sim_url, json!({})).await?;
    let records =
        by_object(&read_topic(&services.brokers, &enriched, 5, Duration::from_secs(60)).await?)?;
    assert!(records
        .iter()
        .any(|(o, v)| o == "results/10-A" && v["status"] == "found"));
    wait_until_ready(
        &format!("http://{ops_addr}/readyz"),
        Duration::from_secs(10),
    )
    .await?;
    assert!(enricher.log_text().contains("enrichment paused"));
    enricher.interrupt(Duration::from_secs(20))
}
