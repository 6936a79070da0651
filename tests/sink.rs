//! `sink` against a real broker and a real S3 server: a kill -9, a second
//! instance joining, and an S3 outage, each ending with every record in the
//! lake exactly once.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::ensure;
use end_to_end::{
    download, duckdb, free_port, log_dir, s3s_fs, unique, wait_until_ready, Process, Services,
};
use object_store::ObjectStore;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

const FAST_REBALANCE: (&str, &str) = (
    "KAFKA_OPTIONS",
    "session.timeout.ms=6000,heartbeat.interval.ms=500",
);

struct Setup {
    services: Services,
    logs: std::path::PathBuf,
    topic: String,
    group: String,
    prefix: String,
}

impl Setup {
    fn new() -> anyhow::Result<Setup> {
        let run = unique("sink");
        let logs = log_dir("sink-logs-")?;
        Ok(Setup {
            services: Services::from_env(),
            logs,
            topic: format!("{run}.enriched"),
            group: format!("{run}-group"),
            prefix: format!("{run}/lake"),
        })
    }

    /// Starts a sink writing to `lake_url` (default: the shared S3 server).
    async fn sink(&self, extra: &[(&str, &str)]) -> anyhow::Result<Process> {
        let ops = format!("127.0.0.1:{}", free_port());
        let lake_url = format!("s3://{}/{}", self.services.s3_bucket, self.prefix);
        let mut env = vec![
            ("KAFKA_BROKERS", self.services.brokers.as_str()),
            ("ENRICHED_TOPIC", &self.topic),
            ("DEAD_LETTER_TOPIC", "sink-tests.deadletter"),
            ("SINK_GROUP_ID", &self.group),
            ("SINK_OPS_LISTEN", &ops),
            ("LAKE_URL", &lake_url),
            ("SINK_MAX_FILE_ROWS", "150"),
            ("SINK_MAX_FILE_AGE", "1s"),
            FAST_REBALANCE,
        ];
        env.extend_from_slice(extra);
        let sink = Process::start(&format!("sink#{}", unique("s")), &[], &env, &self.logs)?;
        wait_until_ready(&format!("http://{ops}/healthz"), Duration::from_secs(30)).await?;
        Ok(sink)
    }

    async fn produce(&self, from: usize, to: usize) -> anyhow::Result<()> {
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.services.brokers)
            .set("linger.ms", "5")
            .create()?;
        for i in from..to {
            let id = format!("results/{}-A", i % 97);
            let value = json!({
                "event_id": format!("{i:032x}"), "resource": "Results", "event": "Updated",
                "object_id": id, "event_timestamp": format!("2025-03-0{}T08:00:00Z", 1 + i % 3),
                "received_at": null, "fetched_at": "2025-03-01T08:00:01Z", "status": "found",
                "record": {"id": id, "score": 0.5, "values": [{"question": "elements/1-A", "answers": ["Yes"]}]},
            })
            .to_string();
            producer
                .send(
                    FutureRecord::to(&self.topic).key(&id).payload(&value),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)?;
        }
        Ok(())
    }

    /// Waits until the lake's `events` table holds `expected` rows, then checks
    /// that they are `expected` distinct events (no duplicate, nothing lost).
    async fn expect_exactly(&self, store: &dyn ObjectStore, expected: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let dir = tempfile::tempdir()?;
            download(store, &self.prefix, dir.path()).await?;
            let (rows, distinct) = counts(&self.services.python, dir.path())?;
            if rows >= expected {
                ensure!(
                    rows == expected && distinct == expected,
                    "{rows} rows, {distinct} distinct, {expected} produced"
                );
                // Each resource table holds the same rows once as well.
                let (rows, distinct) = counts_of(&self.services.python, dir.path(), "results")?;
                ensure!(
                    rows == expected && distinct == expected,
                    "results: {rows} rows, {distinct} distinct"
                );
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "only {rows} of {expected} rows reached the lake"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

fn counts(python: &Path, dir: &Path) -> anyhow::Result<(u64, u64)> {
    counts_of(python, dir, "events")
}

fn counts_of(python: &Path, dir: &Path, table: &str) -> anyhow::Result<(u64, u64)> {
    if !dir.join(table).exists() {
        return Ok((0, 0));
    }
    let rows = duckdb(
        python,
        &format!(
            "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM read_parquet('{}/{table}/*/*.parquet', hive_partitioning = true)",
            dir.display()
        ),
    )?;
    Ok((
        rows[0]["n"].as_u64().unwrap_or(0),
        rows[0]["d"].as_u64().unwrap_or(0),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_killed_mid_stream_writes_every_record_exactly_once() -> anyhow::Result<()> {
    let setup = Setup::new()?;
    let store = setup.services.bucket()?;
    // As if an earlier sink had announced partition 0's first 100 records and
    // crashed while writing them: the replay must cut exactly there.
    let intent = object_store::path::Path::from(format!(
        "{}/_sink_intents/{}/0/{:020}+{:020}",
        setup.prefix, setup.topic, 0, 99
    ));
    store.put(&intent, bytes::Bytes::new().into()).await?;
    let first = setup.sink(&[]).await?;
    setup.produce(0, 3000).await?;
    // Kill -9 once some files are written and more are being flushed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dir = tempfile::tempdir()?;
        download(store.as_ref(), &setup.prefix, dir.path()).await?;
        if counts(&setup.services.python, dir.path())?.0 >= 600 {
            break;
        }
        ensure!(Instant::now() < deadline, "the sink wrote nothing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(first);
    let second = setup.sink(&[]).await?;
    setup.expect_exactly(store.as_ref(), 3000).await?;
    let replayed = format!("{}+0+{:020}+{:020}.parquet", setup.topic, 0, 99);
    let dir = tempfile::tempdir()?;
    let files = download(store.as_ref(), &setup.prefix, dir.path()).await?;
    assert!(
        files
            .iter()
            .any(|f| f.starts_with(dir.path().join("events")) && f.ends_with(&replayed)),
        "no events file for the announced range"
    );
    second.interrupt(Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_sinks_sharing_the_partitions_write_every_record_exactly_once() -> anyhow::Result<()> {
    let setup = Setup::new()?;
    let store = setup.services.bucket()?;
    let first = setup.sink(&[]).await?;
    setup.produce(0, 1500).await?;
    let second = setup.sink(&[]).await?;
    setup.produce(1500, 3000).await?;
    setup.expect_exactly(store.as_ref(), 3000).await?;
    first.interrupt(Duration::from_secs(30))?;
    second.interrupt(Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_outage_loses_nothing_and_duplicates_nothing() -> anyhow::Result<()> {
    let setup = Setup::new()?;
    // An S3 server of this test's own, to stop and start again.
    let root = setup.logs.join("s3");
    std::fs::create_dir_all(root.join("outage"))?;
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let start_s3 = || -> anyhow::Result<std::process::Child> {
        let log = std::fs::File::create(setup.logs.join(format!("s3-{}.log", unique("r"))))?;
        Ok(std::process::Command::new(s3s_fs())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &std::env::var("AWS_ACCESS_KEY_ID")?])
            .args(["--secret-key", &std::env::var("AWS_SECRET_ACCESS_KEY")?])
            .arg(&root)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?)
    };
    let mut s3 = start_s3()?;
    let lake_url = format!("s3://outage/{}", setup.prefix);
    let sink = setup
        .sink(&[("LAKE_URL", &lake_url), ("AWS_ENDPOINT_URL", &endpoint)])
        .await?;
    setup.produce(0, 1000).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    s3.kill()?;
    s3.wait()?;
    setup.produce(1000, 2000).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut s3 = start_s3()?;
    let store = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name("outage")
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .build()?;
    let result = setup.expect_exactly(&store, 2000).await;
    let stopped = sink.interrupt(Duration::from_secs(40));
    s3.kill()?;
    result?;
    stopped
}
