//! Compaction of Delta tables: each closed day (`dt` older than a grace
//! period) is rewritten into files of about a target size holding each event
//! once, in one commit that removes exactly the files it read. A day whose
//! files are all compaction's own is done: it is rewritten again only when
//! new files arrive.
//!
//! Open days (today, and those inside the grace) receive a small file per
//! commit; once one holds more small files than a bound, they are merged
//! ([`merge_open_days`]) into `merged-` files, in one commit that removes
//! exactly the files read and lets every append in between through. The
//! day is compacted whole once closed.
//!
//! Memory: the day's events (about 48 bytes each, see `selection.rs`), one
//! input row group and one output file up to the target size.

mod rewrite;
mod selection;

use object_store::ObjectStoreExt;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use deltalake_core::kernel::transaction::{CommitBuilder, TransactionError};
use deltalake_core::kernel::{Action, Remove};
use deltalake_core::protocol::DeltaOperation;
use deltalake_core::{DeltaTable, DeltaTableError};
use futures::FutureExt;
use schemas::Table;

use crate::data_file::DataFile;
use crate::delta::actions::{add_action, commit_properties, partition_values};
use crate::delta::checkpoint::ADDED_TAG;
use crate::delta::error::DeltaError;
use crate::delta::log::DeltaTables;
use crate::encoding::parquet_file::{Compression, EncodingError};
use crate::path::{stems, DataPath, PARTITION_COLUMN};
use crate::store::{LakeError, Upload};
use crate::telemetry;

/// Why a compaction failed.
#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    #[error(transparent)]
    /// The table's log could not be read or written.
    Delta(#[from] DeltaError),
    #[error("{table} dt={date}: {source}")]
    /// A data file could not be read or written.
    Store {
        /// The table.
        table: &'static str,
        /// The day.
        date: NaiveDate,
        /// Why.
        source: LakeError,
    },
    #[error("{table} dt={date}: {reason}")]
    /// A data file could not be read, or does not fit the table's schema.
    Unreadable {
        /// The table.
        table: &'static str,
        /// The day.
        date: NaiveDate,
        /// Why.
        reason: String,
    },
    #[error("{table} dt={date}: {source}")]
    /// A data file could not be encoded.
    Parquet {
        /// The table.
        table: &'static str,
        /// The day.
        date: NaiveDate,
        /// Why.
        source: EncodingError,
    },
}

/// What a compaction does.
#[derive(Debug, Clone, Copy)]
pub struct CompactionSettings {
    /// Days whose end is at least this long ago are closed.
    pub grace: Duration,
    /// Output files are closed once they reach this encoded size.
    pub target_bytes: usize,
    /// The output files' codec.
    pub compression: Compression,
    /// How the output files are uploaded.
    pub upload: Upload,
    /// An open day's small files (below half the target size) are merged
    /// once it holds more than this many.
    pub open_day_files: usize,
}

/// Which days a run rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Closed days, whole.
    Closed,
    /// Open days' small files.
    Open,
}

impl Pass {
    /// A name for an output file.
    pub(crate) fn stem(self) -> String {
        match self {
            Pass::Closed => stems::compacted(),
            Pass::Open => stems::merged(),
        }
    }

    /// The files of `date`'s `files` this pass rewrites, if the day is due.
    fn due(
        self,
        date: NaiveDate,
        files: BTreeSet<Active>,
        closed_before: NaiveDate,
        settings: &CompactionSettings,
    ) -> Option<BTreeSet<Active>> {
        match self {
            // Compaction's own files only: the day is done.
            Pass::Closed => {
                (date < closed_before && !files.iter().all(Active::is_compacted)).then_some(files)
            }
            Pass::Open => {
                let mut small: Vec<Active> = files
                    .into_iter()
                    .filter(|f| !f.is_compacted() && f.size < (settings.target_bytes / 2) as u64)
                    .collect();
                if date < closed_before || small.len() <= settings.open_day_files {
                    return None;
                }
                // The smallest files, each at most twice those before it
                // together: a merged file is merged again only once the
                // newer files add up to half its size, so each byte is
                // rewritten a few times per doubling of the merged file
                // (log of half the target over a commit's file), not once
                // per merge.
                small.sort_by_key(|f| f.size);
                let mut chosen = BTreeSet::new();
                let mut together = 0;
                for file in small {
                    if !chosen.is_empty() && file.size > 2 * together {
                        break;
                    }
                    together += file.size;
                    chosen.insert(file);
                }
                (chosen.len() > 1).then_some(chosen)
            }
        }
    }

    /// Whether a rewrite of `read` still fits the day's `active` files: a
    /// closed day's must be exactly what was read; an open day's must
    /// still hold every file read (appends in between are let through).
    fn fits(self, read: &BTreeSet<Active>, active: Option<&BTreeSet<Active>>) -> bool {
        match (self, active) {
            (Pass::Closed, Some(active)) => active == read,
            (Pass::Open, Some(active)) => read.is_subset(active),
            (_, None) => false,
        }
    }
}

/// One day of one table, compacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCompacted {
    /// The table.
    pub table: Table,
    /// The day (`dt`).
    pub date: NaiveDate,
    /// Files read.
    pub files_in: usize,
    /// Files written.
    pub files_out: usize,
    /// Rows read.
    pub rows_in: u64,
    /// Rows written: one per event.
    pub rows_out: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
}

/// What a compaction run did.
#[derive(Debug, Default)]
pub struct CompactionReport {
    /// The days compacted.
    pub compacted: Vec<DayCompacted>,
    /// Days left for the next run: another writer committed to them while
    /// they were being rewritten.
    pub conflicts: Vec<(Table, NaiveDate)>,
    /// Days left alone, and why: a file that cannot be read or does not fit
    /// the table, deletion vectors, a failure. The other days go on.
    pub failed: Vec<(Table, NaiveDate, String)>,
}

/// An active file of a table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Active {
    path: DataPath,
    size: u64,
    /// Another engine deleted rows of it through a deletion vector.
    has_deletion_vector: bool,
    /// When it was added (its `modificationTime`).
    added_at: i64,
}

impl Active {
    fn is_compacted(&self) -> bool {
        self.path.stem.starts_with(stems::COMPACTED_PREFIX)
    }
}

/// Attempts at committing rewrites when other commits (to other days) came
/// first.
const COMMIT_ATTEMPTS: usize = 10;
/// Days whose rewrites share one commit: a commit (and the reload of the
/// log before it) costs about as much for one small day as for many.
const DAYS_PER_COMMIT: usize = 64;

/// Compacts every closed day of every table. A day that fails (or panics)
/// is reported and left alone; the others go on. Only an unreadable table
/// log ends the run.
pub async fn compact(
    tables: &DeltaTables,
    settings: &CompactionSettings,
    now: DateTime<Utc>,
) -> Result<CompactionReport, CompactionError> {
    run(tables, settings, now, Pass::Closed).await
}

/// Merges the small files of every open day that holds more than
/// `settings.open_day_files` of them, so that reading today stays about
/// as fast as reading a compacted day. Appends to the day go on
/// meanwhile; a rewrite whose files another writer removed in between
/// (a compaction, an erasure) is left for the next run.
pub async fn merge_open_days(
    tables: &DeltaTables,
    settings: &CompactionSettings,
    now: DateTime<Utc>,
) -> Result<CompactionReport, CompactionError> {
    run(tables, settings, now, Pass::Open).await
}

async fn run(
    tables: &DeltaTables,
    settings: &CompactionSettings,
    now: DateTime<Utc>,
    pass: Pass,
) -> Result<CompactionReport, CompactionError> {
    let closed_before = (now - settings.grace).date_naive();
    let mut report = CompactionReport::default();
    for table in Table::all() {
        let Some(current) = tables.latest(table).await? else {
            continue;
        };
        let columns = rewrite::columns(&current, table)?;
        let mut prepared = Vec::new();
        for (date, files) in days(&current, table)? {
            let Some(files) = pass.due(date, files, closed_before, settings) else {
                continue;
            };
            let rewritten = std::panic::AssertUnwindSafe(rewrite_day(
                tables, table, &columns, date, files, settings, pass,
            ))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                let reason = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a panic");
                Err(format!("panicked: {reason}"))
            });
            match rewritten {
                Ok(day) => prepared.push(day),
                Err(reason) => {
                    tracing::error!(table = table.name(), %date, %reason, "the day is left alone; the other days go on");
                    telemetry::compaction_failed(table);
                    report.failed.push((table, date, reason));
                }
            }
            if prepared.len() >= DAYS_PER_COMMIT {
                commit(
                    tables,
                    table,
                    std::mem::take(&mut prepared),
                    settings,
                    &mut report,
                )
                .await?;
            }
        }
        commit(tables, table, prepared, settings, &mut report).await?;
        let closed_cleanly = !report.failed.iter().any(|(t, ..)| *t == table)
            && !report.conflicts.iter().any(|(t, _)| *t == table);
        if matches!(pass, Pass::Closed) && closed_cleanly {
            let through = closed_before - chrono::Days::new(1);
            if let Err(error) =
                crate::final_through::publish(tables.lake(), table, through, settings.grace).await
            {
                // Readers see the previous day as final until the next run.
                tracing::warn!(table = table.name(), %error, "could not publish the table's final day");
            }
        }
    }
    Ok(report)
}

/// The active files of `current`, per day.
fn days(
    current: &DeltaTable,
    table: Table,
) -> Result<BTreeMap<NaiveDate, BTreeSet<Active>>, DeltaError> {
    let state = current.snapshot().map_err(DeltaError::of(table))?;
    let mut days: BTreeMap<NaiveDate, BTreeSet<Active>> = BTreeMap::new();
    for file in state.log_data().iter() {
        let Some(path) = DataPath::parse_in_table(table, file.path().as_ref()) else {
            tracing::warn!(
                table = table.name(),
                path = %file.path(),
                "a file outside dt= folders is left alone"
            );
            continue;
        };
        days.entry(path.date).or_default().insert(Active {
            path,
            size: file.size().max(0) as u64,
            has_deletion_vector: file.deletion_vector_descriptor().is_some(),
            added_at: file.modification_time(),
        });
    }
    Ok(days)
}

/// A day rewritten into new files, not committed yet.
struct Prepared {
    date: NaiveDate,
    /// The files read: the commit removes exactly these.
    read: BTreeSet<Active>,
    pass: Pass,
    written: Vec<DataFile>,
    done: DayCompacted,
}

/// Rewrites one day into new files; why not, if it cannot.
async fn rewrite_day(
    tables: &DeltaTables,
    table: Table,
    columns: &arrow::datatypes::SchemaRef,
    date: NaiveDate,
    files: BTreeSet<Active>,
    settings: &CompactionSettings,
    pass: Pass,
) -> Result<Prepared, String> {
    if files.iter().any(|f| f.has_deletion_vector) {
        return Err("a file has a deletion vector (rows deleted by another engine), which this compaction does not apply: left as it is so that no deleted row comes back".into());
    }
    let lake = tables.lake();
    let located: Vec<(object_store::path::Path, u64)> = files
        .iter()
        .map(|f| (lake.path(&f.path.in_lake()), f.size))
        .collect();
    let selection = selection::select(lake, &located)
        .await
        .map_err(|error| error.to_string())?;
    let destination = rewrite::Destination { table, date, pass };
    let written = rewrite::rewrite(lake, destination, columns, &located, &selection, settings)
        .await
        .map_err(|error| error.to_string())?;
    let done = DayCompacted {
        table,
        date,
        files_in: files.len(),
        files_out: written.len(),
        rows_in: selection.rows_in,
        rows_out: selection.rows_out,
        bytes_in: files.iter().map(|f| f.size).sum(),
        bytes_out: written.iter().map(|f| f.size as u64).sum(),
    };
    Ok(Prepared {
        date,
        read: files,
        pass,
        written,
        done,
    })
}

/// Commits the rewrites of `days` of `table` in one commit that removes
/// exactly the files each read and adds those it wrote. Commits to other
/// days that come first are let through; a day that no longer fits the
/// rewrite ([`Pass::fits`]: a closed day's files added or removed, an open
/// day's files read removed) is dropped from the commit (its new files
/// deleted) and left for the next run.
async fn commit(
    tables: &DeltaTables,
    table: Table,
    mut days_left: Vec<Prepared>,
    settings: &CompactionSettings,
    report: &mut CompactionReport,
) -> Result<(), CompactionError> {
    for _ in 0..COMMIT_ATTEMPTS {
        if days_left.is_empty() {
            return Ok(());
        }
        let current = tables.latest(table).await?;
        let active = match &current {
            Some(current) => days(current, table)?,
            None => BTreeMap::new(),
        };
        let (unchanged, changed): (Vec<Prepared>, Vec<Prepared>) = days_left
            .into_iter()
            .partition(|day| day.pass.fits(&day.read, active.get(&day.date)));
        for day in changed {
            drop_rewrite(tables, day, report).await;
        }
        days_left = unchanged;
        let Some(current) = current.filter(|_| !days_left.is_empty()) else {
            return Ok(());
        };
        let state = current.snapshot().map_err(DeltaError::of(table))?;
        // No retries inside the library: a commit in between is examined
        // here, against each day's files.
        let committed = CommitBuilder::from(commit_properties(0))
            .with_actions(actions(&days_left))
            .build(
                Some(state),
                current.log_store(),
                DeltaOperation::Optimize {
                    predicate: Some(predicate(&days_left)),
                    target_size: settings.target_bytes as i64,
                },
            )
            .await;
        match committed {
            Ok(_) => {
                for day in days_left {
                    let done = day.done;
                    tracing::info!(table = table.name(), date = %done.date, files_in = done.files_in, files_out = done.files_out, rows_in = done.rows_in, rows_out = done.rows_out, "day compacted");
                    telemetry::day_compacted(
                        done.table,
                        (done.files_in, done.files_out),
                        (done.rows_in, done.rows_out),
                    );
                    report.compacted.push(done);
                }
                return Ok(());
            }
            Err(DeltaTableError::Transaction {
                source: TransactionError::MaxCommitAttempts(_),
            })
            | Err(DeltaTableError::VersionAlreadyExists(_)) => continue,
            Err(error) => return Err(DeltaError::of(table)(error).into()),
        }
    }
    for day in days_left {
        drop_rewrite(tables, day, report).await;
    }
    Ok(())
}

/// Forgets a rewrite another writer's commit overtook: deletes its files
/// and reports the day as left for the next run.
async fn drop_rewrite(tables: &DeltaTables, day: Prepared, report: &mut CompactionReport) {
    let lake = tables.lake();
    for file in &day.written {
        let location = lake.path(&file.path.in_lake());
        if let Err(error) = lake.store().delete(&location).await {
            tracing::warn!(%error, path = %location, "removing an unused compacted file failed; vacuum removes it");
        }
    }
    let table = day.done.table;
    tracing::info!(table = table.name(), date = %day.date, "another writer committed to the day meanwhile; left for the next run");
    telemetry::compaction_conflict();
    report.conflicts.push((table, day.date));
}

/// The removes and adds of `days`: `dataChange` only where rows were
/// dropped.
fn actions(days: &[Prepared]) -> Vec<Action> {
    let deleted_at = Utc::now().timestamp_millis();
    let mut actions = Vec::new();
    for day in days {
        let data_change = day.done.rows_out != day.done.rows_in;
        actions.extend(day.read.iter().map(|file| {
            Action::Remove(Remove {
                path: file.path.in_table(),
                data_change,
                deletion_timestamp: Some(deleted_at),
                extended_file_metadata: Some(true),
                partition_values: Some(partition_values(day.date)),
                size: Some(file.size as i64),
                // When a file of the sink's came: its tombstone can be left
                // out of the checkpoints if it lived briefly (see
                // `checkpoint`); the vacuum judges such files by their age.
                tags: stems::written_by_sink(&file.path.stem).then(|| {
                    [(ADDED_TAG.to_string(), Some(file.added_at.to_string()))]
                        .into_iter()
                        .collect()
                }),
                deletion_vector: None,
                base_row_id: None,
                default_row_commit_version: None,
            })
        }));
        actions.extend(
            day.written
                .iter()
                .map(|f| Action::Add(add_action(f, data_change))),
        );
    }
    actions
}

/// `dt IN ('…', …)` over `days`, as the commit's operation records it.
fn predicate(days: &[Prepared]) -> String {
    let dates: Vec<String> = days.iter().map(|d| format!("'{}'", d.date)).collect();
    format!("{PARTITION_COLUMN} IN ({})", dates.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Lake, Put};

    #[test]
    fn compacted_files_are_told_by_their_names() {
        let active = |path: &str| Active {
            path: DataPath::parse_in_table(Table::Events, path).expect("a data path"),
            size: 1,
            has_deletion_vector: false,
            added_at: 0,
        };
        assert!(active("dt=2025-03-01/compacted-0a0b0c0d.parquet").is_compacted());
        assert!(!active("dt=2025-03-01/2-0-9-0a0b0c0d.parquet").is_compacted());
    }

    fn settings() -> CompactionSettings {
        CompactionSettings {
            grace: Duration::from_secs(3600),
            target_bytes: 1 << 20,
            compression: Compression::Zstd,
            open_day_files: 4,
            upload: Upload {
                multipart_threshold: 1 << 30,
                part_size: 16 << 20,
            },
        }
    }

    fn record(id: u32, day: u32, status: &str, fetched: &str) -> String {
        format!(
            r#"{{"event_id":"{id:032x}","resource":"Users","event":"Updated","object_id":"users/{id}-A","event_timestamp":"2025-03-{day:02}T08:00:00Z","received_at":"2025-03-{day:02}T08:00:01Z","fetched_at":"{fetched}","status":"{status}","record":{{"id":"users/{id}-A"}}}}"#
        )
    }

    /// Writes a batch of `records` as the sink does; returns its `events` file.
    async fn sink_file(lake: &Lake, records: &[String]) -> DataFile {
        let mut files = crate::FileSet::new(Compression::Zstd, 1 << 20);
        for text in records {
            let view = schemas::EnrichedView::from_json(text.as_bytes()).expect("decodes");
            files.push(&view, text.len(), |_| false).expect("encodes");
        }
        let origin = crate::Origin {
            topic: "t",
            partition: 0,
            first: 0,
            last: 9,
        };
        let encoded = files
            .finish(&origin, crate::Naming::Unique)
            .expect("closes")
            .into_iter()
            .find(|f| f.path.table == Table::Events)
            .expect("an events file");
        let put = lake.write_file(&encoded, &settings().upload).await;
        assert_eq!(put.expect("writes"), Put::Created);
        encoded.data_file()
    }

    /// An `events` file another engine wrote: large strings, nanoseconds,
    /// no `record_json`-like optional columns.
    async fn foreign_file(lake: &Lake, id: u32) -> DataFile {
        use arrow::array::{LargeStringArray, TimestampNanosecondArray};
        use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
        let text = |value: &str| -> arrow::array::ArrayRef {
            std::sync::Arc::new(LargeStringArray::from(vec![value]))
        };
        let schema = std::sync::Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::LargeUtf8, false),
            Field::new("resource", DataType::LargeUtf8, false),
            Field::new("event", DataType::LargeUtf8, false),
            Field::new("object_id", DataType::LargeUtf8, false),
            Field::new(
                "event_timestamp",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new("status", DataType::LargeUtf8, false),
        ]));
        let batch = arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![
                text(&format!("{id:032x}")),
                text("Users"),
                text("Updated"),
                text("users/9-A"),
                std::sync::Arc::new(
                    TimestampNanosecondArray::from(vec![1_740_816_000_000_000_000])
                        .with_timezone("UTC"),
                ),
                text("found"),
            ],
        )
        .expect("a batch");
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(Vec::new(), schema, None).expect("a writer");
        writer.write(&batch).expect("writes");
        let bytes = bytes::Bytes::from(writer.into_inner().expect("closes"));
        let path = DataPath {
            table: Table::Events,
            date: NaiveDate::from_ymd_opt(2025, 3, 1).expect("a date"),
            stem: "part-00000-foreign".into(),
        };
        let size = bytes.len();
        let put = lake.create(&lake.path(&path.in_lake()), bytes).await;
        assert_eq!(put.expect("writes"), Put::Created);
        DataFile {
            path,
            size,
            rows: 1,
            stats: None,
        }
    }

    #[tokio::test]
    async fn a_day_keeps_the_best_copy_of_each_event_and_a_bad_day_stays_alone() {
        let lake = Lake::open("memory:///lake").expect("opens");
        let tables = DeltaTables::new(lake.clone());
        let (early, late) = ("2025-03-01T09:00:00Z", "2025-03-01T10:00:00Z");
        // Day 1: event 2 found late in one file, not found in another; event
        // 3 twice; event 4 from another engine's file.
        let first = sink_file(
            &lake,
            &[
                record(1, 1, "found", early),
                record(2, 1, "not_found", late),
                record(3, 1, "found", early),
            ],
        )
        .await;
        let second = sink_file(
            &lake,
            &[record(2, 1, "found", early), record(3, 1, "found", early)],
        )
        .await;
        let foreign = foreign_file(&lake, 4).await;
        // Day 2: one good file and one that is not Parquet at all.
        let good = sink_file(&lake, &[record(5, 2, "found", early)]).await;
        let broken = DataFile {
            path: DataPath {
                table: Table::Events,
                date: NaiveDate::from_ymd_opt(2025, 3, 2).expect("a date"),
                stem: "0-0-0-0a0b0c0d".into(),
            },
            size: 3,
            rows: 1,
            stats: None,
        };
        let put = lake
            .create(&lake.path(&broken.path.in_lake()), "bad".into())
            .await;
        assert_eq!(put.expect("writes"), Put::Created);
        let id = crate::delta::actions::app_id("t", 0);
        let appended = tables
            .append(
                Table::Events,
                &[first, second, foreign, good, broken],
                &id,
                None,
                9,
            )
            .await
            .expect("appends");
        assert!(matches!(
            appended,
            crate::delta::log::Appended::Committed(_)
        ));
        let now = "2025-03-10T00:00:00Z".parse().expect("a time");
        let report = compact(&tables, &settings(), now).await.expect("runs");
        assert_eq!(report.compacted.len(), 1, "{report:?}");
        let day = &report.compacted[0];
        assert_eq!((day.rows_in, day.rows_out, day.files_out), (6, 4, 1));
        assert_eq!(report.failed.len(), 1, "{report:?}");
        assert_eq!(
            report.failed[0].1,
            NaiveDate::from_ymd_opt(2025, 3, 2).expect("a date")
        );
        // The kept copy of event 2 is the found one.
        let current = tables
            .latest(Table::Events)
            .await
            .expect("reads")
            .expect("a table");
        let days = days(&current, Table::Events).expect("days");
        let compacted = days
            .get(&NaiveDate::from_ymd_opt(2025, 3, 1).expect("a date"))
            .expect("day 1");
        let located: Vec<_> = compacted
            .iter()
            .map(|f| (lake.path(&f.path.in_lake()), f.size))
            .collect();
        let mut statuses = BTreeMap::new();
        let opened = crate::reading::in_order(&lake, &located, None);
        futures::pin_mut!(opened);
        use arrow::array::AsArray;
        use futures::StreamExt;
        while let Some(file) = opened.next().await {
            let mut batches = file.expect("opens");
            while let Some(batch) = batches.next().await {
                let batch = batch.expect("reads");
                let ids = batch
                    .column_by_name("event_id")
                    .expect("ids")
                    .as_string::<i32>();
                let status = batch
                    .column_by_name("status")
                    .expect("status")
                    .as_string::<i32>();
                for row in 0..batch.num_rows() {
                    statuses.insert(ids.value(row).to_string(), status.value(row).to_string());
                }
            }
        }
        assert_eq!(statuses.len(), 4);
        assert_eq!(statuses[&format!("{:032x}", 2)], "found");
        // A day left alone: the table publishes no final day.
        let published = crate::final_through::read(&lake, Table::Events).await;
        assert!(published.expect("reads").is_none());
        // Done: a second run rewrites nothing of day 1.
        let again = compact(&tables, &settings(), now).await.expect("runs");
        assert!(again.compacted.is_empty(), "{again:?}");
    }

    /// Merging an open day after every commit rewrites each row a few
    /// times (about once per doubling of the merged file), not once per
    /// merge, and keeps the day's files near the bound.
    #[tokio::test]
    async fn open_day_merges_rewrite_each_row_a_few_times() {
        let lake = Lake::open("memory:///lake").expect("opens");
        let tables = DeltaTables::new(lake.clone());
        let id = crate::delta::actions::app_id("t", 0);
        let open = "2025-03-01T12:00:00Z".parse().expect("a time");
        const COMMITS: u64 = 96;
        let mut rewritten = 0;
        for n in 0..COMMITS {
            // Rows of a few KiB, so that a file's size follows its rows.
            let bulk: String = (0..256u64)
                .map(|i| {
                    format!(
                        "{:016x}",
                        (n * 7919 + i).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    )
                })
                .collect();
            let text = record(n as u32, 1, "found", "2025-03-01T09:00:00Z")
                .replace(&format!("users/{}-A", n), &format!("users/{n}-{bulk}"));
            let file = sink_file(&lake, &[text]).await;
            let expected = (n > 0).then(|| (n as i64 - 1) * 10);
            let appended = tables
                .append(Table::Events, &[file], &id, expected, n as i64 * 10)
                .await
                .expect("appends");
            assert!(matches!(
                appended,
                crate::delta::log::Appended::Committed(_)
            ));
            let merged = merge_open_days(&tables, &settings(), open)
                .await
                .expect("merges");
            rewritten += merged.compacted.iter().map(|d| d.rows_in).sum::<u64>();
        }
        let current = tables
            .latest(Table::Events)
            .await
            .expect("reads")
            .expect("a table");
        let files = days(&current, Table::Events)
            .expect("days")
            .into_values()
            .flatten()
            .count();
        // Merging everything every time past the bound would rewrite about
        // COMMITS² / (2 × bound) = 1,152 rows.
        let log2 = u64::from(COMMITS.ilog2()) + 1;
        assert!(
            rewritten <= COMMITS * log2,
            "{rewritten} rows rewritten for {COMMITS} written"
        );
        assert!(
            files <= settings().open_day_files + log2 as usize,
            "{files} files"
        );
    }

    /// An open day's small files are merged once more than the bound; an
    /// append in between stays, a rewrite whose files another commit
    /// removed is dropped; once closed, the day is compacted whole.
    #[tokio::test]
    async fn an_open_day_merges_its_small_files_and_lets_appends_through() {
        let lake = Lake::open("memory:///lake").expect("opens");
        let tables = DeltaTables::new(lake.clone());
        let early = "2025-03-01T09:00:00Z";
        let id = crate::delta::actions::app_id("t", 0);
        let mut offset = 0;
        let mut append = |files: Vec<DataFile>| {
            offset += 10;
            let tables = &tables;
            let id = id.clone();
            let (expected, version) = ((offset > 10).then_some(offset - 10), offset);
            async move {
                let appended = tables
                    .append(Table::Events, &files, &id, expected, version)
                    .await
                    .expect("appends");
                assert!(matches!(
                    appended,
                    crate::delta::log::Appended::Committed(_)
                ));
            }
        };
        for n in 0..4 {
            append(vec![
                sink_file(&lake, &[record(n, 1, "found", early)]).await,
            ])
            .await;
        }
        let open = "2025-03-01T12:00:00Z".parse().expect("a time");
        let few = merge_open_days(&tables, &settings(), open)
            .await
            .expect("runs");
        assert!(
            few.compacted.is_empty(),
            "four files are within the bound: {few:?}"
        );
        append(vec![
            sink_file(&lake, &[record(4, 1, "found", early)]).await,
        ])
        .await;
        let merged = merge_open_days(&tables, &settings(), open)
            .await
            .expect("runs");
        assert_eq!(merged.compacted.len(), 1, "{merged:?}");
        assert_eq!(merged.compacted[0].files_in, 5);
        let files = |current: &DeltaTable| -> Vec<String> {
            days(current, Table::Events)
                .expect("days")
                .into_values()
                .flatten()
                .map(|f| f.path.stem)
                .collect()
        };
        let current = tables
            .latest(Table::Events)
            .await
            .expect("reads")
            .expect("a table");
        let stems = files(&current);
        assert_eq!(stems.len(), 1);
        assert!(stems[0].starts_with(stems::MERGED_PREFIX), "{stems:?}");

        // A rewrite prepared, then an append to the day: the append stays,
        // the merge commits.
        for n in 5..10 {
            append(vec![
                sink_file(&lake, &[record(n, 1, "found", early)]).await,
            ])
            .await;
        }
        let current = tables
            .latest(Table::Events)
            .await
            .expect("reads")
            .expect("a table");
        let date = NaiveDate::from_ymd_opt(2025, 3, 1).expect("a date");
        let day_files = days(&current, Table::Events)
            .expect("days")
            .remove(&date)
            .expect("the day");
        let columns = rewrite::columns(&current, Table::Events).expect("columns");
        let due = Pass::Open
            .due(date, day_files, date, &settings())
            .expect("due");
        let prepared = rewrite_day(
            &tables,
            Table::Events,
            &columns,
            date,
            due,
            &settings(),
            Pass::Open,
        )
        .await
        .expect("rewrites");
        append(vec![
            sink_file(&lake, &[record(10, 1, "found", early)]).await,
        ])
        .await;
        let mut report = CompactionReport::default();
        commit(
            &tables,
            Table::Events,
            vec![prepared],
            &settings(),
            &mut report,
        )
        .await
        .expect("commits");
        assert_eq!(
            (report.compacted.len(), report.conflicts.len()),
            (1, 0),
            "{report:?}"
        );
        let current = tables
            .latest(Table::Events)
            .await
            .expect("reads")
            .expect("a table");
        // The merged file (the first one merged again with five more), and
        // the file appended meanwhile.
        assert_eq!(files(&current).len(), 2, "{:?}", files(&current));

        // Closed: compacted whole into one file of the 11 events.
        let closed = "2025-03-10T00:00:00Z".parse().expect("a time");
        let report = compact(&tables, &settings(), closed).await.expect("runs");
        assert_eq!(report.compacted.len(), 1, "{report:?}");
        assert_eq!(
            (report.compacted[0].rows_out, report.compacted[0].files_out),
            (11, 1)
        );
        // The table publishes the last day closed: an hour's grace before
        // 2025-03-10 00:00 falls on 2025-03-09, so days through 03-08.
        let published = crate::final_through::read(tables.lake(), Table::Events)
            .await
            .expect("reads")
            .expect("published");
        assert_eq!(published.final_through, NaiveDate::from_ymd_opt(2025, 3, 8));
    }
}
