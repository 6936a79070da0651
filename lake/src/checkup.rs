//! A checkup of the Delta tables, for `sink doctor`: per table its version
//! and last commit, files and bytes, files per day, the days due for
//! compaction, the transactions per partition, rows and duplicate rows on
//! the recent days, the null share of each typed column while the record
//! is present (from the files' statistics, nothing decoded), and the JSON
//! fields no typed column reads in a sample of recent records.
//!
//! Reads: every table's log, the `event_id` column of the recent days (one
//! day at a time: memory is a day's distinct ids, 16 bytes each), and the
//! `record_json` column of the newest files up to the sample size.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use schemas::{Source, Table};
use serde::Serialize;

use crate::delta::actions::app_id;
use crate::delta::error::DeltaError;
use crate::delta::log::DeltaTables;
use crate::encoding::unmapped_fields;
use crate::event_ids::digest;
use crate::path::{stems, DataPath};
use crate::reading::{each_batch, texts, ReadError};

/// What a checkup looks at, and where it draws the line.
#[derive(Debug, Clone)]
pub struct CheckupSettings {
    /// The topic the sink's transactions are named after.
    pub source: String,
    /// Days examined for rows, duplicates and null shares, back from the
    /// newest day of each table.
    pub days: u32,
    /// A typed column null in more than this share of the recorded rows of
    /// the examined days fails the checkup.
    pub max_null_share: f64,
    /// Null shares over fewer recorded rows than this are reported, not
    /// judged.
    pub min_recorded_rows: u64,
    /// Records of the newest files walked for fields no column reads.
    pub sample_records: usize,
    /// Days before this one are closed (compaction's grace).
    pub closed_before: NaiveDate,
}

/// The checkup of a lake.
#[derive(Debug, Serialize)]
pub struct Checkup {
    /// Per table, in the lake's order.
    pub tables: Vec<TableCheckup>,
    /// What the checkup found, in the tables' order.
    pub findings: Vec<Finding>,
}

/// One thing a checkup found: what fails it ([`Finding::fails`]), or what
/// deserves a look but is not wrong in itself. Its words are the caller's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// The table does not exist: a failure for `events` (nothing was ever
    /// committed, or the lake is elsewhere), a warning for the others.
    NoTable {
        /// The table.
        table: &'static str,
    },
    /// Rows of a compacted, closed day share an `event_id`: another writer
    /// added files after compaction. A failure.
    DuplicatesAfterCompaction {
        /// The table.
        table: &'static str,
        /// The day.
        date: NaiveDate,
        /// Rows another row of the day repeats.
        rows: u64,
    },
    /// Rows of a day not compacted yet share an `event_id`.
    DuplicatesBeforeCompaction {
        /// The table.
        table: &'static str,
        /// The day.
        date: NaiveDate,
        /// Rows another row of the day repeats.
        rows: u64,
    },
    /// A typed column is null in more than the allowed share of the rows
    /// with a record: its JSON path finds nothing. A failure.
    ColumnEmpty {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The null share.
        share: f64,
        /// Rows with a record.
        recorded_rows: u64,
        /// Days examined.
        days: usize,
    },
    /// Closed days not compacted yet.
    CompactionDue {
        /// The table.
        table: &'static str,
        /// How many days.
        days: usize,
        /// The oldest.
        oldest: NaiveDate,
    },
    /// Records hold fields no typed column reads.
    UnreadFields {
        /// The table.
        table: &'static str,
        /// The fields' JSON paths.
        fields: Vec<String>,
    },
}

impl Finding {
    /// Whether the finding fails the checkup.
    pub fn fails(&self) -> bool {
        match self {
            Finding::NoTable { table } => *table == Table::Events.name(),
            Finding::DuplicatesAfterCompaction { .. } | Finding::ColumnEmpty { .. } => true,
            Finding::DuplicatesBeforeCompaction { .. }
            | Finding::CompactionDue { .. }
            | Finding::UnreadFields { .. } => false,
        }
    }
}

impl Checkup {
    /// The findings that fail the checkup.
    pub fn failures(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.fails())
    }

    /// The findings that deserve a look.
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| !f.fails())
    }
}

/// One table's checkup.
#[derive(Debug, Default, Serialize)]
pub struct TableCheckup {
    /// The table's name.
    pub table: &'static str,
    /// Whether the table exists.
    pub exists: bool,
    /// Its latest version.
    pub version: Option<u64>,
    /// When its latest version was committed.
    pub last_commit: Option<DateTime<Utc>>,
    /// Active data files.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Their rows, from the files' statistics.
    pub rows: u64,
    /// Days (`dt` partitions) with data.
    pub days: usize,
    /// The most files one day has, and which day.
    pub most_files_per_day: Option<(NaiveDate, usize)>,
    /// Closed days not compacted yet (files compaction did not write).
    pub days_due_for_compaction: Vec<NaiveDate>,
    /// The last offset of each source partition the table holds.
    pub transactions: BTreeMap<i32, i64>,
    /// The examined days, newest first.
    pub recent_days: Vec<DayCheckup>,
    /// The typed columns' null shares over the examined days.
    pub typed_columns: Vec<ColumnNulls>,
    /// Fields of the sampled records no typed column reads.
    pub unmapped_fields: Vec<String>,
    /// Records walked for them.
    pub sampled_records: usize,
}

/// One examined day of a table.
#[derive(Debug, Serialize)]
pub struct DayCheckup {
    /// The day.
    pub date: NaiveDate,
    /// Whether compaction's grace has passed.
    pub closed: bool,
    /// Its files.
    pub files: usize,
    /// Its rows.
    pub rows: u64,
    /// Rows whose `event_id` another row of the day has too.
    pub duplicate_rows: u64,
    /// Rows per account (rows written before accounts existed count as
    /// the default account's).
    pub accounts: BTreeMap<String, u64>,
}

/// A typed column's nulls while the record is present.
#[derive(Debug, Serialize)]
pub struct ColumnNulls {
    /// The column.
    pub column: &'static str,
    /// Rows with a fetched record.
    pub recorded_rows: u64,
    /// Of those, rows without a value in the column.
    pub null_rows: u64,
    /// `null_rows / recorded_rows`.
    pub share: f64,
}

/// An active file as the log describes it.
struct Described {
    path: DataPath,
    size: u64,
    rows: Option<u64>,
    null_counts: BTreeMap<String, u64>,
}

/// Examines every table of `tables`.
pub async fn checkup(
    tables: &DeltaTables,
    settings: &CheckupSettings,
) -> Result<Checkup, ReadError> {
    let mut checkup = Checkup {
        tables: Vec::new(),
        findings: Vec::new(),
    };
    for table in Table::all() {
        let examined = examine(tables, table, settings).await?;
        judge(&examined, table, settings, &mut checkup);
        checkup.tables.push(examined);
    }
    Ok(checkup)
}

async fn examine(
    tables: &DeltaTables,
    table: Table,
    settings: &CheckupSettings,
) -> Result<TableCheckup, ReadError> {
    let mut report = TableCheckup {
        table: table.name(),
        ..TableCheckup::default()
    };
    let Some(current) = tables.latest(table).await? else {
        return Ok(report);
    };
    let state = current.snapshot().map_err(DeltaError::of(table))?;
    report.exists = true;
    let version = state.version();
    report.version = Some(version);
    report.last_commit = state
        .version_timestamp(version)
        .and_then(DateTime::from_timestamp_millis);
    let mut days: BTreeMap<NaiveDate, Vec<Described>> = BTreeMap::new();
    for file in state.log_data().iter() {
        let Some(path) = DataPath::parse_in_table(table, file.path().as_ref()) else {
            continue;
        };
        let (rows, null_counts) = file.stats().map(|s| parse_stats(&s)).unwrap_or_default();
        days.entry(path.date).or_default().push(Described {
            path,
            size: file.size().max(0) as u64,
            rows,
            null_counts,
        });
    }
    let mut partitions = BTreeSet::new();
    for (date, files) in &days {
        report.files += files.len();
        report.bytes += files.iter().map(|f| f.size).sum::<u64>();
        report.rows += files.iter().filter_map(|f| f.rows).sum::<u64>();
        if report
            .most_files_per_day
            .is_none_or(|(_, most)| files.len() > most)
        {
            report.most_files_per_day = Some((*date, files.len()));
        }
        let compacted = files
            .iter()
            .all(|f| f.path.stem.starts_with(stems::COMPACTED_PREFIX));
        if *date < settings.closed_before && !compacted {
            report.days_due_for_compaction.push(*date);
        }
        partitions.extend(files.iter().filter_map(|f| batch_partition(&f.path.stem)));
    }
    report.days = days.len();
    for partition in partitions {
        let id = app_id(&settings.source, partition);
        if let Some(offset) = state
            .transaction_version(current.log_store().as_ref(), &id)
            .await
            .map_err(DeltaError::of(table))?
        {
            report.transactions.insert(partition, offset);
        }
    }
    let recent: Vec<(&NaiveDate, &Vec<Described>)> =
        days.iter().rev().take(settings.days as usize).collect();
    let lake = tables.lake();
    for (date, files) in &recent {
        let located: Vec<_> = files
            .iter()
            .map(|f| (lake.path(&f.path.in_lake()), f.size))
            .collect();
        let (rows, distinct, accounts) = count_ids(lake, &located).await?;
        report.recent_days.push(DayCheckup {
            date: **date,
            closed: **date < settings.closed_before,
            files: files.len(),
            rows,
            duplicate_rows: rows - distinct,
            accounts,
        });
    }
    report.typed_columns = typed_nulls(table, recent.iter().flat_map(|(_, files)| files.iter()));
    let newest: Vec<_> = recent
        .iter()
        .flat_map(|(_, files)| files.iter())
        .map(|f| (lake.path(&f.path.in_lake()), f.size))
        .collect();
    let (sampled, unmapped) =
        sample_unmapped(lake, table, &newest, settings.sample_records).await?;
    report.sampled_records = sampled;
    report.unmapped_fields = unmapped.into_iter().collect();
    Ok(report)
}

/// The findings of one table's checkup.
fn judge(report: &TableCheckup, table: Table, settings: &CheckupSettings, checkup: &mut Checkup) {
    let name = table.name();
    let found = &mut checkup.findings;
    if !report.exists {
        found.push(Finding::NoTable { table: name });
        return;
    }
    for day in report
        .recent_days
        .iter()
        .filter(|day| day.duplicate_rows > 0)
    {
        let compacted = day.closed
            && report
                .days_due_for_compaction
                .binary_search(&day.date)
                .is_err();
        let (date, rows) = (day.date, day.duplicate_rows);
        found.push(if compacted {
            Finding::DuplicatesAfterCompaction {
                table: name,
                date,
                rows,
            }
        } else {
            Finding::DuplicatesBeforeCompaction {
                table: name,
                date,
                rows,
            }
        });
    }
    for column in &report.typed_columns {
        if column.recorded_rows >= settings.min_recorded_rows
            && column.share > settings.max_null_share
        {
            found.push(Finding::ColumnEmpty {
                table: name,
                column: column.column,
                share: column.share,
                recorded_rows: column.recorded_rows,
                days: report.recent_days.len(),
            });
        }
    }
    if let Some(oldest) = report.days_due_for_compaction.first() {
        found.push(Finding::CompactionDue {
            table: name,
            days: report.days_due_for_compaction.len(),
            oldest: *oldest,
        });
    }
    if !report.unmapped_fields.is_empty() {
        found.push(Finding::UnreadFields {
            table: name,
            fields: report.unmapped_fields.clone(),
        });
    }
}

/// `numRecords` and `nullCount` of a Delta `add`'s statistics.
fn parse_stats(stats: &str) -> (Option<u64>, BTreeMap<String, u64>) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(stats) else {
        return (None, BTreeMap::new());
    };
    let rows = value.get("numRecords").and_then(serde_json::Value::as_u64);
    let nulls = value
        .get("nullCount")
        .and_then(serde_json::Value::as_object)
        .map(|counts| {
            counts
                .iter()
                .filter_map(|(column, count)| Some((column.clone(), count.as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    (rows, nulls)
}

/// The partition of a batch file's stem `{partition}-{first}-{last}-{hex}`.
fn batch_partition(stem: &str) -> Option<i32> {
    if !stems::written_by_sink(stem) || stem.starts_with(stems::COMPACTED_PREFIX) {
        return None;
    }
    stem.split('-').next()?.parse().ok()
}

/// The null shares of `table`'s typed columns over `files`, from their
/// statistics: a row without a record has every typed column null, so the
/// rows with a record are `numRecords − nullCount(record_json)`. Columns
/// without counts (lists, or past the indexed ones) are left out.
fn typed_nulls<'a>(table: Table, files: impl Iterator<Item = &'a Described>) -> Vec<ColumnNulls> {
    let typed: Vec<&'static str> = table
        .columns()
        .iter()
        .filter(|c| {
            matches!(
                c.source,
                Source::Record(_) | Source::RecordList(..) | Source::ResultValues
            )
        })
        .map(|c| c.name)
        .collect();
    let mut recorded = 0u64;
    let mut nulls: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut counted: BTreeSet<&'static str> = typed.iter().copied().collect();
    for file in files {
        let (Some(rows), Some(without_record)) = (file.rows, file.null_counts.get("record_json"))
        else {
            continue;
        };
        recorded += rows - without_record.min(&rows);
        for column in &typed {
            match file.null_counts.get(*column) {
                Some(count) => {
                    *nulls.entry(column).or_default() += count.saturating_sub(*without_record)
                }
                None => {
                    counted.remove(column);
                }
            }
        }
    }
    typed
        .into_iter()
        .filter(|column| counted.contains(column) && recorded > 0)
        .map(|column| {
            let null_rows = nulls.get(column).copied().unwrap_or(0);
            ColumnNulls {
                column,
                recorded_rows: recorded,
                null_rows,
                share: null_rows as f64 / recorded as f64,
            }
        })
        .collect()
}

/// Rows, distinct `event_id`s and rows per account of one day's files.
async fn count_ids(
    lake: &crate::Lake,
    files: &[(object_store::path::Path, u64)],
) -> Result<(u64, u64, BTreeMap<String, u64>), ReadError> {
    let mut distinct = HashSet::new();
    let mut rows = 0u64;
    let mut accounts: BTreeMap<String, u64> = BTreeMap::new();
    each_batch(lake, files, &["event_id", "account"], |_, batch| {
        if let Some(ids) = batch.column_by_name("event_id") {
            rows += batch.num_rows() as u64;
            distinct.extend(texts(ids).into_iter().flatten().map(digest));
            match batch.column_by_name("account") {
                Some(column) => {
                    for account in texts(column) {
                        let account = account.unwrap_or(schemas::DEFAULT_ACCOUNT);
                        *accounts.entry(account.to_string()).or_default() += 1;
                    }
                }
                None => {
                    *accounts
                        .entry(schemas::DEFAULT_ACCOUNT.to_string())
                        .or_default() += batch.num_rows() as u64
                }
            }
        }
        true
    })
    .await?;
    Ok((rows, distinct.len() as u64, accounts))
}

/// Walks up to `limit` records of `files` (in order) for fields no typed
/// column of `table` reads.
async fn sample_unmapped(
    lake: &crate::Lake,
    table: Table,
    files: &[(object_store::path::Path, u64)],
    limit: usize,
) -> Result<(usize, BTreeSet<String>), ReadError> {
    let mut found = BTreeSet::new();
    let mut sampled = 0;
    if table == Table::Events || limit == 0 {
        return Ok((0, found));
    }
    let mapped = unmapped_fields::mapped_paths(table);
    each_batch(lake, files, &["record_json"], |_, batch| {
        let records = batch
            .column_by_name("record_json")
            .map(texts)
            .unwrap_or_default();
        for text in records.into_iter().flatten() {
            found.extend(unmapped_fields::unmapped_in(&mapped, text));
            sampled += 1;
            if sampled >= limit {
                return false;
            }
        }
        true
    })
    .await?;
    Ok((sampled, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_shares_count_only_rows_with_a_record() {
        let file = |rows, record_nulls, name_nulls| Described {
            path: DataPath::parse_in_table(
                Table::Records(schemas::Resource::Results),
                "dt=2025-03-01/0-0-9-0a0b0c0d.parquet",
            )
            .expect("a path"),
            size: 1,
            rows: Some(rows),
            null_counts: [
                ("record_json".to_string(), record_nulls),
                ("checklist_name".to_string(), name_nulls),
            ]
            .into_iter()
            .collect(),
        };
        let files = [file(100, 10, 10), file(50, 0, 50)];
        let shares = typed_nulls(Table::Records(schemas::Resource::Results), files.iter());
        let name = shares
            .iter()
            .find(|c| c.column == "checklist_name")
            .expect("counted");
        assert_eq!((name.recorded_rows, name.null_rows), (140, 50));
        // Columns without counts in every file are not judged.
        assert!(shares.iter().all(|c| c.column == "checklist_name"));
    }

    #[test]
    fn batch_files_name_their_partition() {
        assert_eq!(batch_partition("3-10-20-0a0b0c0d"), Some(3));
        assert_eq!(batch_partition("compacted-0123456789abcdef"), None);
        assert_eq!(batch_partition("part-0000"), None);
    }
}
