//! `bench erasure`: `sink forget` of one person in a lake of many days
//! (one compacted file per table and day), the person named on a few of
//! them, against DuckDB with one thread rewriting every file of the same
//! tables with the same replacement in the same run: what an erasure costs
//! that does not know where the person is.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{ensure, Context};
use chrono::{Datelike, Duration as Span, NaiveDate, SecondsFormat};
use serde_json::{json, Value};

use end_to_end::binary;

use crate::compaction::Writer;
use crate::report;

/// What `bench erasure` is asked to do.
#[derive(clap::Args)]
pub(crate) struct Options {
    /// Days of the lake.
    #[arg(long, default_value_t = 100)]
    days: usize,
    /// Rows per table and day (`results` and `users`; `events` holds both).
    #[arg(long, default_value_t = 10_000)]
    rows: usize,
    /// Days on which the person did Results (one in every thousand).
    #[arg(long, default_value_t = 3)]
    person_days: usize,
    /// Python with the duckdb package.
    #[arg(long, env = "LAKE_PYTHON", default_value = "python3")]
    python: PathBuf,
    /// Report file whose `erasure` section is replaced.
    #[arg(long, default_value = "BENCHMARKS.md")]
    report: PathBuf,
}

const PERSON: &str = "users/1-P";
const NAME: &str = "Pat Person";

fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 1, 1).expect("a date")
}

/// Row `i` of `resource` on day `d`: the person's User record on the
/// middle day, their Results on the person's days.
fn enriched(options: &Options, d: usize, i: usize, resource: &str) -> anyhow::Result<String> {
    let day = first_day() + Span::days(d as i64);
    let at = (day.and_hms_opt(0, 0, 0).context("midnight")?.and_utc()
        + Span::seconds((i % 86_400) as i64))
    .to_rfc3339_opts(SecondsFormat::Millis, true);
    let person_day = d.is_multiple_of((options.days / options.person_days.max(1)).max(1));
    let (object, record) = if resource == "Users" {
        if d == options.days / 2 && i == 0 {
            let record = json!({"id": PERSON, "name": NAME, "email": "pat.person@park.example", "username": "patperson"});
            (PERSON.to_string(), record)
        } else {
            let id = format!("users/{}-{}", i, d);
            let record = json!({"id": id, "name": format!("Operator {i}"), "email": format!("operator.{i}@park.example"), "username": format!("op{i}")});
            (id, record)
        }
    } else {
        let id = format!("results/{i}-{d}");
        let mut record: Value = mobaro_sim::records::record("results", &id).context("a Result")?;
        record["user"] = if person_day && i.is_multiple_of(1000) {
            json!({"id": PERSON, "name": NAME})
        } else {
            json!({"id": format!("users/{}-{}", i % 500, d), "name": format!("Operator {}", i % 500)})
        };
        (id, record)
    };
    let kind = u128::from(resource == "Users");
    Ok(json!({
        "event_id": format!("{:032x}", (day.num_days_from_ce() as u128) << 64 | kind << 32 | i as u128),
        "resource": resource, "event": "Updated", "object_id": object,
        "event_timestamp": at, "received_at": at, "fetched_at": at,
        "status": "found", "record": record,
    })
    .to_string())
}

/// Bytes and count of the Parquet files of the tables under `folder`.
fn files_under(folder: &Path) -> anyhow::Result<(u64, usize, Vec<PathBuf>)> {
    let found: Vec<PathBuf> =
        crate::compaction::tables_files(folder, &["events", "users", "results"])?
            .into_iter()
            .flat_map(|(_, files)| files)
            .collect();
    let mut bytes = 0;
    for file in &found {
        bytes += std::fs::metadata(file)?.len();
    }
    Ok((bytes, found.len(), found))
}

pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(&lake)?;
    println!(
        "writing {} days of {} rows per table",
        options.days, options.rows
    );
    let mut writer = Writer::open(&lake).await?;
    for d in 0..options.days {
        let mut records = Vec::with_capacity(options.rows * 2);
        for i in 0..options.rows {
            records.push(enriched(options, d, i, "Results")?);
            records.push(enriched(options, d, i, "Users")?);
        }
        writer.commit(&records).await?;
    }
    let (bytes, files, all) = files_under(&lake)?;

    // The baseline: every file of the three tables rewritten by DuckDB with
    // one thread, the person's rows dropped and values replaced.
    let out = dir.path().join("duckdb");
    std::fs::create_dir_all(&out)?;
    let list: Vec<String> = all.iter().map(|f| format!("'{}'", f.display())).collect();
    let script = format!(
        r#"
import duckdb, time
con = duckdb.connect()
con.sql("SET threads = 1")
files = [{files}]
started = time.time()
for n, f in enumerate(files):
    if "/results/" in f:
        select = """SELECT * REPLACE (
            CASE WHEN user_id = '{PERSON}' THEN '[erased]' ELSE user_id END AS user_id,
            CASE WHEN user_id = '{PERSON}' THEN '[erased]' ELSE user_name END AS user_name,
            replace(replace(record_json, '{PERSON}', '[erased]'), '{NAME}', '[erased]') AS record_json)"""
        where = "true"
    elif "/users/" in f:
        select, where = "SELECT *", "object_id <> '{PERSON}'"
    else:
        select, where = "SELECT *", "NOT (resource = 'Users' AND object_id = '{PERSON}')"
    con.sql(f"COPY ({{select}} FROM read_parquet('{{f}}') WHERE {{where}}) TO '{out}/{{n}}.parquet' (FORMAT parquet, COMPRESSION zstd)")
print(time.time() - started)
"#,
        files = list.join(", "),
        out = out.display()
    );
    let ran = Command::new(&options.python)
        .args(["-c", &script])
        .output()?;
    ensure!(
        ran.status.success(),
        "duckdb failed: {}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let duckdb_seconds: f64 = String::from_utf8(ran.stdout)?.trim().parse()?;
    let started = Instant::now();
    let output = Command::new(binary("sink"))
        .args(["forget", PERSON, "--settle", "0s", "--json"])
        .env("LAKE_URL", &lake)
        .env("RUST_LOG", "warn")
        .output()?;
    let forget_seconds = started.elapsed().as_secs_f64();
    ensure!(
        output.status.success(),
        "sink forget failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout)?;
    let tables = report["tables"].as_array().context("tables")?;
    let sum = |field: &str| -> u64 { tables.iter().filter_map(|t| t[field].as_u64()).sum() };
    let (rewritten, bytes_rewritten) = (sum("files_rewritten"), sum("bytes_rewritten"));
    let (deleted, redacted) = (sum("rows_deleted"), sum("rows_redacted"));

    let ratio = duckdb_seconds / forget_seconds;
    let text = format!(
        "### Erasure (`scripts/bench erasure`)\n\n\
One person forgotten (`sink forget --settle 0s`, a local folder) in a lake of {days} days \
× {rows} rows per table (`results`, `users`; `events` holds both: {files} files, \
{mib:.0} MiB), one compacted file per table and day; the person's User record on one day, \
their Results (one in a thousand) on {person_days} days. Baseline: DuckDB 1 thread \
rewriting every file of the tables (what an erasure that does not know where the person \
is must do), same run.\n\n\
| | seconds | files rewritten | MiB rewritten |\n|---|---|---|---|\n\
| `sink forget` | {forget_seconds:.1} | {rewritten} of {files} | {rewritten_mib:.1} of {mib:.0} |\n\
| DuckDB rewriting every file | {duckdb_seconds:.1} | {files} of {files} | {mib:.0} of {mib:.0} |\n\n\
Ratio (DuckDB / sink forget): **{ratio:.2}**. Rows deleted {deleted}, redacted {redacted}. \
`sink forget` reads every file (it decodes them to find the person) and rewrites only \
those naming them; the reading is the cost that grows with the lake.\n\n",
        days = options.days,
        rows = options.rows,
        person_days = (0..options.days)
            .filter(|d| d.is_multiple_of((options.days / options.person_days.max(1)).max(1)))
            .count(),
        mib = bytes as f64 / (1 << 20) as f64,
        rewritten_mib = bytes_rewritten as f64 / (1 << 20) as f64,
    );
    println!("{text}");
    report::replace_section(&options.report, "erasure", &text)?;
    Ok(())
}
