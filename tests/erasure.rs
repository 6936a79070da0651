//! The right to erasure, end to end on a real broker and a real S3 server:
//! one person in every table (their User, the Results they did, the
//! Assignments and Notes that name them, the events), in compacted days
//! and today's open one, with checkpoints and other people beside them.
//! `sink forget` runs while the sink commits; then every byte under the
//! lake's prefix is searched for the person, the other people's rows are
//! compared, and a replay of the topic, a second backfill, a late webhook
//! and a compaction try to bring the person back.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use arrow::array::AsArray;
use end_to_end::{duckdb, free_port, log_dir, sign, unique, wait_until_ready, Process, Services};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde_json::Value;

const SECRET: &str = "erasure-webhook-secret";
const API_KEY: &str = "erasure-api-key";
const ERASED: &str = "[erased]";
/// Objects per resource the simulator lists, and webhooks name.
const OBJECTS: u32 = 16;

/// The simulator's id of object `n` of `collection`.
fn object_id(collection: &str, n: u32) -> String {
    let tag = ["A", "B", "C"][n as usize % 3];
    format!("{collection}/{}-{tag}", 1000 + n)
}

/// A signed webhook about `object` of `resource` at `timestamp`.
async fn post(url: &str, resource: &str, object: &str, timestamp: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "resource": resource,
        "event": "Updated",
        "objectId": object,
        "timestamp": timestamp,
    })
    .to_string();
    let status = reqwest::Client::new()
        .post(url)
        .header("x-webhook-signature", sign(SECRET, &body))
        .body(body)
        .send()
        .await?
        .status();
    ensure!(status.as_u16() == 202, "webhook answered {status}");
    Ok(())
}

/// One table's rows as DuckDB reads them.
fn rows(
    python: &Path,
    lake: &str,
    table: &str,
    select: &str,
) -> anyhow::Result<Vec<BTreeMap<String, Value>>> {
    duckdb(
        python,
        &format!("SELECT {select} FROM delta_scan('{lake}/{table}')"),
    )
}

/// The record's JSON in `table`'s rows (the events table has none).
fn record_json(table: &str) -> &'static str {
    if table == "events" {
        "''"
    } else {
        "coalesce(record_json, '')"
    }
}

/// The tables a person can be named in.
const TABLES: [&str; 5] = ["events", "users", "results", "assignments", "notes"];

/// Per table and event id, a digest of the rows that do not name the
/// person (by any of `values`), in one query.
fn others(
    python: &Path,
    lake: &str,
    values: &[String],
) -> anyhow::Result<BTreeMap<(String, String), String>> {
    let selects: Vec<String> = TABLES
        .iter()
        .map(|table| {
            let record = record_json(table);
            let mut filter = String::from("true");
            for value in values {
                filter.push_str(&format!(
                    " AND {record} NOT ILIKE '%{value}%' AND object_id <> '{value}'"
                ));
            }
            format!(
                "SELECT '{table}' AS t, event_id, md5(string_agg({record} || object_id, '|' ORDER BY concat(object_id, {record}))) AS digest FROM delta_scan('{lake}/{table}') WHERE {filter} GROUP BY event_id"
            )
        })
        .collect();
    Ok(duckdb(python, &selects.join(" UNION ALL "))?
        .into_iter()
        .map(|row| {
            let text = |key: &str| row[key].as_str().unwrap_or_default().to_string();
            ((text("t"), text("event_id")), text("digest"))
        })
        .collect())
}

/// Rows naming the person (by any of `values`) in every table, in one query.
fn naming(python: &Path, lake: &str, values: &[String]) -> anyhow::Result<u64> {
    let selects: Vec<String> = TABLES
        .iter()
        .map(|table| {
            let mut filter = String::from("false");
            for value in values {
                filter.push_str(&format!(
                    " OR {} ILIKE '%{value}%' OR object_id = '{value}'",
                    record_json(table)
                ));
            }
            format!("SELECT count(*) AS n FROM delta_scan('{lake}/{table}') WHERE {filter}")
        })
        .collect();
    let sql = format!(
        "SELECT sum(n)::BIGINT AS n FROM ({})",
        selects.join(" UNION ALL ")
    );
    duckdb(python, &sql)?
        .first()
        .and_then(|row| row["n"].as_u64())
        .context("a count")
}

/// Every object under `prefix` of the bucket, as text: its bytes as they
/// are, and for a Parquet file its decoded values (every column, nested
/// ones included).
async fn every_byte(services: &Services, prefix: &str) -> anyhow::Result<Vec<(String, String)>> {
    let store = services.bucket()?;
    let listed: Vec<_> = store
        .list(Some(&object_store::path::Path::from(prefix)))
        .try_collect()
        .await?;
    let mut objects = Vec::new();
    for object in &listed {
        let bytes = match store.get(&object.location).await {
            Ok(found) => found.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(error) => return Err(error.into()),
        };
        let mut all = String::from_utf8_lossy(&bytes).into_owned();
        if object.location.as_ref().ends_with(".parquet") {
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 8192)?;
            for batch in reader {
                let batch = batch?;
                for column in batch.columns() {
                    // Debug shows every value, nested ones too.
                    all.push_str(&format!("{column:?}"));
                    if let Some(texts) = column.as_string_opt::<i32>() {
                        for text in texts.iter().flatten() {
                            all.push_str(text);
                            all.push('\n');
                        }
                    }
                }
            }
        }
        objects.push((object.location.to_string(), all));
    }
    Ok(objects)
}

/// Fails when any of `values` (the person's id, name, e-mail, username) is
/// found under the lake's prefix, naming the kind of value and the object
/// (paths hold no personal value).
async fn assert_gone(
    services: &Services,
    prefix: &str,
    values: &[String],
    when: &str,
) -> anyhow::Result<()> {
    const KINDS: [&str; 4] = ["id", "name", "e-mail", "username"];
    let objects = every_byte(services, prefix).await?;
    for (path, text) in &objects {
        for (value, kind) in values.iter().zip(KINDS) {
            ensure!(
                !text.contains(value.as_str()),
                "{when}: the forgotten person's {kind} is still in {path} ({} objects searched)",
                objects.len()
            );
        }
    }
    Ok(())
}

/// Waits until `check` holds, polling each second.
async fn wait_until(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let last = match check() {
            Ok(true) => return Ok(()),
            Ok(false) => String::new(),
            Err(error) => format!(" (last: {error})"),
        };
        ensure!(
            Instant::now() < deadline,
            "{what}: not within {within:?}{last}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Rows of `table` where `filter` holds.
fn count(python: &Path, lake: &str, table: &str, filter: &str) -> anyhow::Result<u64> {
    let found = duckdb(
        python,
        &format!("SELECT count(*) AS n FROM delta_scan('{lake}/{table}') WHERE {filter}"),
    )?;
    found
        .first()
        .and_then(|row| row["n"].as_u64())
        .context("a count")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forgotten_person_is_gone_from_every_byte_and_stays_gone() -> anyhow::Result<()> {
    let services = Services::from_env();
    let python = services.python.clone();
    let begun = Instant::now();
    let phase = |name: &str| println!("[{:>5.1} s] {name}", begun.elapsed().as_secs_f64());
    let run = unique("erasure");
    let logs = log_dir("erasure")?;
    let api_addr = format!("127.0.0.1:{}", free_port());
    let ingest_addr = format!("127.0.0.1:{}", free_port());
    let enricher_ops = format!("127.0.0.1:{}", free_port());
    let sink_ops = format!("127.0.0.1:{}", free_port());
    let (raw, enriched, dead, checkpoints) = (
        format!("{run}.raw"),
        format!("{run}.enriched"),
        format!("{run}.deadletter"),
        format!("{run}.checkpoints"),
    );
    let prefix = format!("{run}/lake");
    let lake = format!("s3://{}/{prefix}", services.s3_bucket);
    let api_url = format!("http://{api_addr}/api/customers/");
    let objects = OBJECTS.to_string();
    let common = [
        ("KAFKA_BROKERS", services.brokers.as_str()),
        ("RAW_TOPIC", raw.as_str()),
        ("ENRICHED_TOPIC", enriched.as_str()),
        ("DEAD_LETTER_TOPIC", dead.as_str()),
        ("MOBARO_API_URL", api_url.as_str()),
        ("MOBARO_API_KEY", API_KEY),
        ("LAKE_URL", lake.as_str()),
        ("BACKFILL_CHECKPOINT_TOPIC", checkpoints.as_str()),
    ];
    let start = |name: &str, args: &[&str], extra: &[(&str, &str)]| {
        let env: Vec<(&str, &str)> = common.iter().chain(extra).copied().collect();
        Process::start(name, args, &env, &logs)
    };
    let run_binary = |name: &str, args: &[&str], extra: &[(&str, &str)]| {
        let env: Vec<(&str, &str)> = common.iter().chain(extra).copied().collect();
        end_to_end::run_binary(name, args, &env)
    };
    let sim = start(
        "mobaro-sim",
        &[
            "serve",
            "--listen",
            &api_addr,
            "--api-key",
            API_KEY,
            "--objects",
            &objects,
        ],
        &[],
    )?;
    let ingest = start(
        "ingest",
        &[],
        &[
            ("INGEST_LISTEN", &ingest_addr),
            ("MOBARO_WEBHOOK_SECRETS", SECRET),
        ],
    )?;
    let enricher = start(
        "enricher",
        &[],
        &[
            ("ENRICH_RESOURCES", "Results,Users,Assignments,Notes"),
            ("ERASURE_LEDGER", &lake),
            ("ENRICHER_GROUP_ID", &format!("{run}-enricher")),
            ("ENRICHER_OPS_LISTEN", &enricher_ops),
        ],
    )?;
    let sink_group = format!("{run}-sink");
    let sink = start(
        "sink",
        &[],
        &[
            ("SINK_GROUP_ID", &sink_group),
            ("SINK_OPS_LISTEN", &sink_ops),
            ("SINK_MAX_FILE_AGE", "1s"),
        ],
    )?;
    for url in [
        format!("http://{api_addr}/sim/stats"),
        format!("http://{ingest_addr}/readyz"),
        format!("http://{enricher_ops}/readyz"),
        format!("http://{sink_ops}/readyz"),
    ] {
        wait_until_ready(&url, Duration::from_secs(30)).await?;
    }
    let webhooks = format!("http://{ingest_addr}/webhooks/mobaro");
    let resources = "Users,Results,Assignments,Notes";

    phase("stages ready");
    // History: a backfill of every resource (days of 2025, closed), then
    // today's webhooks about each object.
    run_binary("enricher", &["backfill", "--resource", resources], &[])?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for resource in ["Users", "Results", "Assignments", "Notes"] {
        for n in 0..OBJECTS {
            post(
                &webhooks,
                resource,
                &object_id(&resource.to_lowercase(), n),
                &now,
            )
            .await?;
        }
    }
    let expected = u64::from(OBJECTS) * 8;
    wait_until(
        "the history and today's events in the lake",
        Duration::from_secs(240),
        || Ok(count(&python, &lake, "events", "true")? >= expected),
    )
    .await?;
    phase("history and today in the lake");
    // Compacted days, and a checkpoint of every table.
    run_binary("sink", &["compact"], &[])?;
    run_binary("sink", &["vacuum"], &[])?;

    phase("compacted and checkpointed");
    // The person: the User most Results name, with a name no other has.
    let users = rows(
        &python,
        &lake,
        "users",
        "DISTINCT object_id, name, email, username",
    )?;
    let done_by = duckdb(
        &python,
        &format!("SELECT user_id, count(*) AS n FROM delta_scan('{lake}/results') GROUP BY user_id ORDER BY n DESC"),
    )?;
    let text = |row: &BTreeMap<String, Value>, key: &str| {
        row.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let person = done_by
        .iter()
        .map(|row| text(row, "user_id"))
        .find(|id| {
            let Some(user) = users.iter().find(|u| text(u, "object_id") == *id) else {
                return false;
            };
            let (name, username) = (text(user, "name"), text(user, "username"));
            users
                .iter()
                .filter(|u| text(u, "object_id") != *id)
                .all(|other| {
                    text(other, "name") != name && !text(other, "username").contains(&username)
                })
        })
        .context("a user with a name of their own who did Results")?;
    let user = users
        .iter()
        .find(|u| text(u, "object_id") == person)
        .context("the person's user")?;
    let values = vec![
        person.clone(),
        text(user, "name"),
        text(user, "email"),
        text(user, "username"),
    ];
    let all: String = every_byte(&services, &prefix)
        .await?
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    for value in &values {
        ensure!(
            all.contains(value.as_str()),
            "the lake does not hold the person before the erasure"
        );
    }
    let their_results = count(&python, &lake, "results", &format!("user_id = '{person}'"))?;
    ensure!(their_results > 0, "the person did no Result");
    let before = others(&python, &lake, &values)?;

    phase("the person chosen, the others digested");
    // The erasure, while the sink commits other people's events.
    let sending = {
        let webhooks = webhooks.clone();
        tokio::spawn(async move {
            let mut sent = 0u32;
            let deadline = Instant::now() + Duration::from_secs(40);
            while Instant::now() < deadline {
                let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                post(
                    &webhooks,
                    "Locations",
                    &object_id("locations", sent % OBJECTS),
                    &at,
                )
                .await?;
                sent += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok::<u32, anyhow::Error>(sent)
        })
    };
    let dry = run_binary("sink", &["forget", &person, "--dry-run", "--json"], &[])?;
    let dry: Value = serde_json::from_str(&dry)?;
    let dry_results = dry["tables"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["table"] == "results"))
        .context("results in the dry run")?;
    ensure!(
        dry_results["rows_redacted"].as_u64() == Some(their_results),
        "the dry run counts {} of the person's {their_results} Results",
        dry_results["rows_redacted"]
    );
    let started = Instant::now();
    let report = run_binary("sink", &["forget", &person, "--json"], &[])?;
    let took = started.elapsed();
    let erased_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let report: Value = serde_json::from_str(&report)?;
    ensure!(
        !report.to_string().contains(&values[1]) && !report.to_string().contains(&person),
        "the report names the person"
    );
    let sent = sending.await??;
    println!("erasure: {took:?}; {report:#}");

    phase("erased");
    // Gone: from every byte, and from what DuckDB and Python deltalake read.
    assert_gone(&services, &prefix, &values, "after the erasure").await?;
    ensure!(
        naming(&python, &lake, &values)? == 0,
        "DuckDB finds the person"
    );
    let found: Value = end_to_end::deltalake_script(
        &python,
        &format!("{lake}/results"),
        &[&values[1]],
        r#"
table = DeltaTable(sys.argv[1], storage_options=options)
rows = QueryBuilder().register("t", table).execute(
    "SELECT count(*) FILTER (WHERE user_name = '" + sys.argv[2] + "') AS named, count(*) FILTER (WHERE user_id = '[erased]') AS erased FROM t"
).read_all()
print(json.dumps({"named": rows.column("named").to_pylist()[0], "erased": rows.column("erased").to_pylist()[0]}))
"#,
    )?;
    ensure!(
        found["named"] == 0,
        "Python deltalake finds the person: {found}"
    );
    ensure!(
        found["erased"].as_u64() == Some(their_results),
        "the person's Results are kept with the marker: {found}, expected {their_results}"
    );
    // Everyone else's rows as they were.
    let after = others(&python, &lake, &values)?;
    for ((table, event), digest) in &before {
        ensure!(
            after.get(&(table.clone(), event.clone())) == Some(digest),
            "{table}: another person's row changed or went"
        );
    }
    // Nothing lost of what the sink committed during the erasure.
    wait_until(
        "the events sent during the erasure",
        Duration::from_secs(60),
        || {
            Ok(count(&python, &lake, "events", "resource = 'Locations'")?
                >= u64::from(sent).min(u64::from(OBJECTS)))
        },
    )
    .await?;

    phase("checked gone, others unchanged");
    // Never written back: the topic replayed by another sink as a new
    // source, the backfill again, a late webhook, a compaction.
    let replay_ops = format!("127.0.0.1:{}", free_port());
    let replay = start(
        "sink#replay",
        &[],
        &[
            ("SINK_GROUP_ID", &format!("{run}-replay")),
            ("SINK_SOURCE_ID", "replay"),
            ("SINK_OPS_LISTEN", &replay_ops),
            ("SINK_MAX_FILE_AGE", "1s"),
            ("SINK_DEDUP_HORIZON", "0s"),
        ],
    )?;
    run_binary(
        "enricher",
        &["backfill", "--resource", resources, "--restart"],
        &[("ERASURE_LEDGER", &lake)],
    )?;
    let late = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    post(&webhooks, "Users", &person, &late).await?;
    for n in 0..OBJECTS {
        post(&webhooks, "Results", &object_id("results", n), &late).await?;
    }
    let late_filter = format!("resource = 'Results' AND event_timestamp = TIMESTAMPTZ '{late}'");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let late_results = count(&python, &lake, "events", &late_filter).unwrap_or(0);
        let replayed = wait_until_ready(
            &format!("http://{replay_ops}/readyz"),
            Duration::from_secs(1),
        )
        .await
        .is_ok()
            && end_to_end::metric(&replay_ops, "sink_consumer_lag").await == 0.0;
        if late_results >= u64::from(OBJECTS) && replayed {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the replay and the late webhooks were not written in time ({late_results} late Results)"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The replaying sink's last files, committed.
    tokio::time::sleep(Duration::from_secs(5)).await;
    run_binary("sink", &["compact"], &[])?;
    assert_gone(
        &services,
        &prefix,
        &values,
        "after the replay, the backfill, the late webhook and the compaction",
    )
    .await?;
    ensure!(
        naming(&python, &lake, &values)? == 0,
        "DuckDB finds the person after the replay"
    );
    let erased_results = count(&python, &lake, "results", &format!("user_id = '{ERASED}'"))?;
    ensure!(
        erased_results > their_results,
        "the replayed Results of the person are written with the marker"
    );

    phase("replayed, backfilled, late webhooks, compacted, checked");
    // Nor the enriched topic: what the enricher and the backfill produced
    // after the erasure does not name the person.
    let produced_after = |message: &rdkafka::message::OwnedMessage| {
        use rdkafka::Message;
        let record: Value =
            serde_json::from_slice(message.payload().unwrap_or_default()).unwrap_or_default();
        record["fetched_at"]
            .as_str()
            .is_some_and(|fetched| fetched >= erased_at.as_str())
    };
    let messages = end_to_end::read_until(
        &services.brokers,
        &enriched,
        Duration::from_secs(60),
        |read| read.iter().filter(|m| produced_after(m)).count() >= 2 * OBJECTS as usize,
    )
    .await?;
    for message in messages.iter().filter(|m| produced_after(m)) {
        use rdkafka::Message;
        let text = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
        for value in &values {
            ensure!(
                !text.contains(value.as_str()),
                "a record produced after the erasure names the forgotten person"
            );
        }
    }

    // The doctor lists the erasure and finds the person nowhere.
    let doctor = end_to_end::run_binary_output("sink", &["doctor", "--json"], &common)?;
    let doctor: Value = serde_json::from_str(&doctor.stdout)?;
    ensure!(
        doctor["erasures"].as_array().map(Vec::len) == Some(1),
        "doctor: {}",
        doctor["erasures"]
    );
    let failures = doctor["failures"].to_string();
    ensure!(
        !failures.contains("forgotten") && !failures.contains("erasure"),
        "doctor: {failures}"
    );
    for process in [replay, ingest, enricher, sink, sim] {
        process.interrupt(Duration::from_secs(30))?;
    }
    Ok(())
}
