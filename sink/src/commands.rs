//! The one-off subcommands: `ddl`, `compact`, `vacuum`, `convert-to-delta`,
//! `doctor` and `forget`, each printing what it did.

use lake::CompactionReport;
use tokio_util::sync::CancellationToken;

use crate::access::tables;
use crate::config::{Command, Config, DdlArgs, ForgetArgs, VacuumArgs};
use crate::{conversion, doctor, upkeep, LakeFormat, SinkError};

/// Runs `command` once.
pub(crate) async fn run(
    command: &Command,
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<(), SinkError> {
    match command {
        Command::Ddl(args) => {
            ddl(config, args);
            Ok(())
        }
        Command::Compact => compact(config, shutdown).await,
        Command::Vacuum(args) => vacuum(config, args, shutdown).await,
        Command::ConvertToDelta => conversion::run(config, shutdown).await,
        Command::Doctor(args) => {
            if config.lake_format != LakeFormat::Delta {
                return Err(SinkError::NotDelta("doctor"));
            }
            doctor::run(config, args).await
        }
        Command::Forget(args) => forget(config, args, shutdown).await,
    }
}

/// Forgets a person in every Delta table, and prints what changed.
async fn forget(
    config: &Config,
    args: &ForgetArgs,
    shutdown: &CancellationToken,
) -> Result<(), SinkError> {
    let tables = tables(config, shutdown).await?;
    let delta = tables.delta().ok_or(SinkError::NotDelta("forget"))?;
    let settings = lake::ErasureSettings {
        key: config.erasure_key.clone(),
        dry_run: args.dry_run,
        compression: config.compression,
        upload: config.upload(),
        writers_settle: args.settle,
    };
    let report = lake::forget(delta, &args.user_id, &args.also, &settings).await?;
    if args.json {
        let json = serde_json::json!({
            "person": report.person,
            "dry_run": report.dry_run,
            "values_hunted": report.values_hunted,
            "tables": report.tables,
        });
        println!("{json:#}");
        return Ok(());
    }
    let verb = if report.dry_run { "would be" } else { "were" };
    println!(
        "person {} (the ledger's keyed hash), hunted by id and {} other value(s)",
        report.person, report.values_hunted
    );
    for done in &report.tables {
        println!(
            "{}: {} files read; {} files ({} bytes) {verb} rewritten: {} rows {verb} deleted, {} redacted; {} stale files {verb} deleted; {} files' statistics {verb} cleared; {} log objects removed",
            done.table,
            done.files_read,
            done.files_rewritten,
            done.bytes_rewritten,
            done.rows_deleted,
            done.rows_redacted,
            done.stale_files_deleted,
            done.statistics_cleared,
            done.log_objects_removed,
        );
    }
    if !report.dry_run {
        println!("time travel to versions before this erasure is no longer possible: their log entries are gone");
        println!("Kafka topics keep the person's messages until their retention; the ledger erases them whenever a sink writes them again");
    }
    Ok(())
}

/// Prints the CREATE statements of every table.
fn ddl(config: &Config, args: &DdlArgs) {
    let source = lake::TableSource {
        format: config.lake_format,
        location: args.location.as_deref().unwrap_or(&config.lake_url),
        name_prefix: &args.name_prefix,
        bigquery_connection: &args.bigquery_connection,
    };
    for table in schemas::Table::all() {
        println!("{}", lake::create_table(table, args.dialect, &source));
    }
}

/// Compacts the closed days once.
async fn compact(config: &Config, shutdown: &CancellationToken) -> Result<(), SinkError> {
    let tables = tables(config, shutdown).await?;
    let settings = upkeep::compaction_settings(config);
    let delta = tables.delta().ok_or(SinkError::NotDelta("compact"))?;
    let report = lake::compact(delta, &settings, chrono::Utc::now()).await?;
    print_compaction(&report);
    if !report.failed.is_empty() {
        return Err(SinkError::Upkeep {
            command: "compact",
            failed: report.failed.len(),
        });
    }
    Ok(())
}

/// Vacuums, checkpoints and cleans the logs once.
async fn vacuum(
    config: &Config,
    args: &VacuumArgs,
    shutdown: &CancellationToken,
) -> Result<(), SinkError> {
    let tables = tables(config, shutdown).await?;
    let settings = upkeep::vacuum_settings(config, args.force);
    let delta = tables.delta().ok_or(SinkError::NotDelta("vacuum"))?;
    let report = lake::vacuum(delta, &settings).await;
    for done in &report.done {
        println!(
            "{}: {} files deleted, checkpoint at version {}, {} log files removed",
            done.table.name(),
            done.files_deleted,
            done.checkpoint,
            done.logs_removed
        );
    }
    for (table, error) in &report.failed {
        println!("{}: vacuum failed: {error}", table.name());
    }
    println!(
        "staged uploads left behind (older than a day) deleted: {}",
        report.staging_swept
    );
    if !report.failed.is_empty() {
        return Err(SinkError::Upkeep {
            command: "vacuum",
            failed: report.failed.len(),
        });
    }
    Ok(())
}

fn print_compaction(report: &CompactionReport) {
    for day in &report.compacted {
        println!(
            "{} dt={}: {} files ({} rows, {} bytes) -> {} files ({} rows, {} bytes)",
            day.table.name(),
            day.date,
            day.files_in,
            day.rows_in,
            day.bytes_in,
            day.files_out,
            day.rows_out,
            day.bytes_out
        );
    }
    for (table, date) in &report.conflicts {
        println!(
            "{} dt={date}: changed by another writer meanwhile; left for the next run",
            table.name()
        );
    }
    for (table, date, reason) in &report.failed {
        println!("{} dt={date}: left alone: {reason}", table.name());
    }
    if report.compacted.is_empty() && report.conflicts.is_empty() && report.failed.is_empty() {
        println!("nothing to compact");
    }
}
