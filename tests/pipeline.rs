//! The whole pipeline on a real broker and a real S3 server: signed webhooks go
//! in over HTTP, Parquet files come out, and DuckDB reads them back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use end_to_end::{
    download, duckdb, free_port, log_dir, unique, wait_until_ready, Process, Services,
};
use serde_json::Value;

const SECRET: &str = "e2e-webhook-secret";
const API_KEY: &str = "e2e-api-key";

struct Pipeline {
    sim: Process,
    ingest: Process,
    enricher: Process,
    sink: Process,
    api: String,
    sim_url: String,
    sink_ops: String,
    webhook_url: String,
    prefix: String,
    lake_url: String,
    enriched: String,
}

impl Pipeline {
    /// Stops every stage, the webhooks' way in first.
    fn stop(self) -> anyhow::Result<()> {
        for process in [self.ingest, self.enricher, self.sink, self.sim] {
            process.interrupt(Duration::from_secs(30))?;
        }
        Ok(())
    }
}

async fn start_pipeline(services: &Services, run: &str, logs: &Path) -> anyhow::Result<Pipeline> {
    let api_addr = format!("127.0.0.1:{}", free_port());
    let ingest_addr = format!("127.0.0.1:{}", free_port());
    let enricher_ops = format!("127.0.0.1:{}", free_port());
    let sink_ops = format!("127.0.0.1:{}", free_port());
    let raw = format!("{run}.raw");
    let enriched = format!("{run}.enriched");
    let dead_letter = format!("{run}.deadletter");
    let prefix = format!("{run}/lake");
    let lake_url = format!("s3://{}/{prefix}", services.s3_bucket);
    let api_url = format!("http://{api_addr}/api/customers/");
    let enricher_group = format!("{run}-enricher");
    let sink_group = format!("{run}-sink");
    let kafka = [
        ("KAFKA_BROKERS", services.brokers.as_str()),
        ("RAW_TOPIC", raw.as_str()),
        ("ENRICHED_TOPIC", enriched.as_str()),
        ("DEAD_LETTER_TOPIC", dead_letter.as_str()),
    ];
    let with = |extra: &[(&'static str, &str)]| -> Vec<(&str, String)> {
        kafka
            .iter()
            .chain(extra.iter())
            .map(|(k, v)| (*k, v.to_string()))
            .collect()
    };
    let env = |pairs: &Vec<(&str, String)>| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    };
    let start = |name: &str, args: &[&str], pairs: Vec<(String, String)>| {
        let borrowed: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Process::start(name, args, &borrowed, logs)
    };

    let sim = start(
        "mobaro-sim",
        &["serve", "--listen", &api_addr, "--api-key", API_KEY],
        vec![],
    )?;
    let ingest = start(
        "ingest",
        &[],
        env(&with(&[
            ("INGEST_LISTEN", &ingest_addr),
            ("MOBARO_WEBHOOK_SECRETS", SECRET),
        ])),
    )?;
    let enricher = start(
        "enricher",
        &[],
        env(&with(&[
            ("MOBARO_API_URL", &api_url),
            ("MOBARO_API_KEY", API_KEY),
            ("ENRICHER_GROUP_ID", &enricher_group),
            ("ENRICHER_OPS_LISTEN", &enricher_ops),
        ])),
    )?;
    let sink = start(
        "sink",
        &[],
        env(&with(&[
            ("LAKE_URL", &lake_url),
            ("SINK_GROUP_ID", &sink_group),
            ("SINK_OPS_LISTEN", &sink_ops),
        ])),
    )?;
    for url in [
        format!("http://{api_addr}/sim/stats"),
        format!("http://{ingest_addr}/readyz"),
        format!("http://{enricher_ops}/readyz"),
        format!("http://{sink_ops}/readyz"),
    ] {
        wait_until_ready(&url, Duration::from_secs(30)).await?;
    }
    Ok(Pipeline {
        sim,
        ingest,
        enricher,
        sink,
        api: format!("http://{api_addr}/api/customers"),
        sim_url: format!("http://{api_addr}"),
        sink_ops,
        webhook_url: format!("http://{ingest_addr}/webhooks/mobaro"),
        prefix,
        lake_url,
        enriched,
    })
}

/// Sends webhooks with the simulator; returns the bodies, all answered 202.
fn send_webhooks(url: &str, count: u32, resources: &str) -> anyhow::Result<Vec<Value>> {
    end_to_end::send_webhooks(
        url,
        SECRET,
        &[
            "--resources",
            resources,
            "--count",
            &count.to_string(),
            "--rate",
            "40",
            "--objects",
            "4",
        ],
    )
}

/// The distinct events among webhook bodies: two deliveries alike in
/// resource, event, object and timestamp (the sender can make two within
/// one millisecond when it catches up on missed ticks) are one event, with
/// one `event_id`, and the lake holds it once.
fn distinct_events(bodies: &[Value]) -> usize {
    bodies
        .iter()
        .map(|b| {
            (
                b["resource"].to_string(),
                b["event"].to_string(),
                b["objectId"].to_string(),
                b["timestamp"].to_string(),
            )
        })
        .collect::<BTreeSet<_>>()
        .len()
}

/// The distinct events among webhook bodies per table: `events` holds every
/// one, and each resource's own table (`results`, `users`, …) the events of
/// that resource, written later because the enricher comes between.
fn expected_rows(bodies: &[Value]) -> BTreeMap<String, usize> {
    let mut by_table: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for body in bodies {
        let resource = body["resource"].as_str().unwrap_or_default().to_lowercase();
        by_table.entry(resource).or_default().push(body.clone());
    }
    by_table.insert("events".to_string(), bodies.to_vec());
    by_table
        .into_iter()
        .map(|(table, bodies)| (table, distinct_events(&bodies)))
        .collect()
}

/// Downloads the lake until every table holds the distinct events it should.
async fn wait_for_lake(
    services: &Services,
    prefix: &str,
    dir: &Path,
    bodies: &[Value],
) -> anyhow::Result<()> {
    let store = services.bucket()?;
    let expected = expected_rows(bodies);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let files = download(store.as_ref(), prefix, dir).await?;
        let mut held = BTreeMap::new();
        for table in expected.keys() {
            let count = if files.iter().any(|f| f.starts_with(dir.join(table))) {
                let rows = duckdb(
                    &services.python,
                    &format!(
                        "SELECT count(DISTINCT event_id) AS n FROM {}",
                        end_to_end::table_scan(dir, table)
                    ),
                )?;
                rows[0]["n"].as_u64().unwrap_or_default() as usize
            } else {
                0
            };
            held.insert(table.clone(), count);
        }
        if held == expected {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the lake did not receive every event in time: expected {expected:?}, held {held:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn api_record(api: &str, collection: &str, id: &str) -> anyhow::Result<Value> {
    let url = format!("{api}/{collection}/{}", id.replace('/', "%2F"));
    Ok(reqwest::Client::new()
        .get(url)
        .header("x-api-key", API_KEY)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Waits until the Python `deltalake` package, polling the table at
/// `uri` every 200 ms, finds `event_id`; when it did (seconds since the
/// epoch), or None within a minute.
fn found_at(python: &Path, uri: &str, event_id: &str) -> anyhow::Result<Option<f64>> {
    end_to_end::deltalake_script(
        python,
        uri,
        &[event_id],
        r#"
import time
deadline = time.time() + 60
while time.time() < deadline:
    try:
        table = DeltaTable(sys.argv[1], storage_options=options)
        found = QueryBuilder().register("t", table).execute(f"SELECT count(*) AS n FROM t WHERE event_id = '{sys.argv[2]}'").read_all()
        if found.column("n").to_pylist()[0]:
            print(json.dumps(time.time()))
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
print(json.dumps(None))
"#,
    )
}

fn table(dir: &Path, name: &str) -> String {
    end_to_end::table_scan(dir, name)
}

/// On every stage's defaults, a webhook is queryable seconds after its
/// 202 (the sink commits what it holds once it has read the topic and its
/// oldest record waited `SINK_COMMIT_INTERVAL`, 1 s). Measured from the 202
/// to a reader's first poll that returns it, the reader's start included;
/// the bound leaves the machine a wide margin (the benchmark measures p95).
#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_is_queryable_within_seconds_on_the_defaults() -> anyhow::Result<()> {
    let services = Services::from_env();
    let run = unique("fresh");
    let logs = log_dir("fresh-logs-")?;
    let pipeline = start_pipeline(&services, &run, &logs).await?;
    let events = format!("{}/events", pipeline.lake_url);
    let client = reqwest::Client::new();
    let mut latencies = Vec::new();
    for n in 0..4 {
        let id = end_to_end::post_result_update(
            &client,
            &pipeline.webhook_url,
            SECRET,
            &format!("results/{n}-A"),
        )
        .await?;
        let accepted = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs_f64();
        let found = found_at(&services.python, &events, &id)?
            .with_context(|| format!("event {n} was not queryable within a minute"))?;
        // The first one also waits for the enricher's and the sink's first
        // fetch and for the tables' creation: only the later ones count.
        if n > 0 {
            latencies.push(found - accepted);
        }
    }
    let slowest = latencies.iter().copied().fold(0.0, f64::max);
    ensure!(
        slowest <= 10.0,
        "a webhook took {slowest:.1} s to become queryable on the defaults: {latencies:?}"
    );
    pipeline.stop()
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_webhooks_become_parquet_rows_with_full_records() -> anyhow::Result<()> {
    let services = Services::from_env();
    let run = unique("e2e");
    let logs = log_dir("e2e-logs-")?;
    let pipeline = start_pipeline(&services, &run, &logs).await?;

    let bodies = send_webhooks(&pipeline.webhook_url, 30, "Results,Users,Locations,Notes")?;
    let lake = tempfile::tempdir()?;
    let distinct = distinct_events(&bodies);
    wait_for_lake(&services, &pipeline.prefix, lake.path(), &bodies).await?;

    // Every table read back by DuckDB, with Hive partitioning and declared types.
    let types = duckdb(
        &services.python,
        &format!(
            "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {})",
            table(lake.path(), "results")
        ),
    )?;
    let type_of = |name: &str| {
        types
            .iter()
            .find(|r| r["column_name"] == name)
            .map(|r| r["column_type"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(
        type_of("event_timestamp").as_deref(),
        Some("TIMESTAMP WITH TIME ZONE")
    );
    assert_eq!(type_of("score").as_deref(), Some("DOUBLE"));
    assert_eq!(type_of("dt").as_deref(), Some("DATE"));
    assert!(type_of("values").is_some_and(|t| t.starts_with("STRUCT(question VARCHAR")));

    // Every webhook is in `events`, once, as sent.
    let events = duckdb(
        &services.python,
        &format!(
            "SELECT resource, event, object_id, status FROM {}",
            table(lake.path(), "events")
        ),
    )?;
    assert_eq!(events.len(), distinct);
    let sent: BTreeSet<(String, String, String)> = bodies
        .iter()
        .map(|b| {
            (
                b["resource"].to_string(),
                b["event"].to_string(),
                b["objectId"].to_string(),
            )
        })
        .collect();
    let stored: BTreeSet<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["resource"].to_string(),
                e["event"].to_string(),
                e["object_id"].to_string(),
            )
        })
        .collect();
    assert_eq!(sent, stored);

    // Results, Users and Locations carry the simulator's full records;
    // Notes pass through.
    let mut checked = 0;
    for (collection, typed_column, pointer) in [
        ("locations", "name", "/name"),
        ("results", "checklist_name", "/checklist/name"),
        ("users", "email", "/email"),
    ] {
        let rows = duckdb(
            &services.python,
            &format!(
                "SELECT object_id, event, status, record_json, {typed_column} AS typed FROM {}",
                table(lake.path(), collection)
            ),
        )?;
        assert!(!rows.is_empty(), "no {collection} rows");
        for row in rows {
            let id = row["object_id"].as_str().context("object_id")?;
            if row["event"] == "Deleted" {
                assert_eq!(row["status"], "deleted");
                assert!(row["record_json"].is_null());
                continue;
            }
            assert_eq!(row["status"], "found", "{row:?}");
            let expected = api_record(&pipeline.api, collection, id).await?;
            let stored: Value =
                serde_json::from_str(row["record_json"].as_str().context("record_json")?)?;
            assert_eq!(stored, expected, "{collection} {id}");
            assert_eq!(Some(&row["typed"]), expected.pointer(pointer));
            checked += 1;
        }
    }
    assert!(checked >= 2, "too few enriched records checked: {checked}");
    // Notes are not fetched by default.
    let notes = duckdb(
        &services.python,
        &format!(
            "SELECT status, record_json FROM {}",
            table(lake.path(), "notes")
        ),
    )?;
    assert!(!notes.is_empty());
    for row in notes {
        assert!(
            row["status"] == "not_fetched" || row["status"] == "deleted",
            "{row:?}"
        );
        assert!(row["record_json"].is_null());
    }

    // The parquet crate reads every file too, and finds the provenance metadata.
    // Flush intents of the last batches may not be deleted yet: only the
    // tables' files are Parquet.
    for file in walk(lake.path())?
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
        .filter(|f| !f.components().any(|c| c.as_os_str() == "_delta_log"))
    {
        let reader = parquet::file::serialized_reader::SerializedFileReader::new(
            std::fs::File::open(&file)?,
        )?;
        let metadata = parquet::file::reader::FileReader::metadata(&reader).file_metadata();
        let keys: Vec<&str> = metadata
            .key_value_metadata()
            .map(|kv| kv.iter().map(|k| k.key.as_str()).collect())
            .unwrap_or_default();
        assert!(
            keys.contains(&"mobaro_lake.first_offset"),
            "{}",
            file.display()
        );
    }

    // The lake the webhooks fed builds with the dbt package, tests included.
    let built =
        std::process::Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/dbt"))
            .arg("build")
            .env("MOBARO_LAKE_URL", lake.path())
            .env("MOBARO_DBT_DATABASE", lake.path().join("marts.duckdb"))
            .output()?;
    assert!(
        built.status.success(),
        "dbt build on the webhook-fed lake failed:\n{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );

    pipeline.stop()
}

fn walk(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut files = vec![];
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(walk(&path)?);
        } else {
            files.push(path);
        }
    }
    Ok(files)
}

/// Mobaro renames a field of Results and adds one, unannounced (the
/// simulator's `drifted_results`): the typed column that read the old name
/// empties, the sink's metrics say so and name the new fields, and `sink
/// doctor` fails naming the column.
#[tokio::test(flavor = "multi_thread")]
async fn a_field_mobaro_renames_is_caught_by_the_metrics_and_sink_doctor() -> anyhow::Result<()> {
    let services = Services::from_env();
    let run = unique("drift");
    let logs = log_dir("drift-logs-")?;
    let pipeline = start_pipeline(&services, &run, &logs).await?;
    reqwest::Client::new()
        .post(format!("{}/sim/faults", pipeline.sim_url))
        .json(&serde_json::json!({"drifted_results": true}))
        .send()
        .await?
        .error_for_status()?;

    let bodies = send_webhooks(&pipeline.webhook_url, 150, "Results")?;
    let lake = tempfile::tempdir()?;
    wait_for_lake(&services, &pipeline.prefix, lake.path(), &bodies).await?;

    let ops = &pipeline.sink_ops;
    let recorded = end_to_end::metric(ops, r#"sink_recorded_rows_total{table="results"}"#).await;
    let empty = end_to_end::metric(
        ops,
        r#"sink_typed_nulls_total{table="results",column="checklist_name"}"#,
    )
    .await;
    let filled = end_to_end::metric(
        ops,
        r#"sink_typed_nulls_total{table="results",column="checklist_id"}"#,
    )
    .await;
    let renamed = end_to_end::metric(
        ops,
        r#"sink_unmapped_fields_total{table="results",path="/checklist/title"}"#,
    )
    .await;
    let added = end_to_end::metric(
        ops,
        r#"sink_unmapped_fields_total{table="results",path="/shift"}"#,
    )
    .await;
    ensure!(
        recorded >= 100.0 && empty == recorded && filled == 0.0 && renamed > 0.0 && added > 0.0,
        "rows with a record {recorded}, checklist_name null {empty}, checklist_id null {filled}, \
         /checklist/title seen {renamed}, /shift seen {added}"
    );

    let doctor = end_to_end::run_binary_output(
        "sink",
        &["doctor"],
        &[
            ("LAKE_URL", pipeline.lake_url.as_str()),
            ("ENRICHED_TOPIC", pipeline.enriched.as_str()),
        ],
    )?;
    ensure!(
        doctor.status.code() == Some(1)
            && doctor
                .stdout
                .contains("results.checklist_name: null in 100.0 %")
            && doctor.stdout.contains("/checklist/title")
            && doctor.stdout.contains("/shift"),
        "sink doctor did not name the emptied column and the new fields: {doctor:?}"
    );

    pipeline.stop()
}
