//! `sink` against a real broker and a real S3 server: a kill -9, a second
//! instance joining, and an S3 outage, each ending with every record in the
//! lake exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use end_to_end::{
    download, duckdb, free_port, log_dir, metric, s3s_fs, unique, wait_until_ready, Process,
    Services,
};
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

/// A restarted sink takes its partitions back at once under the same
/// instance name (static membership), with the consumer's default timeouts.
const SLOT: (&str, &str) = ("INSTANCE_NAME", "slot-0");

const PARQUET: &str = "parquet";
const DELTA: &str = "delta";

struct Setup {
    /// `LAKE_FORMAT` of the sinks it starts.
    format: &'static str,
    services: Services,
    logs: std::path::PathBuf,
    topic: String,
    group: String,
    prefix: String,
}

impl Setup {
    fn new(format: &'static str) -> anyhow::Result<Setup> {
        let run = unique("sink");
        let logs = log_dir("sink-logs-")?;
        Ok(Setup {
            format,
            services: Services::from_env(),
            logs,
            // Short names: s3s-fs keeps multipart uploads under file names
            // derived from the whole key, and file names end at 255 bytes.
            topic: format!("{run}.e"),
            group: format!("{run}-group"),
            prefix: run.clone(),
        })
    }

    /// Starts a sink writing to the shared S3 server unless `extra` says
    /// otherwise.
    async fn sink(&self, extra: &[(&str, &str)]) -> anyhow::Result<Process> {
        Ok(self.sink_with_ops(extra).await?.0)
    }

    /// [`Setup::sink`], with the address of its operations endpoint.
    async fn sink_with_ops(&self, extra: &[(&str, &str)]) -> anyhow::Result<(Process, String)> {
        let (sink, ops) = self.start_sink(extra)?;
        wait_until_ready(&format!("http://{ops}/healthz"), Duration::from_secs(30)).await?;
        Ok((sink, ops))
    }

    /// Starts a sink without waiting for it; with the address of its
    /// operations endpoint.
    fn start_sink(&self, extra: &[(&str, &str)]) -> anyhow::Result<(Process, String)> {
        let ops = format!("127.0.0.1:{}", free_port());
        let lake_url = format!("s3://{}/{}", self.services.s3_bucket, self.prefix);
        let mut env = vec![
            ("KAFKA_BROKERS", self.services.brokers.as_str()),
            ("ENRICHED_TOPIC", &self.topic),
            ("DEAD_LETTER_TOPIC", "sink-tests.deadletter"),
            ("SINK_GROUP_ID", &self.group),
            ("SINK_OPS_LISTEN", &ops),
            ("LAKE_URL", &lake_url),
            ("LAKE_FORMAT", self.format),
            ("SINK_MAX_FILE_ROWS", "150"),
            ("SINK_MAX_FILE_AGE", "1s"),
        ];
        env.extend_from_slice(extra);
        let sink = Process::start(&format!("sink#{}", unique("s")), &[], &env, &self.logs)?;
        Ok((sink, ops))
    }

    /// Produces `messages` one after the other: each is acknowledged before
    /// the next is sent, so they keep their order.
    async fn send(&self, messages: &[(String, String)]) -> anyhow::Result<()> {
        let producer = self.producer()?;
        for (key, value) in messages {
            producer
                .send(
                    FutureRecord::to(&self.topic).key(key).payload(value),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)?;
        }
        Ok(())
    }

    /// Produces `messages` many at a time, in no promised order.
    async fn send_many(&self, messages: &[(String, String)]) -> anyhow::Result<()> {
        let producer = self.producer()?;
        futures::stream::iter(messages)
            .map(|(key, value)| {
                producer.send(
                    FutureRecord::to(&self.topic).key(key).payload(value),
                    Duration::from_secs(30),
                )
            })
            .buffer_unordered(1000)
            .map(|sent| sent.map(|_| ()).map_err(|(e, _)| anyhow::Error::from(e)))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    fn producer(&self) -> anyhow::Result<FutureProducer> {
        Ok(rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.services.brokers)
            .set("linger.ms", "5")
            .create()?)
    }

    /// Enriched Results `from..to`, over three days.
    async fn produce(&self, from: usize, to: usize) -> anyhow::Result<()> {
        self.produce_numbered(from, to, 0).await
    }

    /// [`Setup::produce`], with event ids counted from `first_id` instead.
    async fn produce_numbered(
        &self,
        from: usize,
        to: usize,
        first_id: usize,
    ) -> anyhow::Result<()> {
        let messages: Vec<(String, String)> = (from..to)
            .map(|i| {
                let id = format!("results/{}-A", i % 97);
                let value = json!({
                    "event_id": format!("{:032x}", first_id + i), "resource": "Results", "event": "Updated",
                    "object_id": id, "event_timestamp": format!("2025-03-0{}T08:00:00Z", 1 + i % 3),
                    "received_at": null, "fetched_at": "2025-03-01T08:00:01Z", "status": "found",
                    "record": {"id": id, "score": 0.5, "values": [{"question": "elements/1-A", "answers": ["Yes"]}]},
                });
                (id, value.to_string())
            })
            .collect();
        self.send(&messages).await
    }

    /// Produces one record per id of `ids`, of events at one of `times`
    /// (RFC 3339) chosen by the id: the same id gives the same event, as a
    /// repeated delivery would.
    async fn produce_events(
        &self,
        ids: impl Iterator<Item = usize>,
        times: &[String],
    ) -> anyhow::Result<()> {
        self.send(&event_messages(ids, times)).await
    }

    /// Produces 3,000 records to a sink, kills it (-9) once some files are
    /// written and more are being flushed, restarts it under the same name
    /// and waits for every record exactly once; returns the restarted sink.
    async fn killed_mid_stream_and_restarted(
        &self,
        store: &dyn ObjectStore,
    ) -> anyhow::Result<Process> {
        let first = self.sink(&[SLOT]).await?;
        self.produce(0, 3000).await?;
        self.wait_for_rows(store, 600).await?;
        drop(first);
        let second = self.sink(&[SLOT]).await?;
        self.expect_exactly(store, 3000).await?;
        Ok(second)
    }

    /// `count` records written into the lake by a sink of this setup, which
    /// then stops; then the same topic name on a broker of its own (another
    /// cluster, or the topic created again) and a setup that writes it into
    /// the same prefix.
    async fn moved_to_another_broker(
        &self,
        count: usize,
    ) -> anyhow::Result<(end_to_end::OwnBroker, Setup)> {
        self.moved_to_cluster(count, "tansu_cluster").await
    }

    /// [`Setup::moved_to_another_broker`], the broker being the cluster
    /// `cluster`: the suite's broker's id for a topic created again on the
    /// same cluster, another for a new cluster.
    async fn moved_to_cluster(
        &self,
        count: usize,
        cluster: &str,
    ) -> anyhow::Result<(end_to_end::OwnBroker, Setup)> {
        let store = self.services.bucket()?;
        end_to_end::create_topics(&self.services.brokers, &[&self.topic], 3).await?;
        self.produce(0, count).await?;
        let first = self.sink(&[]).await?;
        self.expect_exactly(store.as_ref(), count as u64).await?;
        first.interrupt(Duration::from_secs(30))?;
        let other = end_to_end::OwnBroker::start_cluster(&self.logs, cluster)?;
        other.create_topics(&[&self.topic], 3).await?;
        let elsewhere = Setup {
            format: self.format,
            services: Services {
                brokers: other.brokers.clone(),
                ..self.services.clone()
            },
            logs: self.logs.clone(),
            topic: self.topic.clone(),
            group: self.group.clone(),
            prefix: self.prefix.clone(),
        };
        Ok((other, elsewhere))
    }

    /// Waits until the sink's group has committed `messages` offsets of the
    /// topic: what they cover is in the tables. Cheaper than reading the
    /// lake, for drills that check it once at the end.
    async fn wait_until_committed(&self, messages: i64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let committed: i64 =
                end_to_end::committed_and_ends(&self.services.brokers, &self.topic, &self.group)?
                    .iter()
                    .map(|(offset, _)| offset)
                    .sum();
            if committed >= messages {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the sink committed {committed} of {messages} messages"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the lake's `events` table holds at least `rows` rows.
    async fn wait_for_rows(&self, store: &dyn ObjectStore, rows: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let dir = tempfile::tempdir()?;
            download(store, &self.prefix, dir.path()).await?;
            if counts(&self.services.python, dir.path())?.0 >= rows {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the sink wrote fewer than {rows} rows"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the lake's `events` and `results` tables hold `expected`
    /// rows each, then checks that they are `expected` distinct events (no
    /// duplicate, nothing lost). With Delta tables, `results` commits after
    /// `events` in each batch.
    async fn expect_exactly(&self, store: &dyn ObjectStore, expected: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let dir = tempfile::tempdir()?;
            download(store, &self.prefix, dir.path()).await?;
            let events = counts(&self.services.python, dir.path())?;
            let results = counts_of(&self.services.python, dir.path(), "results")?;
            if events.0 >= expected && results.0 >= expected {
                for (table, (rows, distinct)) in [("events", events), ("results", results)] {
                    ensure!(
                        rows == expected && distinct == expected,
                        "{table}: {rows} rows, {distinct} distinct, {expected} produced"
                    );
                }
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "only {} (events) and {} (results) of {expected} rows reached the lake",
                events.0,
                results.0
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The records [`Setup::produce_events`] produces.
fn event_messages(ids: impl Iterator<Item = usize>, times: &[String]) -> Vec<(String, String)> {
    ids.map(|i| {
        let time = &times[i % times.len()];
        let id = format!("results/{}-A", i % 97);
        let value = json!({
            "event_id": format!("{i:032x}"), "resource": "Results", "event": "Updated",
            "object_id": id, "event_timestamp": time,
            "received_at": null, "fetched_at": time, "status": "found",
            "record": {"id": id, "score": 0.5},
        });
        (id, value.to_string())
    })
    .collect()
}

fn counts(python: &Path, dir: &Path) -> anyhow::Result<(u64, u64)> {
    counts_of(python, dir, "events")
}

fn counts_of(python: &Path, dir: &Path, table: &str) -> anyhow::Result<(u64, u64)> {
    if !dir.join(table).exists() {
        return Ok((0, 0));
    }
    // A Delta table counts the files its log holds, a plain one every file.
    let source = end_to_end::table_scan(dir, table);
    let rows = duckdb(
        python,
        &format!("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM {source}"),
    )?;
    Ok((
        rows[0]["n"].as_u64().unwrap_or(0),
        rows[0]["d"].as_u64().unwrap_or(0),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_killed_mid_stream_writes_every_record_exactly_once() -> anyhow::Result<()> {
    let setup = Setup::new(PARQUET)?;
    let store = setup.services.bucket()?;
    // As if an earlier sink had announced partition 0's first 100 records and
    // crashed while writing them: the replay must cut exactly there.
    let intent = object_store::path::Path::from(format!(
        "{}/_sink_intents/{}/0/{:020}+{:020}",
        setup.prefix, setup.topic, 0, 99
    ));
    store.put(&intent, bytes::Bytes::new().into()).await?;
    let second = setup
        .killed_mid_stream_and_restarted(store.as_ref())
        .await?;
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

/// The same kill -9 on Delta tables: the restarted sink reads each table's
/// transaction for its partitions and skips what the table holds.
#[tokio::test(flavor = "multi_thread")]
async fn a_sink_killed_mid_stream_commits_every_record_once_to_delta() -> anyhow::Result<()> {
    let setup = Setup::new(DELTA)?;
    let store = setup.services.bucket()?;
    let second = setup
        .killed_mid_stream_and_restarted(store.as_ref())
        .await?;
    second.interrupt(Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_sinks_sharing_the_partitions_write_every_record_exactly_once() -> anyhow::Result<()> {
    two_sinks_share_the_partitions(PARQUET).await
}

#[tokio::test(flavor = "multi_thread")]
async fn two_sinks_sharing_the_partitions_commit_every_record_once_to_delta() -> anyhow::Result<()>
{
    two_sinks_share_the_partitions(DELTA).await
}

async fn two_sinks_share_the_partitions(format: &'static str) -> anyhow::Result<()> {
    let setup = Setup::new(format)?;
    let store = setup.services.bucket()?;
    // The first instance uploads every file in parts.
    let first = setup
        .sink(&[
            ("SINK_MULTIPART_THRESHOLD", "1"),
            ("SINK_MULTIPART_PART_SIZE", "5MiB"),
        ])
        .await?;
    setup.produce(0, 1500).await?;
    // With Delta tables, the second instance also compacts the (closed) days
    // every second while both append to them.
    let second = setup.sink(&[("SINK_COMPACT_EVERY", "1s")]).await?;
    setup.produce(1500, 3000).await?;
    setup.expect_exactly(store.as_ref(), 3000).await?;
    let multipart = first.log_text().matches("multipart=true").count();
    let compacted = second.log_text().matches("day compacted").count();
    first.interrupt(Duration::from_secs(30))?;
    second.interrupt(Duration::from_secs(30))?;
    ensure!(multipart > 0, "the first sink uploaded no file in parts");
    ensure!(
        format == PARQUET || compacted > 0,
        "the scheduled compaction compacted no day"
    );
    let staging = object_store::path::Path::from(format!("{}/_sink_staging", setup.prefix));
    let staged: Vec<_> = store.list(Some(&staging)).collect().await;
    ensure!(staged.is_empty(), "staged uploads left behind: {staged:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_outage_loses_nothing_and_duplicates_nothing() -> anyhow::Result<()> {
    an_s3_outage_loses_nothing(PARQUET).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_outage_loses_nothing_and_duplicates_nothing_in_delta() -> anyhow::Result<()> {
    an_s3_outage_loses_nothing(DELTA).await
}

async fn an_s3_outage_loses_nothing(format: &'static str) -> anyhow::Result<()> {
    let setup = Setup::new(format)?;
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

/// Enriched records of every resource and outcome, as the enricher writes
/// them, over two days; returns (key, payload, resource, status) per record.
fn every_kind_of_record() -> Vec<(String, String, &'static str, &'static str)> {
    let mut records = vec![];
    for (r, (resource, collection)) in [
        ("Users", "users"),
        ("Locations", "locations"),
        ("Results", "results"),
        ("Assignments", "assignments"),
        ("Notes", "notes"),
        ("Downtimes", "downtimes"),
    ]
    .into_iter()
    .enumerate()
    {
        for i in 0..60 {
            let id = format!("{collection}/{i}-A");
            let (status, record) = match i % 20 {
                0 => ("deleted", serde_json::Value::Null),
                1 => ("not_found", serde_json::Value::Null),
                _ => (
                    "found",
                    mobaro_sim::records::record(collection, &id).expect("a known collection"),
                ),
            };
            let payload = json!({
                "event_id": format!("{r:02}{i:030x}"), "resource": resource,
                "event": if status == "deleted" { "Deleted" } else { "Updated" },
                "object_id": id, "event_timestamp": format!("2025-03-0{}T23:59:59.5Z", 1 + i % 2),
                "received_at": "2025-03-01T08:00:00.120Z",
                "fetched_at": if status == "found" { json!("2025-03-01T08:00:00.250Z") } else { json!(null) },
                "status": status, "record": record,
            });
            records.push((id, payload.to_string(), resource, status));
        }
    }
    records
}

/// DuckDB's name for an Arrow type of the lake's schemas.
/// A table's columns with the DuckDB types the schema declares, then `dt`.
fn declared_types(table: schemas::Table) -> Vec<(String, String)> {
    let mut declared: Vec<(String, String)> = table
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), duckdb_type(f.data_type())))
        .collect();
    declared.push(("dt".into(), "DATE".into()));
    declared
}

/// Column names and types as DuckDB describes `source`.
fn described_types(python: &Path, source: &str) -> anyhow::Result<Vec<(String, String)>> {
    let described = duckdb(python, &format!("DESCRIBE SELECT * FROM {source}"))?;
    Ok(described
        .iter()
        .map(|row| {
            (
                row["column_name"].as_str().unwrap_or_default().to_string(),
                row["column_type"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

fn duckdb_type(data_type: &arrow::datatypes::DataType) -> String {
    use arrow::datatypes::{DataType, TimeUnit};
    match data_type {
        DataType::Utf8 => "VARCHAR".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        DataType::List(item) => format!("{}[]", duckdb_type(item.data_type())),
        DataType::Struct(fields) => format!(
            "STRUCT({})",
            fields
                .iter()
                .map(|f| format!("{} {}", f.name(), duckdb_type(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => panic!("no DuckDB name for {other}"),
    }
}

/// Every table, written to a `file://` lake, read back by the parquet crate
/// and by DuckDB: the declared column types, one row per record, typed
/// columns filled, key-value metadata, zstd; and files closed by their
/// measured encoded size.
#[tokio::test(flavor = "multi_thread")]
async fn every_table_reads_back_with_its_declared_types_from_a_file_lake() -> anyhow::Result<()> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use schemas::Table;

    let setup = Setup::new(PARQUET)?;
    let lake = tempfile::tempdir()?;
    let lake_url = format!("file://{}", lake.path().display());
    let dead_letters = format!("{}.deadletter", setup.topic);
    let (sink, ops) = setup
        .sink_with_ops(&[
            ("LAKE_URL", &lake_url),
            ("SINK_MAX_FILE_ROWS", "100000"),
            ("SINK_MAX_FILE_BYTES", "8KiB"),
            ("DEAD_LETTER_TOPIC", &dead_letters),
        ])
        .await?;
    let records = every_kind_of_record();
    let mut messages: Vec<(String, String)> = records
        .iter()
        .map(|(k, p, _, _)| (k.clone(), p.clone()))
        .collect();
    messages.insert(100, ("broken".into(), "{\"event_id\": ".into()));
    setup.send(&messages).await?;

    let expected = records.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while counts(&setup.services.python, lake.path())?.0 < expected {
        ensure!(Instant::now() < deadline, "the lake did not fill");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let dead = end_to_end::read_topic(
        &setup.services.brokers,
        &dead_letters,
        1,
        Duration::from_secs(30),
    )
    .await?;
    ensure!(
        end_to_end::header(&dead[0], schemas::headers::DLQ_ERROR_CLASS).as_deref()
            == Some("undecodable"),
        "the broken message was not dead-lettered with its reason"
    );
    let closed_by_size = metric(&ops, "sink_files_total{reason=\"bytes\"}").await;
    sink.interrupt(Duration::from_secs(30))?;

    let python = &setup.services.python;
    for table in Table::all() {
        let name = table.name();
        let (resource, wanted) = match table {
            Table::Events => (None, records.len()),
            Table::Records(r) => (
                Some(r),
                records
                    .iter()
                    .filter(|(_, _, res, _)| *res == r.as_str())
                    .count(),
            ),
        };
        let glob = format!("{}/{name}/*/*.parquet", lake.path().display());
        // DuckDB: types as declared, one row per record, typed ids read.
        let actual_types = described_types(
            python,
            &format!("read_parquet('{glob}', hive_partitioning = true)"),
        )?;
        let schema = table.schema();
        let expected_types = declared_types(table);
        ensure!(
            actual_types == expected_types,
            "{name}: DuckDB reads {actual_types:?}"
        );
        let (rows, distinct) = counts_of(python, lake.path(), name)?;
        ensure!(
            rows == wanted as u64 && distinct == rows,
            "{name}: {rows} rows, {distinct} distinct, {wanted} produced"
        );
        if let Some(resource) = resource {
            let found = records
                .iter()
                .filter(|(_, _, res, status)| *res == resource.as_str() && *status == "found")
                .count() as u64;
            let check = duckdb(
                python,
                &format!(
                    "SELECT count(*) FILTER (WHERE id = object_id AND record_json IS NOT NULL) AS typed, \
                     count(*) FILTER (WHERE status <> 'found' AND record_json IS NULL AND id IS NULL) AS bare \
                     FROM read_parquet('{glob}', hive_partitioning = true)"
                ),
            )?;
            let typed = check[0]["typed"].as_u64().unwrap_or(0);
            let bare = check[0]["bare"].as_u64().unwrap_or(0);
            ensure!(
                typed == found && bare == wanted as u64 - found,
                "{name}: {typed} typed of {found} found, {bare} bare"
            );
        }
        // The parquet crate: the same schema, with where the rows came from.
        let mut files = 0;
        for day in ["2025-03-01", "2025-03-02"] {
            let dir = lake.path().join(name).join(format!("dt={day}"));
            for entry in std::fs::read_dir(&dir)? {
                let reader = SerializedFileReader::new(std::fs::File::open(entry?.path())?)?;
                let metadata = reader.metadata();
                let arrow_schema = parquet::arrow::parquet_to_arrow_schema(
                    metadata.file_metadata().schema_descr(),
                    None,
                )?;
                for (read, declared) in arrow_schema.fields().iter().zip(schema.fields()) {
                    ensure!(
                        read.name() == declared.name()
                            && read.data_type().equals_datatype(declared.data_type())
                            && read.is_nullable() == declared.is_nullable(),
                        "{name}: {read:?} is not {declared:?}"
                    );
                }
                ensure!(arrow_schema.fields().len() == schema.fields().len());
                let kv = metadata
                    .file_metadata()
                    .key_value_metadata()
                    .cloned()
                    .unwrap_or_default();
                ensure!(
                    kv.iter().any(|e| e.key == "mobaro_lake.topic"
                        && e.value.as_deref() == Some(setup.topic.as_str())),
                    "{name}: no topic in the key-value metadata"
                );
                for column in metadata.row_group(0).columns() {
                    ensure!(
                        matches!(column.compression(), parquet::basic::Compression::ZSTD(_)),
                        "{name}: {} is {:?}",
                        column.column_path(),
                        column.compression()
                    );
                }
                files += 1;
            }
        }
        ensure!(files >= 2, "{name}: {files} files");
    }
    ensure!(
        closed_by_size > 0.0,
        "no file was closed by its encoded size"
    );

    // `sink ddl` for DuckDB, then the README's queries on its views.
    let location = lake.path().display().to_string();
    let ddl = end_to_end::run_binary(
        "sink",
        &["ddl", "--dialect", "duckdb", "--location", &location],
        &[("LAKE_FORMAT", PARQUET)],
    )?;
    let current_users = records
        .iter()
        .filter(|(_, _, r, s)| *r == "Users" && *s == "found")
        .count() as u64;
    let rows = duckdb(
        python,
        &format!(
            "{ddl}
            SELECT
              (SELECT count(*) FROM (SELECT * FROM mobaro_events
                 QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY received_at) = 1)) AS events,
              (SELECT count(*) FROM (SELECT * FROM mobaro_users
                 QUALIFY row_number() OVER (PARTITION BY object_id ORDER BY event_timestamp DESC, received_at DESC) = 1)
               WHERE status = 'found') AS current_users,
              (SELECT count(*) FROM mobaro_results r, UNNEST(r.values) AS t(v) WHERE v.question IS NOT NULL) AS answers"
        ),
    )?;
    ensure!(
        rows[0]["events"].as_u64() == Some(expected)
            && rows[0]["current_users"].as_u64() == Some(current_users)
            && rows[0]["answers"].as_u64().unwrap_or(0) > 0,
        "queries over the DDL's views returned {rows:?}"
    );
    Ok(())
}

/// A memory budget smaller than one batch: the largest batch is written early,
/// again and again, and every record still arrives exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_memory_budget_writes_early_and_loses_nothing() -> anyhow::Result<()> {
    let setup = Setup::new(PARQUET)?;
    let store = setup.services.bucket()?;
    let (sink, ops) = setup
        .sink_with_ops(&[
            ("SINK_MAX_FILE_ROWS", "100000"),
            ("SINK_MAX_FILE_AGE", "3s"),
            ("SINK_MEMORY_BUDGET", "48KiB"),
        ])
        .await?;
    setup.produce(0, 1000).await?;
    let written_early = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while metric(&ops, "sink_files_total{reason=\"memory\"}").await == 0.0 {
            ensure!(
                Instant::now() < deadline,
                "no file was written for the memory budget"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::Ok(())
    };
    written_early.await?;
    // The last records, under the budget, wait for the age limit.
    setup.expect_exactly(store.as_ref(), 1000).await?;
    sink.interrupt(Duration::from_secs(30))
}

/// The same deployment moved to a new broker (a new cluster, or the topic
/// deleted and created again): its offsets start again below what the
/// tables hold. The sink stops and says so; with `SINK_SOURCE_ID` the new
/// topic's records are all added, next to the old ones.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_topic_under_an_old_name_stops_the_sink_until_adopted() -> anyhow::Result<()> {
    let setup = Setup::new(DELTA)?;
    let store = setup.services.bucket()?;
    let (_other, elsewhere) = setup.moved_to_another_broker(300).await?;
    // Fewer records on the same keys: every partition ends below the
    // offsets the tables hold.
    elsewhere.produce_numbered(0, 100, 1_000_000).await?;
    let mut stopped = elsewhere.sink(&[SLOT]).await?;
    let status = stopped.exit_status(Duration::from_secs(60))?;
    ensure!(!status.success(), "the sink ran on over a restarted topic");
    let log = stopped.log_text();
    ensure!(
        log.contains("ends before it") && log.contains("SINK_SOURCE_ID"),
        "no clear error in {}",
        stopped.log.display()
    );
    setup.expect_exactly(store.as_ref(), 300).await?;

    let adopted = elsewhere
        .sink(&[SLOT, ("SINK_SOURCE_ID", "cluster-b")])
        .await?;
    setup.expect_exactly(store.as_ref(), 400).await?;
    adopted.interrupt(Duration::from_secs(30))
}

/// An upgrade from plain Parquet (the old default) to Delta on the same
/// prefix: the sink and its vacuum refuse, and no file is deleted; then
/// `sink convert-to-delta` makes the files the tables' history, and a Delta
/// sink replaying the whole topic under a new group (deduplication off,
/// so only the transactions can tell) adds only what the files lack.
#[tokio::test(flavor = "multi_thread")]
async fn parquet_history_is_refused_then_converted_to_delta_in_place() -> anyhow::Result<()> {
    let setup = Setup::new(PARQUET)?;
    let store = setup.services.bucket()?;
    end_to_end::create_topics(&setup.services.brokers, &[&setup.topic], 3).await?;
    setup.produce(0, 300).await?;
    let first = setup.sink(&[]).await?;
    setup.expect_exactly(store.as_ref(), 300).await?;
    first.interrupt(Duration::from_secs(30))?;
    let files = |store: std::sync::Arc<dyn ObjectStore>, prefix: String| async move {
        let listed: Vec<_> = store
            .list(Some(&prefix.as_str().into()))
            .collect::<Vec<_>>()
            .await;
        listed.len()
    };
    let before = files(store.clone(), setup.prefix.clone()).await;

    let (mut upgraded, _) = setup.start_sink(&[("LAKE_FORMAT", DELTA)])?;
    let status = upgraded.exit_status(Duration::from_secs(60))?;
    ensure!(
        !status.success(),
        "the sink wrote Delta tables over Parquet history"
    );
    let log = upgraded.log_text();
    ensure!(
        log.contains("is a plain Parquet file, but LAKE_FORMAT=delta"),
        "no clear error in {}",
        upgraded.log.display()
    );
    let lake_url = format!("s3://{}/{}", setup.services.s3_bucket, setup.prefix);
    let vacuum = end_to_end::run_binary(
        "sink",
        &["vacuum", "--force"],
        &[
            ("LAKE_URL", &lake_url),
            ("LAKE_FORMAT", DELTA),
            ("SINK_VACUUM_RETENTION", "0s"),
        ],
    );
    ensure!(vacuum.is_err(), "vacuum ran over Parquet history");
    ensure!(
        files(store.clone(), setup.prefix.clone()).await == before,
        "files were deleted or added"
    );
    setup.expect_exactly(store.as_ref(), 300).await?;

    let convert_env = [
        ("LAKE_URL", lake_url.as_str()),
        ("LAKE_FORMAT", DELTA),
        ("ENRICHED_TOPIC", setup.topic.as_str()),
    ];
    let converted = end_to_end::run_binary_output("sink", &["convert-to-delta"], &convert_env)?;
    ensure!(
        converted.status.success() && converted.stdout.contains("events: "),
        "the conversion failed: {converted:?}"
    );
    println!("{}", converted.stdout);
    let again = end_to_end::run_binary_output("sink", &["convert-to-delta"], &convert_env)?;
    ensure!(
        again.status.success() && again.stdout.contains(" 0 added now"),
        "a second conversion added files again: {again:?}"
    );
    let events =
        end_to_end::deltalake(&setup.services.python, &format!("{lake_url}/events"), None)?;
    ensure!(
        events.rows == 300 && events.distinct == 300,
        "Python deltalake reads {} rows ({} distinct) of 300 after the conversion",
        events.rows,
        events.distinct
    );
    let replaying_group = unique("replay");
    let replaying = setup
        .sink(&[
            ("LAKE_FORMAT", DELTA),
            ("SINK_GROUP_ID", &replaying_group),
            ("SINK_DEDUP_HORIZON", "0"),
        ])
        .await?;
    setup.produce(300, 500).await?;
    setup.expect_exactly(store.as_ref(), 500).await?;
    ensure!(
        files(store.clone(), setup.prefix.clone()).await > before,
        "the Parquet files are not all there"
    );
    replaying.interrupt(Duration::from_secs(30))
}

/// A new cluster whose topic of the old name has grown past the offsets
/// the tables hold before the sink meets it: offsets cannot tell, the
/// cluster's id does. The sink stops and says so, writing nothing; with
/// `SINK_SOURCE_ID` every record of the new topic is added.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_cluster_past_the_old_offsets_stops_the_sink_until_adopted() -> anyhow::Result<()> {
    let setup = Setup::new(DELTA)?;
    let store = setup.services.bucket()?;
    let (_other, elsewhere) = setup.moved_to_cluster(900, "cluster-b").await?;
    elsewhere.produce_numbered(0, 1200, 1_000_000).await?;
    let mut stopped = elsewhere.sink(&[SLOT]).await?;
    let status = stopped.exit_status(Duration::from_secs(60))?;
    ensure!(
        !status.success(),
        "the sink ran on over another cluster's topic"
    );
    let log = stopped.log_text();
    ensure!(
        log.contains("but the broker is cluster cluster-b") && log.contains("SINK_SOURCE_ID"),
        "no clear error in {}",
        stopped.log.display()
    );
    setup.expect_exactly(store.as_ref(), 900).await?;
    let adopted = elsewhere
        .sink(&[SLOT, ("SINK_SOURCE_ID", "cluster-b")])
        .await?;
    setup.expect_exactly(store.as_ref(), 2100).await?;
    adopted.interrupt(Duration::from_secs(30))
}

/// A second deployment (another broker, the same topic name) writing into
/// the same lake prefix: its first batches get the names of files that hold
/// other rows. The sink stops loudly instead of counting them as written.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_with_the_same_name_but_other_rows_stops_the_sink() -> anyhow::Result<()> {
    let setup = Setup::new(PARQUET)?;
    let store = setup.services.bucket()?;
    let (_other, elsewhere) = setup.moved_to_another_broker(900).await?;
    // The same keys and offsets, other events.
    elsewhere.produce_numbered(0, 900, 1_000_000).await?;
    let mut second = elsewhere.sink(&[]).await?;
    let status = second.exit_status(Duration::from_secs(60))?;
    ensure!(
        !status.success(),
        "the sink kept running over foreign files"
    );
    let log = second.log_text();
    ensure!(
        log.contains("holds other rows than the batch named after it"),
        "no clear error in {}",
        second.log.display()
    );
    // The first deployment's rows are all still there, and only they.
    let dir = tempfile::tempdir()?;
    download(store.as_ref(), &setup.prefix, dir.path()).await?;
    let first_rows = duckdb(
        &setup.services.python,
        &format!(
            "SELECT count(*) AS n FROM read_parquet('{}/events/*/*.parquet') WHERE event_id < '{:032x}'",
            dir.path().display(),
            1_000_000
        ),
    )?;
    assert_eq!(first_rows[0]["n"], 900);
    Ok(())
}

/// A TCP proxy to the S3 server that can hold every byte in both directions
/// (a blackhole that keeps connections open), then let them through again.
struct Blackhole {
    address: String,
    held: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Blackhole {
    async fn start(upstream: &str) -> anyhow::Result<Blackhole> {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let held = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = held.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(Self::pipe(client_read, server_write, flag.clone()));
                tokio::spawn(Self::pipe(server_read, client_write, flag.clone()));
            }
        });
        Ok(Blackhole { address, held })
    }

    async fn pipe(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        held: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            while held.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if to.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    }

    fn hold(&self, on: bool) {
        self.held.store(on, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Offset ranges of the lake's files, per (table, partition), from their names.
fn ranges(
    files: &[std::path::PathBuf],
    root: &Path,
) -> BTreeMap<(String, i32), BTreeSet<(i64, i64)>> {
    let mut ranges: BTreeMap<(String, i32), BTreeSet<(i64, i64)>> = BTreeMap::new();
    for file in files {
        let Ok(relative) = file.strip_prefix(root) else {
            continue;
        };
        let table = relative
            .iter()
            .next()
            .and_then(|t| t.to_str())
            .unwrap_or_default();
        let Some(name) = file
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".parquet"))
        else {
            continue;
        };
        let parts: Vec<&str> = name.rsplitn(4, '+').collect();
        if let [last, first, partition, _topic] = parts[..] {
            if let (Ok(first), Ok(last), Ok(partition)) =
                (first.parse(), last.parse(), partition.parse())
            {
                ranges
                    .entry((table.to_string(), partition))
                    .or_default()
                    .insert((first, last));
            }
        }
    }
    ranges
}

/// A sink whose store stops answering for longer than its
/// `max.poll.interval.ms`: librdkafka declares its assignment lost while a
/// batch is in hand. Once the store answers and a second sink joins, every
/// record is in the lake once and no offset range is cut twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_sink_stalled_past_its_poll_interval_cuts_no_range_twice() -> anyhow::Result<()> {
    let setup = Setup::new(PARQUET)?;
    let store = setup.services.bucket()?;
    end_to_end::create_topics(&setup.services.brokers, &[&setup.topic], 3).await?;
    let blackhole = Blackhole::start(&setup.services.s3_endpoint).await?;
    let proxied = format!("http://{}", blackhole.address);
    // The only tuned settings: the zombie overruns its poll interval within
    // seconds. The stall (30 s) is longer than the poll interval (25 s) and
    // shorter than the poll interval plus the session (50 s): tansu 0.6.0
    // keeps a group leader whose session expired as the leader, and the
    // group never forms again (every SyncGroup answers "rebalance in
    // progress"), which Kafka does not do. For the same reason the second
    // sink joins after the stall: while it waits for a stalled leader, the
    // leader's session runs out.
    let zombie = setup
        .sink(&[
            ("AWS_ENDPOINT_URL", &proxied),
            (
                "KAFKA_OPTIONS",
                "max.poll.interval.ms=25000,session.timeout.ms=25000",
            ),
            ("INSTANCE_NAME", "zombie"),
        ])
        .await?;
    setup.produce(0, 600).await?;
    setup.wait_for_rows(store.as_ref(), 600).await?;
    blackhole.hold(true);
    setup.produce(600, 1500).await?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    blackhole.hold(false);
    let survivor = setup.sink(&[("INSTANCE_NAME", "survivor")]).await?;
    setup.expect_exactly(store.as_ref(), 1500).await?;
    // Let the zombie finish whatever it still had in hand, then look again.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let dir = tempfile::tempdir()?;
    let files = download(store.as_ref(), &setup.prefix, dir.path()).await?;
    let (rows, distinct) = counts(&setup.services.python, dir.path())?;
    ensure!(
        rows == 1500 && distinct == 1500,
        "{rows} rows, {distinct} distinct"
    );
    for ((table, partition), ranges) in ranges(&files, dir.path()) {
        let ranges: Vec<_> = ranges.into_iter().collect();
        for pair in ranges.windows(2) {
            ensure!(
                pair[0].1 < pair[1].0,
                "{table} partition {partition}: files {:?} and {:?} overlap",
                pair[0],
                pair[1]
            );
        }
    }
    ensure!(
        zombie.log_text().contains("max.poll.interval.ms"),
        "the stalled sink did not overrun its poll interval"
    );
    zombie.interrupt(Duration::from_secs(40))?;
    survivor.interrupt(Duration::from_secs(40))
}

/// Compaction of Delta tables while the sink appends to the same days: no row
/// lost, the duplicate deliveries gone from the compacted days, few files per
/// day; then a vacuum with log cleanup, after which time travel to before
/// compaction fails with an error, and a sink re-reading the whole topic
/// under a new group adds nothing (the checkpoint kept the transactions).
#[tokio::test(flavor = "multi_thread")]
async fn compaction_and_vacuum_keep_every_event_once() -> anyhow::Result<()> {
    let setup = Setup::new(DELTA)?;
    let store = setup.services.bucket()?;
    let python = &setup.services.python;
    let lake_url = format!("s3://{}/{}", setup.services.s3_bucket, setup.prefix);
    let events = format!("{lake_url}/events");
    const TARGET: u64 = 64 * 1024;
    let upkeep = [
        ("LAKE_URL", lake_url.as_str()),
        ("LAKE_FORMAT", DELTA),
        ("SINK_COMPACT_TARGET_SIZE", "64KiB"),
    ];
    let compact = |env: [(&str, &str); 3]| -> anyhow::Result<String> {
        end_to_end::run_binary("sink", &["compact"], &env)
    };

    // Deduplication off, so that the tables hold copies for compaction to
    // remove, as tables written before it or by another writer do.
    let sink = setup.sink(&[("SINK_DEDUP_HORIZON", "0")]).await?;
    setup.produce(0, 2000).await?;
    // At-least-once upstream: 500 events delivered a second time.
    setup.produce(0, 500).await?;
    setup.wait_for_rows(store.as_ref(), 2500).await?;
    let before_compaction = end_to_end::deltalake(python, &events, None)?.version;

    // More events for the same (closed) days while compaction runs.
    let (compacted, produced) = tokio::join!(
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            compact(upkeep)
        },
        setup.produce(2000, 4000)
    );
    produced?;
    let first_run = compacted?;
    ensure!(
        first_run.contains("events dt="),
        "nothing compacted: {first_run}"
    );
    // Everything consumed: every event is in the table at least once.
    let deadline = Instant::now() + Duration::from_secs(90);
    while end_to_end::deltalake(python, &events, None)?.distinct < 4000 {
        ensure!(
            Instant::now() < deadline,
            "not every event reached the table"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    sink.interrupt(Duration::from_secs(30))?;
    let mut runs = vec![first_run];
    while runs
        .last()
        .is_some_and(|r| r.contains("left for the next run"))
        || runs.len() < 2
    {
        ensure!(runs.len() < 6, "compaction kept conflicting: {runs:?}");
        runs.push(compact(upkeep)?);
    }

    for table in ["events", "results"] {
        let read = end_to_end::deltalake(python, &format!("{lake_url}/{table}"), None)?;
        ensure!(
            read.rows == 4000 && read.distinct == 4000,
            "{table}: {} rows, {} distinct after compaction ({runs:?})",
            read.rows,
            read.distinct
        );
        let mut days: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (day, size) in &read.files {
            let entry = days.entry(day.clone()).or_default();
            entry.0 += 1;
            entry.1 += size;
        }
        for (day, (files, bytes)) in days {
            ensure!(
                files <= bytes.div_ceil(TARGET),
                "{table} dt={day}: {files} files for {bytes} bytes"
            );
        }
        // DuckDB reads the same over S3.
        let rows = duckdb(
            python,
            &format!("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM delta_scan('{lake_url}/{table}')"),
        )?;
        ensure!(
            rows[0]["n"].as_u64() == Some(4000) && rows[0]["d"].as_u64() == Some(4000),
            "{table}: DuckDB reads {rows:?}"
        );
    }

    let vacuumed = end_to_end::run_binary(
        "sink",
        &["vacuum", "--force"],
        &[
            upkeep[0],
            upkeep[1],
            ("SINK_VACUUM_RETENTION", "0s"),
            ("SINK_LOG_RETENTION", "0s"),
        ],
    )?;
    ensure!(vacuumed.contains("events: "), "vacuum said {vacuumed}");
    let travelled = end_to_end::deltalake(python, &events, Some(before_compaction));
    ensure!(
        travelled.is_err(),
        "version {before_compaction} still reads after vacuum: {travelled:?}"
    );
    ensure!(end_to_end::deltalake(python, &events, None)?.rows == 4000);

    // The whole topic again, under a new group: nothing is added.
    let group = format!("{}-again", setup.group);
    let again = setup.sink(&[("SINK_GROUP_ID", &group)]).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while again
        .log_text()
        .matches("are in the tables already")
        .count()
        < 3
    {
        ensure!(
            Instant::now() < deadline,
            "the new group did not read the tables' versions"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log = again.log_text();
    again.interrupt(Duration::from_secs(30))?;
    ensure!(
        !log.contains("committed table="),
        "the second group committed files"
    );
    let read = end_to_end::deltalake(python, &events, None)?;
    ensure!(
        read.rows == 4000,
        "{} rows after re-reading the topic",
        read.rows
    );
    Ok(())
}

/// Every table as Delta tables on the S3 server, read there by DuckDB's
/// `delta_scan` and by the Python `deltalake` package: the declared column
/// types, one row per record; then `sink ddl`'s DuckDB views over them.
#[tokio::test(flavor = "multi_thread")]
async fn every_delta_table_reads_back_with_its_declared_types_over_s3() -> anyhow::Result<()> {
    use schemas::Table;

    let setup = Setup::new(DELTA)?;
    let python = &setup.services.python;
    let lake_url = format!("s3://{}/{}", setup.services.s3_bucket, setup.prefix);
    let sink = setup.sink(&[("SINK_MAX_FILE_ROWS", "100000")]).await?;
    let records = every_kind_of_record();
    let messages: Vec<(String, String)> = records
        .iter()
        .map(|(k, p, _, _)| (k.clone(), p.clone()))
        .collect();
    setup.send(&messages).await?;
    // Every record lands in `events` and in its resource's table.
    let all_rows = Table::all()
        .map(|t| {
            format!(
                "SELECT count(*) AS n FROM delta_scan('{lake_url}/{}')",
                t.name()
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = duckdb(python, &format!("SELECT sum(n) AS n FROM ({all_rows})"))
            .map_or(0, |rows| rows[0]["n"].as_u64().unwrap_or(0));
        if rows >= 2 * records.len() as u64 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the tables did not fill: {rows} rows"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sink.interrupt(Duration::from_secs(30))?;

    for table in Table::all() {
        let name = table.name();
        let wanted = match table {
            Table::Events => records.len(),
            Table::Records(r) => records
                .iter()
                .filter(|(_, _, res, _)| *res == r.as_str())
                .count(),
        } as u64;
        let uri = format!("{lake_url}/{name}");
        let declared = declared_types(table);
        let read = described_types(python, &format!("delta_scan('{uri}')"))?;
        ensure!(read == declared, "{name}: DuckDB reads {read:?}");
        let counted = duckdb(
            python,
            &format!(
                "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM delta_scan('{uri}')"
            ),
        )?;
        ensure!(
            counted[0]["n"].as_u64() == Some(wanted) && counted[0]["d"].as_u64() == Some(wanted),
            "{name}: DuckDB counts {counted:?}, {wanted} produced"
        );
        let summary = end_to_end::deltalake(python, &uri, None)?;
        let columns: Vec<&str> = summary.columns.iter().map(|(n, _)| n.as_str()).collect();
        let expected: Vec<&str> = declared.iter().map(|(n, _)| n.as_str()).collect();
        ensure!(
            columns == expected,
            "{name}: deltalake reads columns {columns:?}"
        );
        ensure!(
            summary.rows == wanted && summary.distinct == wanted,
            "{name}: deltalake counts {} rows, {} distinct, {wanted} produced",
            summary.rows,
            summary.distinct
        );
    }

    let ddl = end_to_end::run_binary(
        "sink",
        &["ddl", "--dialect", "duckdb"],
        &[("LAKE_URL", &lake_url), ("LAKE_FORMAT", DELTA)],
    )?;
    let rows = duckdb(
        python,
        &format!(
            "{ddl}
            SELECT (SELECT count(*) FROM mobaro_events) AS events,
                   (SELECT count(*) FROM mobaro_results r, UNNEST(r.values) AS t(v) WHERE v.question IS NOT NULL) AS answers"
        ),
    )?;
    ensure!(
        rows[0]["events"].as_u64() == Some(records.len() as u64)
            && rows[0]["answers"].as_u64().unwrap_or(0) > 0,
        "queries over the DDL's views returned {rows:?}"
    );
    Ok(())
}

/// A Delta lake on Azure Blob Storage, on its emulator (Azurite): the sink
/// proves the container refuses a second create of one key, commits batches
/// of three partitions with create-only writes of the log's entries, a
/// second sink under the same name replays nothing twice, `sink compact`
/// leaves one file per day and `sink vacuum` deletes what it replaced; Python
/// `deltalake` reads every record once.
#[tokio::test(flavor = "multi_thread")]
async fn a_delta_lake_on_azure_blob_storage_holds_every_record_once() -> anyhow::Result<()> {
    let container = std::env::var("LAKE_TEST_AZURE_CONTAINER")
        .context("LAKE_TEST_AZURE_CONTAINER is not set: scripts/test starts Azurite and sets it")?;
    let setup = Setup::new(DELTA)?;
    end_to_end::create_topics(&setup.services.brokers, &[&setup.topic], 3).await?;
    let lake_url = format!("az://{container}/{}", setup.prefix);
    let azure = [
        ("LAKE_URL", lake_url.as_str()),
        ("LAKE_FORMAT", DELTA),
        ("AZURE_STORAGE_USE_EMULATOR", "true"),
    ];
    let first = setup.sink(&[azure[0], azure[2], SLOT]).await?;
    setup.produce(0, 300).await?;
    setup.wait_until_committed(300).await?;
    drop(first);
    // Killed (-9) and started again: what the tables hold is not added again.
    let second = setup.sink(&[azure[0], azure[2], SLOT]).await?;
    setup.produce(300, 600).await?;
    setup.wait_until_committed(600).await?;
    second.interrupt(Duration::from_secs(30))?;
    let events = format!("{lake_url}/events");
    let python = &setup.services.python;
    let written = end_to_end::deltalake(python, &events, None)?;
    ensure!(
        written.rows == 600 && written.distinct == 600,
        "{} rows, {} distinct in events, 600 produced",
        written.rows,
        written.distinct
    );
    let compacted = end_to_end::run_binary("sink", &["compact"], &azure)?;
    let vacuumed = end_to_end::run_binary(
        "sink",
        &["vacuum", "--force"],
        &[
            azure[0],
            azure[1],
            azure[2],
            ("SINK_VACUUM_RETENTION", "0s"),
        ],
    )?;
    for table in ["events", "results"] {
        let read = end_to_end::deltalake(python, &format!("{lake_url}/{table}"), None)?;
        ensure!(
            read.rows == 600 && read.distinct == 600,
            "{table}: {} rows, {} distinct after compaction; 600 produced",
            read.rows,
            read.distinct
        );
        let days: BTreeSet<&str> = read.files.iter().map(|(dt, _)| dt.as_str()).collect();
        ensure!(
            read.files.len() == days.len() && days.len() == 3,
            "{table}: {} files for the days {days:?} after compaction\n{compacted}",
            read.files.len()
        );
    }
    let deleted: usize = vacuumed
        .lines()
        .find_map(|line| {
            line.strip_prefix("events: ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    ensure!(
        deleted > 0,
        "sink vacuum deleted no replaced file of events:\n{vacuumed}"
    );
    Ok(())
}

/// A year of a Delta lake, compressed: each simulated day's events (the day
/// from the event time) go through the sink, then the upkeep runs (compact,
/// vacuum and log cleanup, retentions shortened). On the last day the log
/// holds only what its retention keeps, each closed day is one file, the
/// sink is within its memory and its store requests per commit are as on
/// the second day; the commit times of each day are printed.
/// `LAKE_YEAR_DAYS` sets the length (the suite runs a short year;
/// `scripts/year` a whole one).
#[tokio::test(flavor = "multi_thread")]
async fn a_compressed_year_costs_the_same_on_its_last_day_as_on_its_first() -> anyhow::Result<()> {
    const PER_DAY: usize = 40;
    let days: usize = std::env::var("LAKE_YEAR_DAYS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(8);
    let setup = Setup::new(DELTA)?;
    let store = setup.services.bucket()?;
    end_to_end::create_topics(&setup.services.brokers, &[&setup.topic], 3).await?;
    // The upkeep runs as commands after each day; the sink's own schedules
    // (compaction, the merging of open days) would add their requests to
    // what the commits are measured by.
    let (sink, ops) = setup
        .sink_with_ops(&[
            SLOT,
            ("SINK_COMPACT_EVERY", "0s"),
            ("SINK_MERGE_EVERY", "0s"),
        ])
        .await?;
    let lake_url = format!("s3://{}/{}", setup.services.s3_bucket, setup.prefix);
    // A simulated day takes 10 to 20 s: the log keeps two or three days,
    // and the cleanup never removes the version after the sink's last
    // commit, as in production, where the log keeps 30 days and the upkeep
    // runs hourly. (A writer whose next version the cleanup removed, as
    // after 30 idle days, is the lake crate's unit test.)
    const LOG_RETENTION: Duration = Duration::from_secs(30);
    let upkeep_env = [
        ("LAKE_URL", lake_url.as_str()),
        ("LAKE_FORMAT", DELTA),
        ("SINK_VACUUM_RETENTION", "0s"),
        ("SINK_LOG_RETENTION", "30s"),
    ];
    let first_day = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).expect("a date");
    let mut figures = Vec::new();
    let mut oldest_entry = Duration::ZERO;
    let mut day_took = Duration::ZERO;
    for day in 0..days {
        let day_started = std::time::Instant::now();
        let date = first_day + chrono::Duration::days(day as i64);
        let messages: Vec<(String, String)> = (0..PER_DAY)
            .map(|i| {
                let n = day * PER_DAY + i;
                let id = format!("results/{}-A", n % 97);
                let value = json!({
                    "event_id": format!("{n:032x}"), "resource": "Results", "event": "Updated",
                    "object_id": id, "event_timestamp": format!("{date}T08:{:02}:00Z", i % 60),
                    "received_at": null, "fetched_at": format!("{date}T09:00:00Z"), "status": "found",
                    "record": {"id": id, "score": 0.5},
                });
                (id, value.to_string())
            })
            .collect();
        const LISTS: &str = r#"sink_store_requests_total{operation="list"}"#;
        let (sum, count, lists, requests) = (
            metric(&ops, "sink_delta_commit_seconds_sum").await,
            metric(&ops, "sink_delta_commit_seconds_count").await,
            metric(&ops, LISTS).await,
            metric(&ops, "sink_store_requests_total").await,
        );
        setup.send(&messages).await?;
        setup
            .wait_until_committed(((day + 1) * PER_DAY) as i64)
            .await?;
        let commits = metric(&ops, "sink_delta_commit_seconds_count").await - count;
        let mean = (metric(&ops, "sink_delta_commit_seconds_sum").await - sum) / commits.max(1.0);
        let lists = (metric(&ops, LISTS).await - lists) / commits.max(1.0);
        let day_requests = metric(&ops, "sink_store_requests_total").await - requests;
        let requests = day_requests / commits.max(1.0);
        end_to_end::run_binary("sink", &["compact"], &upkeep_env)?;
        end_to_end::run_binary("sink", &["vacuum", "--force"], &upkeep_env)?;
        let log: Vec<_> = store
            .list(Some(
                &format!("{}/events/_delta_log", setup.prefix)
                    .as_str()
                    .into(),
            ))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let log_files = log.len();
        day_took = day_started.elapsed();
        oldest_entry = log
            .iter()
            .filter(|meta| meta.location.as_ref().ends_with(".json"))
            .filter_map(|meta| (chrono::Utc::now() - meta.last_modified).to_std().ok())
            .max()
            .unwrap_or_default();
        let checkpoint_bytes: u64 = log
            .iter()
            .filter(|meta| meta.location.as_ref().contains(".checkpoint"))
            .map(|meta| meta.size)
            .max()
            .unwrap_or(0);
        let rss = sink.peak_rss_mib().unwrap_or(0.0);
        // The exporter's quantiles cover about the last minute: a few days.
        let quantile = |q: &str| format!(r#"sink_delta_commit_seconds{{quantile="{q}"}}"#);
        let p50 = metric(&ops, &quantile("0.5")).await * 1000.0;
        let p99 = metric(&ops, &quantile("0.99")).await * 1000.0;
        eprintln!(
            "year: day {:>3}: {commits} commits, mean {:.1} ms (last minute: p50 {p50:.1} ms, p99 {p99:.1} ms); store requests {day_requests:.0}, per commit {requests:.1} ({lists:.1} lists); log {log_files} files, checkpoint {checkpoint_bytes} B; sink peak RSS {rss:.0} MiB",
            day + 1,
            mean * 1000.0
        );
        figures.push((mean, log_files, rss, day_requests));
    }
    let events =
        end_to_end::deltalake(&setup.services.python, &format!("{lake_url}/events"), None)?;
    ensure!(
        events.rows == (days * PER_DAY) as u64 && events.distinct == events.rows,
        "{} rows, {} distinct, {} produced",
        events.rows,
        events.distinct,
        days * PER_DAY
    );
    let mut per_day: BTreeMap<&str, usize> = BTreeMap::new();
    for (dt, _) in &events.files {
        *per_day.entry(dt.as_str()).or_default() += 1;
    }
    ensure!(
        per_day.len() == days && per_day.values().all(|files| *files == 1),
        "files per closed day: {per_day:?}"
    );
    // The log holds only what its retention keeps (entries of the last
    // retention, and of the day the upkeep ran in), and memory stays in the
    // budget. Commit times are printed, not asserted (a measurement, from
    // `scripts/year`).
    let last = figures[days - 1];
    ensure!(
        oldest_entry <= LOG_RETENTION + day_took + Duration::from_secs(5),
        "the log's oldest entry was written {oldest_entry:?} ago; its retention is {LOG_RETENTION:?}"
    );
    ensure!(last.2 <= 512.0 + 100.0, "peak RSS {:.0} MiB", last.2);
    // The store requests of a day (the same events every day) do not grow
    // with the table's age (day 1 also creates the tables). Per day, not
    // per commit: how many commits a day's burst makes depends on when
    // the sink catches up.
    let second = figures[1.min(days - 1)];
    ensure!(
        last.3 <= second.3 * 1.1 + 5.0,
        "{:.0} store requests on day 2, {:.0} on day {days}",
        second.3,
        last.3
    );
    sink.interrupt(Duration::from_secs(30))
}

/// Every event delivered three times, at other offsets, in other batches
/// and across a kill -9 of the sink (which restarts with nothing in
/// memory) and a second sink sharing the partitions, on default settings,
/// events of recent days and of a day long before the horizon alike:
/// one row per event in every version of every table, as an independent
/// reader (Python `deltalake`) sees them.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_delivered_three_times_is_one_row_in_every_delta_version() -> anyhow::Result<()> {
    let setup = Setup::new(DELTA)?;
    let store = setup.services.bucket()?;
    end_to_end::create_topics(&setup.services.brokers, &[&setup.topic], 3).await?;
    let today = chrono::Utc::now().date_naive();
    let days = [
        format!("{today}T08:00:00Z"),
        format!("{}T08:00:00Z", today - chrono::Days::new(1)),
    ];
    let first = setup.sink(&[SLOT]).await?;
    // Repeats within one batch, then in later batches.
    setup.produce_events((0..200).chain(0..200), &days).await?;
    setup.produce_events(200..300, &days).await?;
    // Events of a day long before the horizon, as a backfill of history
    // produces them; run again below.
    let history = ["2025-03-01T08:00:00Z".to_string()];
    setup.produce_events(1000..1050, &history).await?;
    setup.wait_for_rows(store.as_ref(), 350).await?;
    setup
        .produce_events((0..300).chain(300..400), &days)
        .await?;
    setup.produce_events(1000..1050, &history).await?;
    setup.wait_for_rows(store.as_ref(), 450).await?;
    drop(first);
    // A sink with nothing in memory reads the ids from the tables, and so
    // does another that takes some of its partitions.
    let second = setup.sink(&[SLOT]).await?;
    let third = setup.sink(&[("INSTANCE_NAME", "slot-1")]).await?;
    setup
        .produce_events((0..400).chain(400..500), &days)
        .await?;
    setup.produce_events(1000..1050, &history).await?;
    setup.expect_exactly(store.as_ref(), 550).await?;
    ensure!(
        third.log_text().contains("partitions assigned"),
        "the third sink took no partition"
    );
    third.interrupt(Duration::from_secs(30))?;
    let lake_url = format!("s3://{}/{}", setup.services.s3_bucket, setup.prefix);
    for table in ["events", "results"] {
        let versions = rows_per_version(&setup.services.python, &format!("{lake_url}/{table}"))?;
        ensure!(versions.len() > 2, "{table}: {} versions", versions.len());
        for (version, rows, distinct) in versions {
            ensure!(
                rows == distinct,
                "{table} version {version}: {rows} rows, {distinct} distinct"
            );
        }
    }
    second.interrupt(Duration::from_secs(30))
}

/// A sink whose tables hold more event ids than a quarter of its
/// `SINK_MEMORY_BUDGET` reads back only the newest days that fit: the
/// horizon shortens, with a warning and the gauge, the ids stay within
/// their share, and repeats of the days kept are still left out.
#[tokio::test(flavor = "multi_thread")]
async fn event_ids_beyond_the_memory_budget_shorten_the_horizon() -> anyhow::Result<()> {
    // 4,000 events a day, in `events` and `results`: 278 KiB of ids a day
    // (two sets of 8,192 slots), 1.9 MiB for the week, where a budget of
    // 4 MiB leaves them 1 MiB: three days.
    const PER_DAY: usize = 4000;
    const BUDGET_MIB: f64 = 4.0;
    let setup = Setup::new(DELTA)?;
    let store = setup.services.bucket()?;
    end_to_end::create_topics(&setup.services.brokers, &[&setup.topic], 3).await?;
    let today = chrono::Utc::now().date_naive();
    let days: Vec<String> = (0..7)
        .map(|d| format!("{}T08:00:00Z", today - chrono::Days::new(d)))
        .collect();
    let writer = setup
        .sink(&[
            SLOT,
            ("SINK_MAX_FILE_ROWS", "100000"),
            ("SINK_MAX_FILE_AGE", "2s"),
        ])
        .await?;
    setup
        .send_many(&event_messages(0..7 * PER_DAY, &days))
        .await?;
    setup
        .expect_exactly(store.as_ref(), 7 * PER_DAY as u64)
        .await?;
    writer.interrupt(Duration::from_secs(30))?;

    let (reader, ops) = setup
        .sink_with_ops(&[SLOT, ("SINK_MEMORY_BUDGET", "4MiB")])
        .await?;
    let ready_mib = reader.peak_rss_mib().context("the sink's memory")?;
    // A new event of today, and two repeats of today's events (ids 0 and 7
    // fall on today): the first batch reads the ids back.
    setup
        .produce_events([7 * PER_DAY, 0, 7].into_iter(), &days)
        .await?;
    setup
        .expect_exactly(store.as_ref(), 7 * PER_DAY as u64 + 1)
        .await?;
    let left_out = metric(&ops, r#"sink_duplicates_left_out_total{table="events"}"#).await;
    let horizon = metric(&ops, "sink_dedup_horizon_days").await;
    let tracked = metric(&ops, "sink_dedup_tracked_bytes").await;
    let peak_mib = reader.peak_rss_mib().context("the sink's memory")?;
    println!(
        "horizon {horizon} days, ids {tracked} bytes, RSS {ready_mib:.1} MiB when ready, peak {peak_mib:.1} MiB"
    );
    ensure!(
        left_out == 2.0,
        "{left_out} repeats of today left out of events"
    );
    ensure!(
        (1.0..7.0).contains(&horizon) && tracked <= BUDGET_MIB * 1024.0 * 1024.0 / 4.0,
        "horizon {horizon} days, ids {tracked} bytes"
    );
    ensure!(
        reader
            .log_text()
            .contains("outgrew a quarter of SINK_MEMORY_BUDGET while read back"),
        "no warning that the horizon was shortened"
    );
    // Besides what the budget governs, the first batch loads the six
    // tables' Delta states and opens their files: about 10 MiB here.
    const OUTSIDE_THE_BUDGET_MIB: f64 = 16.0;
    ensure!(
        peak_mib - ready_mib <= BUDGET_MIB + OUTSIDE_THE_BUDGET_MIB,
        "the sink grew by {:.1} MiB reading the ids back, beyond its budget of {BUDGET_MIB} MiB \
         and {OUTSIDE_THE_BUDGET_MIB} MiB for the tables' states",
        peak_mib - ready_mib
    );
    reader.interrupt(Duration::from_secs(30))
}

/// Rows and distinct `event_id`s of every version of the Delta table at
/// `uri`, read by Python `deltalake`.
fn rows_per_version(python: &Path, uri: &str) -> anyhow::Result<Vec<(i64, u64, u64)>> {
    end_to_end::deltalake_script(
        python,
        uri,
        &[],
        r#"
latest = DeltaTable(sys.argv[1], storage_options=options).version()
counts = []
for version in range(latest + 1):
    table = DeltaTable(sys.argv[1], version=version, storage_options=options)
    result = QueryBuilder().register("t", table).execute("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM t").read_all()
    counts.append([version, result.column("n").to_pylist()[0], result.column("d").to_pylist()[0]])
print(json.dumps(counts))
"#,
    )
}

/// Every `add` of a Delta table carries file statistics (row count, null
/// counts, bounds) that an independent reader sees, and a filtered DuckDB
/// `delta_scan` reads fewer files than an unfiltered one: two flushes of one
/// day, and a lookup of one event by its id.
#[tokio::test(flavor = "multi_thread")]
async fn delta_files_carry_statistics_that_readers_skip_files_by() -> anyhow::Result<()> {
    let setup = Setup::new(DELTA)?;
    let store = setup.services.bucket()?;
    end_to_end::create_topics(&setup.services.brokers, &[&setup.topic], 3).await?;
    let sink = setup.sink(&[]).await?;
    setup
        .produce_events(0..150, &["2025-03-01T08:00:00Z".to_string()])
        .await?;
    setup.wait_for_rows(store.as_ref(), 150).await?;
    setup
        .produce_events(150..300, &["2025-03-01T20:00:00Z".to_string()])
        .await?;
    setup.expect_exactly(store.as_ref(), 300).await?;
    sink.interrupt(Duration::from_secs(30))?;
    let lake_url = format!("s3://{}/{}", setup.services.s3_bucket, setup.prefix);
    let adds = add_statistics(&setup.services.python, &format!("{lake_url}/events"))?;
    ensure!(!adds.is_empty(), "no add actions");
    for add in &adds {
        ensure!(
            add["num_records"].as_u64().is_some_and(|n| n > 0)
                && add["null_count.event_id"] == json!(0)
                && add["min.event_timestamp"].is_string()
                && add["max.event_timestamp"].is_string()
                && add["min.status"] == json!("found"),
            "an add without statistics: {add}"
        );
    }
    let dir = tempfile::tempdir()?;
    download(store.as_ref(), &setup.prefix, dir.path()).await?;
    let scan = end_to_end::table_scan(dir.path(), "events");
    let files_read = |filter: &str| -> anyhow::Result<u64> {
        let plan = duckdb(
            &setup.services.python,
            &format!("EXPLAIN ANALYZE SELECT count(*) AS n FROM {scan} {filter}"),
        )?;
        let text = plan
            .iter()
            .flat_map(|row| row.values())
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        text.lines()
            .find_map(|l| l.split("Total Files Read:").nth(1))
            .and_then(|n| n.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
            .with_context(|| format!("no file count in the plan:\n{text}"))
    };
    let all = files_read("")?;
    let one = files_read(&format!("WHERE event_id = '{:032x}'", 200))?;
    let missing = files_read("WHERE status = 'missing'")?;
    eprintln!(
        "DuckDB delta_scan read {all} files unfiltered, {one} for one event_id, {missing} for a status no file holds"
    );
    ensure!(
        one < all && missing == 0,
        "filters read {one} and {missing} of {all} files"
    );
    Ok(())
}

/// Each `add` of the Delta table at `uri` with its flattened statistics,
/// read by Python `deltalake`.
fn add_statistics(python: &Path, uri: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    end_to_end::deltalake_script(
        python,
        uri,
        &[],
        r#"
adds = DeltaTable(sys.argv[1], storage_options=options).get_add_actions(flatten=True)
names = [field.name for field in adds.schema]
columns = {name: adds.column(name).to_pylist() for name in names}
rows = [{name: columns[name][i] for name in names} for i in range(adds.num_rows)]
print(json.dumps(rows, default=str))
"#,
    )
}

/// Records in a shape the typed columns do not expect (no `checklist`, a
/// field `checklistTitle` no column reads): the sink counts the rows with a
/// record, the typed column left empty in every one of them, a column
/// filled in every one, and names the unread field; the rows, of a day long
/// closed, are late, and each arrived 30 s after its event. `sink doctor`
/// then fails naming the empty column and the unread field.
#[tokio::test(flavor = "multi_thread")]
async fn a_column_left_empty_and_a_field_no_column_reads_are_counted() -> anyhow::Result<()> {
    let setup = Setup::new(DELTA)?;
    let store = setup.services.bucket()?;
    end_to_end::create_topics(&setup.services.brokers, &[&setup.topic], 3).await?;
    let (sink, ops) = setup.sink_with_ops(&[]).await?;
    let messages: Vec<(String, String)> = (0..300)
        .map(|i| {
            let id = format!("results/{i}-R");
            let value = json!({
                "event_id": format!("{i:032x}"), "resource": "Results", "event": "Updated",
                "object_id": id, "event_timestamp": "2025-03-01T08:00:00Z",
                "received_at": "2025-03-01T08:00:30Z", "fetched_at": "2025-03-01T08:00:31Z",
                "status": "found", "record": {"id": id, "score": 0.5, "checklistTitle": "Daily"},
            });
            (id, value.to_string())
        })
        .collect();
    setup.send(&messages).await?;
    setup.expect_exactly(store.as_ref(), 300).await?;
    let recorded = metric(&ops, r#"sink_recorded_rows_total{table="results"}"#).await;
    let empty = metric(
        &ops,
        r#"sink_typed_nulls_total{table="results",column="checklist_name"}"#,
    )
    .await;
    let filled = metric(
        &ops,
        r#"sink_typed_nulls_total{table="results",column="score"}"#,
    )
    .await;
    let unread = metric(
        &ops,
        r#"sink_unmapped_fields_total{table="results",path="/checklistTitle"}"#,
    )
    .await;
    ensure!(
        recorded == 300.0 && empty == 300.0 && filled == 0.0 && unread > 0.0,
        "recorded {recorded}, checklist_name null {empty}, score null {filled}, /checklistTitle seen {unread}"
    );
    ensure!(
        sink.log_text().contains("/checklistTitle"),
        "the unread field was not logged"
    );
    let late = metric(&ops, r#"sink_late_rows_total{table="results"}"#).await;
    let delayed = metric(
        &ops,
        r#"sink_arrival_delay_seconds_bucket{resource="results",le="60"}"#,
    )
    .await;
    let prompt = metric(
        &ops,
        r#"sink_arrival_delay_seconds_bucket{resource="results",le="15"}"#,
    )
    .await;
    let committed = metric(
        &ops,
        r#"sink_last_commit_timestamp_seconds{table="results"}"#,
    )
    .await;
    ensure!(
        late == 300.0 && delayed == 300.0 && prompt == 0.0 && committed > 1.7e9,
        "late rows {late}, arrived within 60 s {delayed}, within 15 s {prompt}, last commit {committed}"
    );
    sink.interrupt(Duration::from_secs(30))?;

    let lake_url = format!("s3://{}/{}", setup.services.s3_bucket, setup.prefix);
    let env = [
        ("LAKE_URL", lake_url.as_str()),
        ("LAKE_FORMAT", DELTA),
        ("ENRICHED_TOPIC", setup.topic.as_str()),
    ];
    let text = end_to_end::run_binary_output("sink", &["doctor"], &env)?;
    ensure!(
        !text.status.success()
            && text
                .stdout
                .contains("results.checklist_name: null in 100.0 %")
            && text.stdout.contains("/checklistTitle")
            && !text.stdout.contains("results.score:"),
        "sink doctor did not fail on the empty column: {text:?}"
    );
    let json = end_to_end::run_binary_output("sink", &["doctor", "--json"], &env)?;
    let checkup: serde_json::Value = serde_json::from_str(&json.stdout)?;
    let results = checkup["tables"]
        .as_array()
        .and_then(|tables| tables.iter().find(|t| t["table"] == "results"))
        .ok_or_else(|| anyhow::anyhow!("no results table in {checkup}"))?;
    let share = |column: &str| {
        results["typed_columns"]
            .as_array()
            .and_then(|columns| columns.iter().find(|c| c["column"] == column))
            .and_then(|c| c["share"].as_f64())
    };
    let day = &results["recent_days"][0];
    ensure!(
        share("checklist_name") == Some(1.0)
            && share("score") == Some(0.0)
            && results["rows"] == 300
            && day["rows"] == 300
            && day["duplicate_rows"] == 0
            && results["transactions"]
                .as_object()
                .is_some_and(|t| !t.is_empty())
            && results["unmapped_fields"] == json!(["/checklistTitle"]),
        "sink doctor --json: {results}"
    );
    Ok(())
}

/// A column another engine added (Python `deltalake` appends a row of a
/// closed day with a column the sink does not know) survives `sink
/// compact`: the rewritten day keeps the column and the row's value.
#[tokio::test(flavor = "multi_thread")]
async fn compaction_keeps_a_column_another_engine_added() -> anyhow::Result<()> {
    let setup = Setup::new(DELTA)?;
    let store = setup.services.bucket()?;
    let python = &setup.services.python;
    let sink = setup.sink(&[]).await?;
    setup
        .produce_events(0..300, &["2025-03-01T08:00:00Z".to_string()])
        .await?;
    setup.expect_exactly(store.as_ref(), 300).await?;
    sink.interrupt(Duration::from_secs(30))?;
    let lake_url = format!("s3://{}/{}", setup.services.s3_bucket, setup.prefix);
    let events = format!("{lake_url}/events");
    let shift = |uri: &str| -> anyhow::Result<Vec<Option<String>>> {
        end_to_end::deltalake_script(
            python,
            uri,
            &[],
            r#"
table = DeltaTable(sys.argv[1], storage_options=options)
result = QueryBuilder().register("t", table).execute("SELECT shift FROM t WHERE event_id = 'ffffffffffffffffffffffffffffffff'").read_all()
print(json.dumps(result.column("shift").to_pylist()))
"#,
        )
    };
    let _: serde_json::Value = end_to_end::deltalake_script(
        python,
        &events,
        &[],
        r#"
from deltalake import write_deltalake
table = DeltaTable(sys.argv[1], storage_options=options)
row = QueryBuilder().register("t", table).execute("SELECT * EXCEPT (event_id), 'ffffffffffffffffffffffffffffffff' AS event_id, 'night' AS shift FROM t LIMIT 1")
write_deltalake(sys.argv[1], row, mode="append", schema_mode="merge", storage_options=options)
print(json.dumps(DeltaTable(sys.argv[1], storage_options=options).version()))
"#,
    )?;
    ensure!(
        shift(&events)? == vec![Some("night".to_string())],
        "the other engine's row"
    );
    let compacted = end_to_end::run_binary(
        "sink",
        &["compact"],
        &[("LAKE_URL", lake_url.as_str()), ("LAKE_FORMAT", DELTA)],
    )?;
    ensure!(
        compacted.contains("events dt=2025-03-01"),
        "nothing compacted: {compacted}"
    );
    let read = end_to_end::deltalake(python, &events, None)?;
    ensure!(
        read.rows == 301 && read.files.len() == 1,
        "{} rows in {} files after compaction",
        read.rows,
        read.files.len()
    );
    ensure!(
        shift(&events)? == vec![Some("night".to_string())],
        "the column another engine added lost its value: {compacted}"
    );
    Ok(())
}

/// Plain Parquet history whose last flush did not finish (one day's file
/// of a batch missing, its intent left, the partition's offset before the
/// batch): `sink convert-to-delta` refuses and says to replay; the Parquet
/// sink started once writes the missing file; the conversion then takes
/// every row. A conversion cut short (its marker left) keeps Delta sinks
/// away until a conversion run finishes it.
#[tokio::test(flavor = "multi_thread")]
async fn an_unfinished_flush_or_conversion_is_finished_before_delta_writes() -> anyhow::Result<()> {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let setup = Setup::new(PARQUET)?;
    let store = setup.services.bucket()?;
    end_to_end::create_topics(&setup.services.brokers, &[&setup.topic], 1).await?;
    setup.produce(0, 300).await?;
    let first = setup.sink(&[SLOT]).await?;
    setup.expect_exactly(store.as_ref(), 300).await?;
    first.interrupt(Duration::from_secs(30))?;

    // The last batch's file of one day is lost, as by a stop between two
    // of the batch's files: its intent is left, its offsets uncommitted.
    let events_folder = object_store::path::Path::from(format!("{}/events", setup.prefix));
    let mut files: Vec<object_store::path::Path> = store
        .list(Some(&events_folder))
        .map(|meta| meta.map(|m| m.location))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let range = |path: &object_store::path::Path| -> Option<(i64, i64)> {
        let stem = path.filename()?.strip_suffix(".parquet")?;
        let mut parts = stem.rsplitn(3, '+');
        let last = parts.next()?.parse().ok()?;
        let first = parts.next()?.parse().ok()?;
        Some((first, last))
    };
    files.sort_by_key(|path| range(path));
    let lost = files.last().context("no events file")?.clone();
    let (first_offset, last_offset) = range(&lost).context("a range name")?;
    store.delete(&lost).await?;
    let intent = format!(
        "{}/_sink_intents/{}/0/{first_offset:020}+{last_offset:020}",
        setup.prefix, setup.topic
    );
    store
        .put(&intent.as_str().into(), bytes::Bytes::new().into())
        .await?;
    let group: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &setup.services.brokers)
        .set("group.id", &setup.group)
        .create()?;
    let mut rewound = rdkafka::TopicPartitionList::new();
    rewound.add_partition_offset(&setup.topic, 0, rdkafka::Offset::Offset(first_offset))?;
    group.commit(&rewound, CommitMode::Sync)?;
    drop(group);

    let lake_url = format!("s3://{}/{}", setup.services.s3_bucket, setup.prefix);
    let convert_env = [
        ("LAKE_URL", lake_url.as_str()),
        ("LAKE_FORMAT", DELTA),
        ("ENRICHED_TOPIC", setup.topic.as_str()),
    ];
    let refused = end_to_end::run_binary_output("sink", &["convert-to-delta"], &convert_env)?;
    ensure!(
        !refused.status.success()
            && refused.stderr.contains("did not finish")
            && refused.stderr.contains("start the Parquet sink"),
        "the conversion went on past an unfinished flush: {refused:?}"
    );

    let replaying = setup.sink(&[SLOT]).await?;
    setup.expect_exactly(store.as_ref(), 300).await?;
    replaying.interrupt(Duration::from_secs(30))?;
    let converted = end_to_end::run_binary_output("sink", &["convert-to-delta"], &convert_env)?;
    ensure!(
        converted.status.success(),
        "the conversion failed: {converted:?}"
    );
    let events =
        end_to_end::deltalake(&setup.services.python, &format!("{lake_url}/events"), None)?;
    ensure!(
        events.rows == 300 && events.distinct == 300,
        "Python deltalake reads {} rows ({} distinct) of 300 after the conversion",
        events.rows,
        events.distinct
    );

    // A conversion cut short leaves its marker: Delta sinks refuse the
    // prefix until a conversion run finishes.
    let marker = format!("{}/_sink_conversion_unfinished", setup.prefix);
    store
        .put(&marker.as_str().into(), bytes::Bytes::new().into())
        .await?;
    let (mut refusing, _) = setup.start_sink(&[("LAKE_FORMAT", DELTA), SLOT])?;
    let status = refusing.exit_status(Duration::from_secs(60))?;
    ensure!(
        !status.success() && refusing.log_text().contains("convert-to-delta"),
        "a Delta sink started on a conversion cut short: {}",
        refusing.log_text()
    );
    let finished = end_to_end::run_binary_output("sink", &["convert-to-delta"], &convert_env)?;
    ensure!(
        finished.status.success() && finished.stdout.contains(" 0 added now"),
        "the conversion run again: {finished:?}"
    );
    let delta = setup.sink(&[("LAKE_FORMAT", DELTA), SLOT]).await?;
    setup.produce(300, 400).await?;
    setup.expect_exactly(store.as_ref(), 400).await?;
    delta.interrupt(Duration::from_secs(30))
}

/// Two sinks in different groups on one lake (a split brain, on purpose)
/// consume the same records, each event delivered twice at different
/// offsets: whichever commits a partition first supersedes the other,
/// which reads the event ids again, so no later copy of an event the other
/// committed becomes a second row, at any version of the table.
#[tokio::test(flavor = "multi_thread")]
async fn two_writers_of_one_partition_keep_one_row_per_event() -> anyhow::Result<()> {
    let setup = Setup::new(DELTA)?;
    let store = setup.services.bucket()?;
    end_to_end::create_topics(&setup.services.brokers, &[&setup.topic], 3).await?;
    setup.produce(0, 600).await?;
    setup.produce(0, 600).await?;
    let other_group = unique("split");
    let one = setup.sink(&[("SINK_MAX_FILE_ROWS", "40")]).await?;
    let two = setup
        .sink(&[
            ("SINK_MAX_FILE_ROWS", "55"),
            ("SINK_GROUP_ID", &other_group),
        ])
        .await?;
    setup.expect_exactly(store.as_ref(), 600).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    one.interrupt(Duration::from_secs(30))?;
    two.interrupt(Duration::from_secs(30))?;
    let lake_url = format!("s3://{}/{}", setup.services.s3_bucket, setup.prefix);
    for table in ["events", "results"] {
        let versions = rows_per_version(&setup.services.python, &format!("{lake_url}/{table}"))?;
        ensure!(
            versions.len() > 3,
            "{table}: only {} versions",
            versions.len()
        );
        for (version, rows, distinct) in &versions {
            ensure!(
                rows == distinct,
                "{table} version {version}: {rows} rows, {distinct} distinct events"
            );
        }
        let last = versions.last().context("a version")?;
        ensure!(last.2 == 600, "{table}: {} events of 600", last.2);
    }
    Ok(())
}

/// A lake written before accounts existed: its tables lack the `account`
/// column (the events table rewritten so by Python `deltalake`), and the
/// topic's records carry no account. The sink goes on: it adds the column
/// (a metadata commit, no rewrite), the old rows read null (the default
/// account to the dbt package), the new ones are the default account's,
/// and re-deliveries of what the old rows hold are left out.
#[tokio::test(flavor = "multi_thread")]
async fn a_lake_from_before_accounts_goes_on_under_the_default_account() -> anyhow::Result<()> {
    let setup = Setup::new(DELTA)?;
    let store = setup.services.bucket()?;
    let python = &setup.services.python;
    let day = ["2025-03-01T08:00:00Z".to_string()];
    let sink = setup.sink(&[SLOT]).await?;
    setup.produce_events(0..300, &day).await?;
    setup.expect_exactly(store.as_ref(), 300).await?;
    sink.interrupt(Duration::from_secs(30))?;
    let events = format!("s3://{}/{}/events", setup.services.s3_bucket, setup.prefix);
    let columns: Vec<String> = end_to_end::deltalake_script(
        python,
        &events,
        &[],
        r#"
from deltalake import write_deltalake
table = DeltaTable(sys.argv[1], storage_options=options)
rows = QueryBuilder().register("t", table).execute("SELECT * EXCEPT (account) FROM t")
write_deltalake(sys.argv[1], rows, mode="overwrite", schema_mode="overwrite", partition_by=["dt"], storage_options=options)
print(json.dumps([f.name for f in DeltaTable(sys.argv[1], storage_options=options).schema().fields]))
"#,
    )?;
    ensure!(
        !columns.iter().any(|c| c == "account"),
        "the old table still has the column: {columns:?}"
    );
    let sink = setup.sink(&[SLOT]).await?;
    // 100 re-deliveries of events the old rows hold, 200 new ones.
    setup.produce_events(200..500, &day).await?;
    setup.expect_exactly(store.as_ref(), 500).await?;
    sink.interrupt(Duration::from_secs(30))?;
    let accounts: BTreeMap<String, u64> = end_to_end::deltalake_script(
        python,
        &events,
        &[],
        r#"
table = DeltaTable(sys.argv[1], storage_options=options)
result = QueryBuilder().register("t", table).execute("SELECT coalesce(account, '(null)') AS account, count(*) AS n FROM t GROUP BY 1").read_all()
print(json.dumps(dict(zip(result.column("account").to_pylist(), result.column("n").to_pylist()))))
"#,
    )?;
    ensure!(
        accounts == BTreeMap::from([("(null)".to_string(), 300), ("default".to_string(), 200)]),
        "rows per account: {accounts:?}"
    );
    Ok(())
}
