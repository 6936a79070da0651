//! `sink doctor`: the checkup of the lake's Delta tables, printed for a
//! person or as JSON, with a failing exit status when a check fails.

use std::fmt::Write as _;

use lake::{Checkup, CheckupSettings, DeltaTables, Lake, TableCheckup};

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
    if args.json {
        let text = serde_json::to_string_pretty(&checkup).expect("a checkup serializes");
        println!("{text}");
    } else {
        print!("{}", report(&described, &checkup));
    }
    match checkup.failures.len() {
        0 => Ok(()),
        failed => Err(SinkError::Unhealthy(failed)),
    }
}

/// The checkup as text.
fn report(lake: &str, checkup: &Checkup) -> String {
    let mut out = format!("lake: {lake}\n");
    for table in &checkup.tables {
        table_report(&mut out, table);
    }
    for (heading, lines) in [
        ("failures", &checkup.failures),
        ("warnings", &checkup.warnings),
    ] {
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
        checkup.failures.len(),
        checkup.warnings.len()
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
