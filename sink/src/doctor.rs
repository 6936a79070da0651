//! `sink doctor`: the checkup of the lake's Delta tables, printed for a
//! person or as JSON, with a failing exit status when a check fails.

use std::fmt::Write as _;

use lake::{Checkup, CheckupSettings, DeltaTables, Finding, Lake, TableCheckup};

use crate::config::{Config, DoctorArgs};
use crate::SinkError;

/// Examines the lake `config` names and prints what it found.
pub(crate) async fn run(config: &Config, args: &DoctorArgs) -> Result<(), SinkError> {
    let lake = Lake::open(&config.lake_url)?;
    let described = lake.describe().to_string();
    let tables = DeltaTables::new(lake);
    let settings = CheckupSettings {
        source: config.source(),
        days: args.days.max(1),
        max_null_share: args.max_null_share,
        min_recorded_rows: args.min_rows,
        sample_records: args.sample,
        closed_before: (chrono::Utc::now() - config.upkeep.compact_grace).date_naive(),
    };
    let checkup = lake::checkup(&tables, &settings).await?;
    let ledger = lake::Ledger::open(tables.lake(), config.erasure_key.as_ref()).await?;
    let erasures = lake::Ledger::erasures(tables.lake()).await?;
    let found_again = lake::found_again(&tables, &ledger).await?;
    let mut failures: Vec<String> = checkup.failures().map(describe).collect();
    failures.extend(found_again.iter().map(|((table, person), rows)| {
        format!("{table}: {rows} row(s) name forgotten person {person} again: a writer without the erasure ledger (an older sink, another engine) wrote them; run `sink forget` for them again and find that writer")
    }));
    failures.extend(erasures.iter().filter(|e| e.finished_at.is_none()).map(|e| {
        format!("the erasure of person {} started {} has not finished: run `sink forget` for them again", e.person, e.started_at.format("%Y-%m-%d %H:%M:%S UTC"))
    }));
    let warnings: Vec<String> = checkup.warnings().map(describe).collect();
    if args.json {
        let printed = serde_json::json!({
            "tables": checkup.tables,
            "findings": checkup.findings,
            "erasures": erasures,
            "failures": failures,
            "warnings": warnings,
        });
        let text = serde_json::to_string_pretty(&printed).expect("a checkup serializes");
        println!("{text}");
    } else {
        print!("{}", report(&described, &checkup, &failures, &warnings));
        if !erasures.is_empty() {
            println!("\nerasures ({} people forgotten):", ledger.len());
            for erasure in &erasures {
                let rows: usize = erasure
                    .tables
                    .iter()
                    .map(|t| t.rows_deleted + t.rows_redacted)
                    .sum();
                let files: usize = erasure.tables.iter().map(|t| t.files_rewritten).sum();
                println!(
                    "  - {} at {}: {rows} rows deleted or redacted, {files} files rewritten{}",
                    erasure.person,
                    erasure.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    if erasure.finished_at.is_some() {
                        ""
                    } else {
                        " (unfinished)"
                    }
                );
            }
        }
    }
    match failures.len() {
        0 => Ok(()),
        failed => Err(SinkError::Unhealthy(failed)),
    }
}

/// What `finding` means, and what to do about it, in a line.
fn describe(finding: &Finding) -> String {
    match finding {
        Finding::NoTable { table } if finding.fails() => format!(
            "{table}: no table here: the sink has committed nothing to this lake, or LAKE_URL points elsewhere"
        ),
        Finding::NoTable { table } => {
            format!("{table}: no table yet (no record of this resource committed)")
        }
        Finding::DuplicatesAfterCompaction { table, date, rows } => format!(
            "{table} dt={date}: {rows} duplicate rows in a compacted day: another writer added files after compaction"
        ),
        Finding::DuplicatesBeforeCompaction { table, date, rows } => format!(
            "{table} dt={date}: {rows} duplicate rows (deduplication off, or files written before it; compaction removes them once the day closes)"
        ),
        Finding::ColumnEmpty {
            table,
            column,
            share,
            recorded_rows,
            days,
        } => format!(
            "{table}.{column}: null in {:.1} % of {recorded_rows} rows with a record on the last {days} days: the JSON path it reads finds nothing (Mobaro renamed or moved the field?); record_json holds the value",
            share * 100.0
        ),
        Finding::CompactionDue {
            table,
            days,
            oldest,
        } => format!(
            "{table}: {days} closed day(s) not compacted yet (oldest dt={oldest}): run `sink compact`, or check SINK_COMPACT_EVERY"
        ),
        Finding::UnreadFields { table, fields } => format!(
            "{table}: records hold fields no typed column reads: {}",
            fields.join(", ")
        ),
    }
}

/// The checkup as text.
fn report(lake: &str, checkup: &Checkup, failures: &[String], warnings: &[String]) -> String {
    let mut out = format!("lake: {lake}\n");
    for table in &checkup.tables {
        table_report(&mut out, table);
    }
    for (heading, lines) in [("failures", failures), ("warnings", warnings)] {
        if !lines.is_empty() {
            let _ = writeln!(out, "\n{heading}:");
            for line in lines {
                let _ = writeln!(out, "  - {line}");
            }
        }
    }
    let _ = writeln!(
        out,
        "\ncheckup: {} failure(s), {} warning(s)",
        failures.len(),
        warnings.len()
    );
    out
}

fn table_report(out: &mut String, table: &TableCheckup) {
    let _ = write!(out, "\n{}", table.table);
    let Some(version) = table.version else {
        let _ = writeln!(out, ": no table");
        return;
    };
    let last_commit = table.last_commit.map_or("unknown".to_string(), |at| {
        at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    });
    let _ = writeln!(
        out,
        ": version {version}, last commit {last_commit}\n  {} files, {}, {} rows, {} days",
        table.files,
        bytes(table.bytes),
        table.rows,
        table.days
    );
    if let Some((date, files)) = table.most_files_per_day {
        let _ = writeln!(out, "  most files in a day: {files} (dt={date})");
    }
    let _ = writeln!(
        out,
        "  days due for compaction: {}",
        if table.days_due_for_compaction.is_empty() {
            "none".to_string()
        } else {
            table
                .days_due_for_compaction
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    if !table.transactions.is_empty() {
        let held: Vec<String> = table
            .transactions
            .iter()
            .map(|(partition, offset)| format!("{partition}:{offset}"))
            .collect();
        let _ = writeln!(out, "  last offset held per partition: {}", held.join(" "));
    }
    for day in &table.recent_days {
        let _ = writeln!(
            out,
            "  dt={} {:<6} {:>5} files {:>10} rows {:>8} duplicate rows",
            day.date,
            if day.closed { "closed" } else { "open" },
            day.files,
            day.rows,
            day.duplicate_rows
        );
        if day.accounts.len() > 1 {
            let accounts: Vec<String> = day
                .accounts
                .iter()
                .map(|(account, rows)| format!("{account} {rows}"))
                .collect();
            let _ = writeln!(out, "    rows per account: {}", accounts.join(", "));
        }
    }
    if !table.typed_columns.is_empty() {
        let _ = writeln!(
            out,
            "  typed columns null while the record is present ({} rows):",
            table.typed_columns[0].recorded_rows
        );
        for column in &table.typed_columns {
            let _ = writeln!(
                out,
                "    {:<24} {:>6.1} %",
                column.column,
                column.share * 100.0
            );
        }
    }
    if table.sampled_records > 0 {
        let _ = writeln!(
            out,
            "  fields no typed column reads, in {} recent records: {}",
            table.sampled_records,
            if table.unmapped_fields.is_empty() {
                "none".to_string()
            } else {
                table.unmapped_fields.join(", ")
            }
        );
    }
}

fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{count} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_finding_reads_as_a_failure_or_a_warning() {
        let date = chrono::NaiveDate::from_ymd_opt(2025, 3, 1).expect("a date");
        let empty = Finding::ColumnEmpty {
            table: "results",
            column: "checklist_name",
            share: 1.0,
            recorded_rows: 300,
            days: 7,
        };
        assert!(empty.fails());
        assert!(describe(&empty).starts_with("results.checklist_name: null in 100.0 % of 300 rows"));
        let events = Finding::NoTable { table: "events" };
        let users = Finding::NoTable { table: "users" };
        assert!(events.fails() && !users.fails());
        assert!(describe(&events).contains("LAKE_URL"));
        assert!(describe(&users).contains("no table yet"));
        let due = Finding::CompactionDue {
            table: "events",
            days: 2,
            oldest: date,
        };
        assert!(!due.fails() && describe(&due).contains("oldest dt=2025-03-01"));
    }
}
