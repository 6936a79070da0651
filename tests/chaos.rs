//! The whole pipeline under faults, on the stages' default settings: webhooks
//! arrive over HTTP at a steady rate, retried by the sender like Mobaro does,
//! while each stage in turn is killed with SIGKILL and started again, then
//! two at once, then the broker itself (its sqlite storage kept); the API
//! answers some requests 429 with `Retry-After` or 503, and some ids 404.
//! Nothing answered 202 may be missing from the lake, and no event may be
//! there twice.
//!
//! `CHAOS_SECONDS` (default 50) sets how long webhooks are sent; rounds of
//! kills (enricher, sink, ingest, enricher and sink, broker) repeat over that
//! time, five at least. `scripts/chaos` runs it longer and repeatedly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use end_to_end::{
    download, duckdb, free_port, log_dir, metric, set_faults, unique, wait_until_ready, OwnBroker,
    Process, Services,
};
use serde_json::{json, Value};

const SECRET: &str = "chaos-webhook-secret";
const API_KEY: &str = "chaos-api-key";
const RATE: f64 = 100.0;

/// One stage: how to start it, where its metrics are, and which counter
/// shows that it is doing its work.
struct Stage {
    name: &'static str,
    env: Vec<(String, String)>,
    ops: String,
    progress: &'static str,
    process: Option<Process>,
    starts: u32,
}

impl Stage {
    fn start(&mut self, logs: &Path) -> anyhow::Result<()> {
        self.starts += 1;
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let label = format!("{}#{}", self.name, self.starts);
        self.process = Some(Process::start(&label, &[], &env, logs)?);
        Ok(())
    }

    /// SIGKILL.
    fn kill(&mut self) {
        self.process.take();
    }

    async fn progress(&self) -> f64 {
        metric(&self.ops, self.progress).await
    }
}

/// Waits until `stage`'s progress counter passes `from`; how long it took.
async fn resumed(stage: &Stage, from: f64, since: Instant) -> anyhow::Result<Duration> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while stage.progress().await <= from {
        ensure!(
            Instant::now() < deadline,
            "{} did not resume within 120 s",
            stage.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(since.elapsed())
}

struct Figures {
    accepted: usize,
    rows: u64,
    distinct: u64,
    resumes: Vec<(String, Duration)>,
}

#[tokio::test(flavor = "multi_thread")]
async fn every_accepted_webhook_reaches_the_lake_through_kills_of_every_stage() -> anyhow::Result<()>
{
    let seconds: u64 = std::env::var("CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let figures = chaos(seconds).await?;
    let duplicates = figures.rows - figures.distinct;
    eprintln!(
        "chaos: {} accepted, 0 lost, {} rows for {} distinct events: {} duplicates ({:.1} %)",
        figures.accepted,
        figures.rows,
        figures.distinct,
        duplicates,
        100.0 * duplicates as f64 / figures.distinct as f64
    );
    for (what, took) in &figures.resumes {
        eprintln!(
            "chaos: {what}: resumed {:.1} s after its restart",
            took.as_secs_f64()
        );
    }
    // A crash of the enricher re-enriches what it had not committed, and
    // the broker's restart and ingest's may add Mobaro's retries of requests
    // whose answer was lost: copies of events of today, which the sink
    // leaves out of the Delta tables.
    ensure!(
        duplicates == 0,
        "{duplicates} duplicate rows after {} crashes",
        figures.resumes.len()
    );
    Ok(())
}

async fn chaos(seconds: u64) -> anyhow::Result<Figures> {
    let services = Services::from_env();
    let run = unique("chaos");
    let logs = log_dir("chaos-logs-")?;
    let mut broker = OwnBroker::start(&logs)?;
    let (raw, enriched, dead) = (
        format!("{run}.raw"),
        format!("{run}.enriched"),
        format!("{run}.dead"),
    );
    broker.create_topics(&[&raw, &enriched, &dead], 3).await?;

    let api_addr = format!("127.0.0.1:{}", free_port());
    let sim = Process::start(
        "mobaro-sim",
        &["serve", "--listen", &api_addr, "--api-key", API_KEY],
        &[],
        &logs,
    )?;
    let sim_url = format!("http://{api_addr}");
    wait_until_ready(&format!("{sim_url}/sim/stats"), Duration::from_secs(20)).await?;
    set_faults(
        &sim_url,
        json!({
            "every": 9, "every_statuses": [429, 503, 500],
            "not_found": ["results/1001-B", "users/1002-C"],
        }),
    )
    .await?;

    let prefix = format!("{run}/lake");
    let common = [
        ("KAFKA_BROKERS", broker.brokers.clone()),
        ("RAW_TOPIC", raw.clone()),
        ("ENRICHED_TOPIC", enriched.clone()),
        ("DEAD_LETTER_TOPIC", dead.clone()),
    ];
    let stage = |name, own: Vec<(&str, String)>, ops: &str, progress| Stage {
        name,
        env: common
            .iter()
            .cloned()
            .chain(own)
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        ops: ops.to_string(),
        progress,
        process: None,
        starts: 0,
    };
    let ingest_addr = format!("127.0.0.1:{}", free_port());
    let enricher_ops = format!("127.0.0.1:{}", free_port());
    let sink_ops = format!("127.0.0.1:{}", free_port());
    let mut ingest = stage(
        "ingest",
        vec![
            ("INGEST_LISTEN", ingest_addr.clone()),
            ("MOBARO_WEBHOOK_SECRETS", SECRET.into()),
        ],
        &ingest_addr,
        "ingest_requests_total",
    );
    let mut enricher = stage(
        "enricher",
        vec![
            ("MOBARO_API_URL", format!("{sim_url}/api/customers/")),
            ("MOBARO_API_KEY", API_KEY.into()),
            ("ENRICHER_GROUP_ID", format!("{run}-enricher")),
            ("ENRICHER_OPS_LISTEN", enricher_ops.clone()),
        ],
        &enricher_ops,
        "enricher_events_total",
    );
    let mut sink = stage(
        "sink",
        vec![
            ("LAKE_URL", format!("s3://{}/{prefix}", services.s3_bucket)),
            ("SINK_GROUP_ID", format!("{run}-sink")),
            ("SINK_OPS_LISTEN", sink_ops.clone()),
            ("SINK_MAX_FILE_AGE", "2s".into()),
        ],
        &sink_ops,
        "sink_files_total",
    );
    for stage in [&mut ingest, &mut enricher, &mut sink] {
        stage.start(&logs)?;
    }
    for url in [
        format!("http://{ingest_addr}/readyz"),
        format!("http://{enricher_ops}/readyz"),
        format!("http://{sink_ops}/readyz"),
    ] {
        wait_until_ready(&url, Duration::from_secs(30)).await?;
    }

    // Webhooks arrive until the rounds of kills are over, however long
    // their recoveries take: each round's check waits for new traffic.
    let sender = std::process::Command::new(end_to_end::binary("mobaro-sim"))
        .args([
            "send",
            "--url",
            &format!("http://{ingest_addr}/webhooks/mobaro"),
        ])
        .args([
            "--secret",
            SECRET,
            "--resources",
            "Users,Results,Locations,Notes",
        ])
        .args(["--count", "0", "--rate", &RATE.to_string()])
        .args(["--objects", "20", "--retry-for", "180s", "--print"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(logs.join("sender.log"))?)
        .spawn()?;
    let sender_pid = sender.id().to_string();
    let sending = tokio::task::spawn_blocking(move || sender.wait_with_output());

    // Rounds of kills while webhooks arrive: each victim killed, started
    // again two seconds later, and given time to resume, then the next.
    let started = Instant::now();
    let gap = Duration::from_secs(2);
    let mut resumes = vec![];
    let mut round = 0;
    while round < 5 || started.elapsed() + Duration::from_secs(12) < Duration::from_secs(seconds) {
        tokio::time::sleep(gap).await;
        let victims: &[&str] = match round % 5 {
            0 => &["enricher"],
            1 => &["sink"],
            2 => &["ingest"],
            3 => &["enricher", "sink"],
            _ => &["broker"],
        };
        round += 1;
        if victims == ["broker"] {
            broker.kill();
            tokio::time::sleep(Duration::from_secs(2)).await;
            // Counted from the restart: files the sink closed during the
            // outage are not its recovery.
            let accepted = "ingest_requests_total{outcome=\"accepted\"}";
            let (accepted_before, files_before) =
                (metric(&ingest.ops, accepted).await, sink.progress().await);
            broker.restart()?;
            let since = Instant::now();
            let deadline = since + Duration::from_secs(120);
            while metric(&ingest.ops, accepted).await <= accepted_before {
                ensure!(
                    Instant::now() < deadline,
                    "ingest did not recover from the broker's restart"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            resumes.push((format!("broker: ingest (round {round})"), since.elapsed()));
            let took = resumed(&sink, files_before + 1.0, since).await?;
            resumes.push((format!("broker: sink (round {round})"), took));
            continue;
        }
        let mut stages: Vec<&mut Stage> = [&mut ingest, &mut enricher, &mut sink]
            .into_iter()
            .filter(|s| victims.contains(&s.name))
            .collect();
        for stage in stages.iter_mut() {
            stage.kill();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        for stage in stages.iter_mut() {
            stage.start(&logs)?;
        }
        let since = Instant::now();
        for stage in stages {
            let took = resumed(stage, 0.0, since).await?;
            resumes.push((format!("{} (round {round})", stage.name), took));
        }
    }

    // SIGINT: the sender stops and its deliveries in flight finish.
    std::process::Command::new("kill")
        .args(["-INT", &sender_pid])
        .status()?;
    let output = sending.await??;
    let mut accepted = BTreeSet::new();
    let mut sent = BTreeSet::new();
    let mut refused = 0;
    for line in String::from_utf8(output.stdout)?.lines() {
        let delivery: Value = serde_json::from_str(line)?;
        let body = delivery["body"].as_str().context("body")?;
        let id = schemas::WebhookEvent::from_json(body.as_bytes())?
            .event_id()
            .to_string();
        sent.insert(id.clone());
        if delivery["status"] == 202 {
            accepted.insert(id);
        } else {
            refused += 1;
        }
    }
    ensure!(refused == 0, "{refused} webhooks were never answered 202");

    // Everything accepted must arrive; wait for it.
    set_faults(&sim_url, json!({})).await?;
    let lake = tempfile::tempdir()?;
    let deadline = Instant::now() + Duration::from_secs(180);
    let ids = loop {
        let ids = lake_event_ids(&services, &prefix, lake.path()).await?;
        let missing = accepted.iter().filter(|id| !ids.contains_key(*id)).count();
        if missing == 0 {
            break ids;
        }
        ensure!(
            Instant::now() < deadline,
            "{missing} of {} accepted events never reached the lake (logs in {})",
            accepted.len(),
            logs.display()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let unexpected: Vec<&String> = ids.keys().filter(|id| !sent.contains(*id)).collect();
    ensure!(unexpected.is_empty(), "rows nobody sent: {unexpected:?}");
    check_records(&services, lake.path(), &sim_url).await?;

    for stage in [ingest, enricher, sink] {
        if let Some(process) = stage.process {
            process.interrupt(Duration::from_secs(40))?;
        }
    }
    drop(sim);
    Ok(Figures {
        accepted: accepted.len(),
        rows: ids.values().sum(),
        distinct: ids.len() as u64,
        resumes,
    })
}

/// Rows per event_id in the lake's `events` table.
async fn lake_event_ids(
    services: &Services,
    prefix: &str,
    dir: &Path,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let store = services.bucket()?;
    let files = download(store.as_ref(), prefix, dir).await?;
    if !files.iter().any(|f| f.starts_with(dir.join("events"))) {
        return Ok(BTreeMap::new());
    }
    let rows = duckdb(
        &services.python,
        &format!(
            "SELECT event_id, count(*) AS n FROM {} GROUP BY event_id",
            end_to_end::table_scan(dir, "events")
        ),
    )?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((r["event_id"].as_str()?.to_string(), r["n"].as_u64()?)))
        .collect())
}

/// Every found Result and User carries the API's record.
async fn check_records(services: &Services, dir: &Path, sim: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut known: BTreeMap<(String, String), Value> = BTreeMap::new();
    let mut checked = 0;
    for collection in ["results", "users"] {
        let table: PathBuf = dir.join(collection);
        if !table.exists() {
            continue;
        }
        let rows = duckdb(
            &services.python,
            &format!(
                "SELECT DISTINCT object_id, record_json FROM {} WHERE status = 'found'",
                end_to_end::table_scan(dir, collection)
            ),
        )?;
        for row in rows {
            let id = row["object_id"].as_str().context("object_id")?.to_string();
            let key = (collection.to_string(), id.clone());
            if !known.contains_key(&key) {
                let url = format!(
                    "{sim}/api/customers/{collection}/{}",
                    id.replace('/', "%2F")
                );
                let record: Value = client
                    .get(url)
                    .header("x-api-key", API_KEY)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                known.insert(key.clone(), record);
            }
            let stored: Value =
                serde_json::from_str(row["record_json"].as_str().context("record_json")?)?;
            ensure!(
                stored == known[&key],
                "{collection} {id}: not the API's record"
            );
            checked += 1;
        }
    }
    ensure!(checked > 0, "no found Result or User to check");
    Ok(())
}
