//! `enricher` against a real broker, with the simulator as Mobaro's API and its
//! fault injection: every outcome, and the pause on a refused key.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use end_to_end::{
    committed_and_ends, free_port, header, log_dir, read_topic, read_until, run_binary, set_faults,
    unique, wait_until_ready, Process, Services,
};
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

/// A simulator and topics of one test; enrichers started against them.
struct Setup {
    services: Services,
    logs: std::path::PathBuf,
    sim_url: String,
    _sim: Process,
    raw: String,
    enriched: String,
    dead: String,
    group: String,
}

impl Setup {
    fn new(sim_args: &[&str]) -> anyhow::Result<Setup> {
        let services = Services::from_env();
        let run = unique("enricher");
        let logs = log_dir("enricher-logs-")?;
        let api_addr = format!("127.0.0.1:{}", free_port());
        let mut args = vec!["serve", "--listen", &api_addr, "--api-key", API_KEY];
        args.extend_from_slice(sim_args);
        let sim = Process::start("mobaro-sim", &args, &[], &logs)?;
        Ok(Setup {
            services,
            sim_url: format!("http://{api_addr}"),
            _sim: sim,
            raw: format!("{run}.raw"),
            enriched: format!("{run}.enriched"),
            dead: format!("{run}.dead"),
            group: format!("{run}-group"),
            logs,
        })
    }

    /// Starts an enricher; returns it and its operations address.
    async fn enricher(&self, extra: &[(&str, &str)]) -> anyhow::Result<(Process, String)> {
        let ops_addr = format!("127.0.0.1:{}", free_port());
        let api_url = format!("{}/api/customers/", self.sim_url);
        let mut env = vec![
            ("KAFKA_BROKERS", self.services.brokers.as_str()),
            ("RAW_TOPIC", &self.raw),
            ("ENRICHED_TOPIC", &self.enriched),
            ("DEAD_LETTER_TOPIC", &self.dead),
            ("MOBARO_API_URL", &api_url),
            ("MOBARO_API_KEY", API_KEY),
            ("MOBARO_API_MAX_ATTEMPTS", "2"),
            ("MOBARO_API_BACKOFF", "50ms"),
            ("ENRICHER_GROUP_ID", &self.group),
            ("ENRICHER_OPS_LISTEN", &ops_addr),
        ];
        env.extend_from_slice(extra);
        let enricher = Process::start(&format!("enricher#{}", unique("e")), &[], &env, &self.logs)?;
        wait_until_ready(
            &format!("{}/sim/stats", self.sim_url),
            Duration::from_secs(20),
        )
        .await?;
        wait_until_ready(
            &format!("http://{ops_addr}/readyz"),
            Duration::from_secs(30),
        )
        .await?;
        Ok((enricher, ops_addr))
    }

    /// Produces an `Updated` Result event for each object to the raw topic.
    async fn send_updates(
        &self,
        producer: &FutureProducer,
        objects: &[&str],
    ) -> anyhow::Result<()> {
        for object in objects {
            produce(
                producer,
                &self.raw,
                object,
                &event("Results", "Updated", object),
            )
            .await?;
        }
        Ok(())
    }

    /// The enriched records by object, once `count` arrived.
    async fn enriched_records(
        &self,
        count: usize,
        within: Duration,
    ) -> anyhow::Result<Vec<(String, Value)>> {
        by_object(&read_topic(&self.services.brokers, &self.enriched, count, within).await?)
    }

    /// The dead-letter class of each object, once `count` are dead-lettered.
    async fn dead_letter_classes(
        &self,
        count: usize,
    ) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
        let dead = read_topic(
            &self.services.brokers,
            &self.dead,
            count,
            Duration::from_secs(60),
        )
        .await?;
        Ok(dead
            .iter()
            .filter_map(|m| {
                let key = String::from_utf8_lossy(m.key()?).to_string();
                Some((key, header(m, "dlq_error_class")?))
            })
            .collect())
    }

    fn producer(&self) -> anyhow::Result<FutureProducer> {
        Ok(rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.services.brokers)
            .set("linger.ms", "5")
            .create()?)
    }

    async fn api_requests(&self) -> anyhow::Result<u64> {
        let stats: Value = reqwest::get(format!("{}/sim/stats", self.sim_url))
            .await?
            .json()
            .await?;
        stats["requests"].as_u64().context("requests")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_event_is_recorded_with_what_its_fetch_found() -> anyhow::Result<()> {
    let setup = Setup::new(&[])?;
    let (enricher, _) = setup.enricher(&[]).await?;
    let Setup {
        services,
        sim_url,
        raw,
        enriched,
        dead,
        ..
    } = &setup;
    let producer = setup.producer()?;
    // Found, not found, deleted, passed through, and unparsable.
    set_faults(sim_url, json!({"not_found": ["results/404-A"]})).await?;
    produce(
        &producer,
        raw,
        "results/404-A",
        &event("Results", "Updated", "results/404-A"),
    )
    .await?;
    produce(
        &producer,
        raw,
        "results/5-A",
        &event("Results", "Deleted", "results/5-A"),
    )
    .await?;
    produce(
        &producer,
        raw,
        "users/6-B",
        &event("users", "Created", "users/6-B"),
    )
    .await?;
    produce(
        &producer,
        raw,
        "notes/7-C",
        &event("Notes", "Created", "notes/7-C"),
    )
    .await?;
    produce(&producer, raw, "junk", "{\"resource\":").await?;
    let records =
        by_object(&read_topic(&services.brokers, enriched, 4, Duration::from_secs(30)).await?)?;
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
    let dead_letters = read_topic(&services.brokers, dead, 1, Duration::from_secs(30)).await?;
    assert_eq!(
        header(&dead_letters[0], "dlq_error_class").as_deref(),
        Some("unparsable")
    );
    assert_eq!(
        header(&dead_letters[0], "dlq_original_topic").as_deref(),
        Some(raw.as_str())
    );

    enricher.interrupt(Duration::from_secs(20))
}

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_retries_are_dead_lettered_and_replayed_once_the_api_recovers(
) -> anyhow::Result<()> {
    let setup = Setup::new(&[])?;
    let (enricher, _) = setup.enricher(&[]).await?;
    let Setup {
        services,
        sim_url,
        raw,
        enriched,
        dead,
        ..
    } = &setup;
    let producer = setup.producer()?;
    // Retries exhausted on 503: dead-lettered with the reason, then it moves on.
    set_faults(sim_url, json!({"status": 503})).await?;
    produce(
        &producer,
        raw,
        "results/9-A",
        &event("Results", "Updated", "results/9-A"),
    )
    .await?;
    let dead_letters = read_topic(&services.brokers, dead, 1, Duration::from_secs(30)).await?;
    let exhausted = dead_letters
        .iter()
        .find(|m| header(m, "dlq_error_class").as_deref() == Some("exhausted"))
        .context("exhausted dead letter")?;
    assert_eq!(header(exhausted, "dlq_http_status").as_deref(), Some("503"));
    assert_eq!(header(exhausted, "dlq_attempts").as_deref(), Some("2"));
    assert_eq!(exhausted.key(), Some("results/9-A".as_bytes()));

    set_faults(sim_url, json!({})).await?;
    // With the API healthy again, the operator replays the exhausted event.
    let report = run_binary(
        "enricher",
        &["replay-dead-letters", "--class", "exhausted"],
        &[
            ("KAFKA_BROKERS", &services.brokers),
            ("RAW_TOPIC", raw),
            ("DEAD_LETTER_TOPIC", dead),
        ],
    )?;
    assert!(report.contains("replayed: 1"), "{report}");
    let records =
        by_object(&read_topic(&services.brokers, enriched, 1, Duration::from_secs(30)).await?)?;
    assert!(records
        .iter()
        .any(|(o, v)| o == "results/9-A" && v["status"] == "found"));
    enricher.interrupt(Duration::from_secs(20))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_key_pauses_enrichment_until_it_works_again() -> anyhow::Result<()> {
    let setup = Setup::new(&[])?;
    let (enricher, ops_addr) = setup.enricher(&[]).await?;
    let Setup {
        services,
        sim_url,
        raw,
        enriched,
        dead,
        ..
    } = &setup;
    let producer = setup.producer()?;
    // A refused key pauses: not ready, nothing emitted, nothing dead-lettered...
    set_faults(sim_url, json!({"status": 401})).await?;
    produce(
        &producer,
        raw,
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
        read_topic(&services.brokers, enriched, 1, Duration::from_secs(3))
            .await
            .is_err()
    );
    assert!(
        read_topic(&services.brokers, dead, 1, Duration::from_secs(1))
            .await
            .is_err()
    );
    // ...and resumes by itself once the key works again.
    set_faults(sim_url, json!({})).await?;
    let records =
        by_object(&read_topic(&services.brokers, enriched, 1, Duration::from_secs(60)).await?)?;
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

fn timestamped(object: &str, second: u32) -> String {
    json!({"resource": "Results", "event": "Updated", "objectId": object,
           "timestamp": format!("2025-03-01T08:{:02}:{:02}Z", second / 60, second % 60)})
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_of_one_object_stay_in_order_and_waiting_events_share_a_fetch() -> anyhow::Result<()>
{
    let setup = Setup::new(&["--latency", "20ms"])?;
    let (enricher, _) = setup.enricher(&[("ENRICHER_CONCURRENCY", "8")]).await?;
    let producer = setup.producer()?;
    let (objects, updates) = (10, 20);
    for second in 0..updates {
        for object in 0..objects {
            let id = format!("results/{object}-A");
            produce(&producer, &setup.raw, &id, &timestamped(&id, second)).await?;
        }
    }
    let total = (objects * updates) as usize;
    let records = read_topic(
        &setup.services.brokers,
        &setup.enriched,
        total,
        Duration::from_secs(60),
    )
    .await?;
    let mut last: std::collections::HashMap<String, String> = Default::default();
    for (object, value) in by_object(&records)? {
        assert_eq!(value["status"], "found");
        let timestamp = value["event_timestamp"]
            .as_str()
            .context("timestamp")?
            .to_string();
        if let Some(previous) = last.insert(object.clone(), timestamp.clone()) {
            assert!(
                previous < timestamp,
                "{object}: {previous} emitted before {timestamp}"
            );
        }
    }
    let calls = setup.api_requests().await?;
    eprintln!(
        "{total} events, {calls} API calls: {:.3} calls per event",
        calls as f64 / total as f64
    );
    assert!(
        calls * 2 < total as u64,
        "waiting events did not share fetches: {calls} calls"
    );
    enricher.interrupt(Duration::from_secs(20))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_rate_limit_holds_within_five_percent() -> anyhow::Result<()> {
    let setup = Setup::new(&[])?;
    let rate = 25.0;
    let (enricher, _) = setup
        .enricher(&[
            ("MOBARO_API_RATE_LIMIT", "25"),
            ("MOBARO_API_RATE_BURST", "1"),
            ("ENRICHER_CONCURRENCY", "16"),
        ])
        .await?;
    let producer = setup.producer()?;
    for object in 0..500 {
        let id = format!("results/{object}-B");
        produce(&producer, &setup.raw, &id, &timestamped(&id, 0)).await?;
    }
    while setup.api_requests().await? < 5 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (start, started) = (setup.api_requests().await?, Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (end, elapsed) = (setup.api_requests().await?, started.elapsed());
    let achieved = (end - start) as f64 / elapsed.as_secs_f64();
    eprintln!("configured {rate}/s, achieved {achieved:.2}/s over {elapsed:?}");
    assert!(
        (achieved - rate).abs() <= rate * 0.05,
        "achieved {achieved:.2}/s"
    );
    enricher.interrupt(Duration::from_secs(40))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_enricher_loses_nothing_after_restart() -> anyhow::Result<()> {
    let setup = Setup::new(&["--latency", "10ms"])?;
    // The restarted instance takes its partitions back at once under the
    // same instance name, with the consumer's default timeouts.
    let slot = ("INSTANCE_NAME", "slot-0");
    let (first, _) = setup
        .enricher(&[slot, ("ENRICHER_CONCURRENCY", "8")])
        .await?;
    let producer = setup.producer()?;
    let total = 300;
    let mut sent = std::collections::BTreeSet::new();
    for object in 0..total {
        let id = format!("results/{object}-C");
        let body = timestamped(&id, 1);
        produce(&producer, &setup.raw, &id, &body).await?;
        sent.insert(id);
    }
    read_until(
        &setup.services.brokers,
        &setup.enriched,
        Duration::from_secs(30),
        |r| r.len() >= 50,
    )
    .await?;
    drop(first); // SIGKILL, mid-stream
    let (second, _) = setup.enricher(&[slot]).await?;
    let records = read_until(
        &setup.services.brokers,
        &setup.enriched,
        Duration::from_secs(120),
        |records| {
            let seen: std::collections::BTreeSet<&str> = records
                .iter()
                .filter_map(|r| r.key())
                .filter_map(|k| std::str::from_utf8(k).ok())
                .collect();
            seen.len() >= total
        },
    )
    .await?;
    let distinct: std::collections::BTreeSet<String> =
        by_object(&records)?.into_iter().map(|(o, _)| o).collect();
    assert_eq!(distinct, sent, "every raw event is enriched at least once");
    eprintln!(
        "{} records for {total} events: {} duplicates after kill -9",
        records.len(),
        records.len() - total
    );
    second.interrupt(Duration::from_secs(20))
}

/// Events at 150/s while the API answers every ninth request 429
/// (`Retry-After: 1`), 503 or 500, on the default retry settings: after a
/// kill -9 the enricher enriches again only what was in flight, not every
/// event after the oldest one still being retried. At most a second of
/// traffic comes twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_enricher_enriches_again_only_what_was_in_flight() -> anyhow::Result<()> {
    const RATE: usize = 150;
    const TOTAL: usize = 1_500;
    let setup = Setup::new(&["--latency", "10ms"])?;
    set_faults(
        &setup.sim_url,
        json!({"every": 9, "every_statuses": [429, 503, 500]}),
    )
    .await?;
    let defaults = [
        ("INSTANCE_NAME", "slot-0"),
        ("MOBARO_API_MAX_ATTEMPTS", "5"),
        ("MOBARO_API_BACKOFF", "1s"),
    ];
    let (first, _) = setup.enricher(&defaults).await?;
    let producer = setup.producer()?;
    let raw = setup.raw.clone();
    let sender = tokio::spawn(async move {
        let started = Instant::now();
        for object in 0..TOTAL {
            let due = started + Duration::from_secs_f64(object as f64 / RATE as f64);
            tokio::time::sleep_until(due.into()).await;
            let id = format!("results/{object}-K");
            produce(&producer, &raw, &id, &timestamped(&id, 1)).await?;
        }
        anyhow::Ok(())
    });
    read_until(
        &setup.services.brokers,
        &setup.enriched,
        Duration::from_secs(60),
        |records| records.len() >= TOTAL / 3,
    )
    .await?;
    drop(first); // SIGKILL, mid-stream
    let (second, ops) = setup.enricher(&defaults).await?;
    sender.await??;
    let records = read_until(
        &setup.services.brokers,
        &setup.enriched,
        Duration::from_secs(120),
        |records| {
            let seen: std::collections::BTreeSet<&[u8]> =
                records.iter().filter_map(|r| r.key()).collect();
            seen.len() >= TOTAL
        },
    )
    .await?;
    let again = records.len() - TOTAL;
    let skipped = end_to_end::metric(&ops, "enricher_finished_earlier_total").await;
    second.interrupt(Duration::from_secs(20))?;
    // Kafka returns a commit's metadata with the offset; tansu 0.6.0 stores
    // it but returns it empty, so there nothing can be skipped and the
    // offset alone bounds the repeated work.
    let kept = committed_metadata(&setup.services.brokers, &setup.raw, &setup.group)?
        .iter()
        .any(|metadata| !metadata.is_empty());
    eprintln!(
        "{again} of {TOTAL} events enriched again after a kill -9 at {RATE}/s; {skipped} skipped as finished; the broker {} commit metadata",
        if kept { "returns" } else { "does not return" }
    );
    let bound = if kept { RATE } else { 3 * RATE };
    ensure!(
        again <= bound,
        "{again} events enriched again after a kill -9 (at most {bound} expected)"
    );
    Ok(())
}

/// The metadata of every partition's committed position of `group` on
/// `topic`.
fn committed_metadata(brokers: &str, topic: &str, group: &str) -> anyhow::Result<Vec<String>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut list = rdkafka::TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        list.add_partition(topic, partition.id());
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(10))?;
    Ok(committed
        .elements()
        .iter()
        .map(|e| e.metadata().to_string())
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_records_are_dead_lettered_and_their_partitions_move_on() -> anyhow::Result<()> {
    let setup = Setup::new(&[])?;
    let (enricher, _) = setup.enricher(&[]).await?;
    let producer = setup.producer()?;
    // One object the key may not read (403 while others read), and one
    // whose record is larger than the broker accepts (1 MB by default).
    set_faults(
        &setup.sim_url,
        json!({"forbidden": ["results/77-A"], "padded": ["results/78-A"], "padding_bytes": 1_500_000}),
    )
    .await?;
    let objects = ["results/1-A", "results/77-A", "results/78-A", "results/2-A"];
    setup.send_updates(&producer, &objects).await?;
    let classes = setup.dead_letter_classes(2).await?;
    let class_of = |object: &str| classes.get(object).cloned();
    assert_eq!(class_of("results/77-A").as_deref(), Some("forbidden"));
    assert_eq!(
        class_of("results/78-A").as_deref(),
        Some("refused_by_broker")
    );
    let records = setup.enriched_records(2, Duration::from_secs(30)).await?;
    for object in ["results/1-A", "results/2-A"] {
        assert!(
            records
                .iter()
                .any(|(o, v)| o == object && v["status"] == "found"),
            "{object}"
        );
    }
    // Every partition's committed offset reaches its end: nothing is stuck.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let offsets = committed_and_ends(&setup.services.brokers, &setup.raw, &setup.group)?;
        if offsets.iter().all(|(committed, end)| committed == end) {
            break;
        }
        ensure!(Instant::now() < deadline, "offsets stuck: {offsets:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    enricher.interrupt(Duration::from_secs(20))
}

/// A slow API with a full in-flight window: the enricher pauses its
/// partitions but goes on polling, so it stays in its group however long the
/// API takes. The poll interval is shortened here only so that leaving the
/// group would show within the test; the enricher itself sets nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_api_never_costs_the_group_membership() -> anyhow::Result<()> {
    let setup = Setup::new(&["--latency", "1500ms"])?;
    let (enricher, ops) = setup
        .enricher(&[
            ("ENRICHER_CONCURRENCY", "1"),
            ("ENRICHER_MAX_IN_FLIGHT", "2"),
            (
                "KAFKA_OPTIONS",
                "max.poll.interval.ms=10000,session.timeout.ms=10000,heartbeat.interval.ms=1000",
            ),
        ])
        .await?;
    let producer = setup.producer()?;
    let total = 12; // 18 s of API time, past the poll interval
    for object in 0..total {
        let id = format!("results/{object}-A");
        produce(
            &producer,
            &setup.raw,
            &id,
            &event("Results", "Updated", &id),
        )
        .await?;
    }
    let records = read_topic(
        &setup.services.brokers,
        &setup.enriched,
        total,
        Duration::from_secs(90),
    )
    .await?;
    assert_eq!(records.len(), total);
    let log = enricher.log_text();
    assert!(
        end_to_end::metric(&ops, "enricher_backpressure_pauses_total").await > 0.0,
        "the window never filled"
    );
    assert!(
        !log.contains("maximum poll interval"),
        "the enricher stopped polling"
    );
    assert_eq!(
        log.matches("partitions assigned").count(),
        1,
        "the group rebalanced"
    );
    enricher.interrupt(Duration::from_secs(20))
}

/// What the API key and the enricher's memory are exposed to: a record
/// redirected to another origin is dead-lettered without that origin seeing
/// a request, a record larger than `MOBARO_API_MAX_BODY` is dead-lettered
/// without being buffered, and a `Retry-After` longer than the backoff's
/// maximum is waited out without spending an attempt.
#[tokio::test(flavor = "multi_thread")]
async fn the_key_stays_home_bodies_stay_bounded_and_retry_after_is_waited_out() -> anyhow::Result<()>
{
    let setup = Setup::new(&[])?;
    let elsewhere = Setup::new(&[])?;
    let (enricher, _) = setup.enricher(&[]).await?;
    let ready_peak = enricher.peak_rss_mib().context("peak RSS")?;
    let producer = setup.producer()?;
    set_faults(
        &setup.sim_url,
        json!({
            "redirected": ["results/90-A"],
            "redirect_to": elsewhere.sim_url,
            "padded": ["results/91-A"],
            "padding_bytes": 48 << 20,
            "throttled": ["results/92-A"],
            "retry_after": 20,
        }),
    )
    .await?;
    let started = Instant::now();
    let objects = ["results/90-A", "results/91-A", "results/92-A"];
    setup.send_updates(&producer, &objects).await?;
    let classes = setup.dead_letter_classes(2).await?;
    let class_of = |object: &str| classes.get(object).cloned();
    assert_eq!(class_of("results/90-A").as_deref(), Some("permanent"));
    assert_eq!(class_of("results/91-A").as_deref(), Some("permanent"));
    let records = setup.enriched_records(1, Duration::from_secs(60)).await?;
    assert!(
        records
            .iter()
            .any(|(o, v)| o == "results/92-A" && v["status"] == "found"),
        "{records:?}"
    );
    // Two attempts allowed (MOBARO_API_MAX_ATTEMPTS=2, backoff up to 16 s),
    // yet the record is fetched once the 20 s asked for have passed.
    assert!(
        started.elapsed() >= Duration::from_secs(20),
        "fetched after {:?}",
        started.elapsed()
    );
    let seen_elsewhere: Value = reqwest::get(format!("{}/sim/stats", elsewhere.sim_url))
        .await?
        .json()
        .await?;
    assert_eq!(seen_elsewhere["requests"], 0, "the other origin was asked");
    let peak = enricher.peak_rss_mib().context("peak RSS")?;
    eprintln!("enricher peak RSS {peak:.1} MiB with a 48 MiB record refused ({ready_peak:.1} MiB when ready)");
    assert!(
        peak < ready_peak + 16.0,
        "peak RSS {peak:.0} MiB ({ready_peak:.0} MiB when ready) for a 48 MiB record"
    );
    let log = enricher.log_text();
    assert!(log.contains("MOBARO_API_MAX_BODY"), "{log}");
    enricher.interrupt(Duration::from_secs(20))
}

/// An API that answers 429 with `Retry-After: 0` for ever: each fetch waits
/// the backoff and spends its attempts, then the event is dead-lettered as
/// exhausted, instead of retrying without pause or limit.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_of_zero_spends_attempts_instead_of_spinning() -> anyhow::Result<()> {
    let setup = Setup::new(&[])?;
    let (enricher, _) = setup.enricher(&[]).await?;
    let producer = setup.producer()?;
    set_faults(&setup.sim_url, json!({"status": 429, "retry_after": 0})).await?;
    let before = setup.api_requests().await?;
    setup.send_updates(&producer, &["results/93-A"]).await?;
    let dead = read_topic(
        &setup.services.brokers,
        &setup.dead,
        1,
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!(
        header(&dead[0], "dlq_error_class").as_deref(),
        Some("exhausted")
    );
    assert_eq!(header(&dead[0], "dlq_http_status").as_deref(), Some("429"));
    assert_eq!(header(&dead[0], "dlq_attempts").as_deref(), Some("2"));
    let spent = setup.api_requests().await? - before;
    assert_eq!(
        spent, 2,
        "requests for one throttled record (MOBARO_API_MAX_ATTEMPTS=2)"
    );
    set_faults(&setup.sim_url, json!({})).await?;
    setup.send_updates(&producer, &["results/94-A"]).await?;
    let records = setup.enriched_records(1, Duration::from_secs(30)).await?;
    assert!(
        records
            .iter()
            .any(|(o, v)| o == "results/94-A" && v["status"] == "found"),
        "{records:?}"
    );
    enricher.interrupt(Duration::from_secs(20))
}
