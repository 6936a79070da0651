//! Compaction of Delta tables: each closed day (`dt` older than a grace
//! period) is rewritten into files of about a target size holding each event
//! once, in one commit that removes exactly the files it read.
//!
//! Memory: the event ids of the day (about 50 bytes per row), one input file
//! and one output file at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake_core::kernel::{Action, Remove};
use deltalake_core::protocol::DeltaOperation;
use deltalake_core::{DeltaTable, DeltaTableError};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use schemas::Table;

use crate::data_file::DataFile;
use crate::delta::log::{add_action, partition_values, DeltaError, DeltaTables};
use crate::encoding::parquet_file::{properties, Compression, EncodingError};
use crate::path::{DataPath, PARTITION_COLUMN};
use crate::store::{Lake, LakeError, Put, Upload};
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
    #[error("{table} dt={date}: {source}")]
    /// A data file could not be decoded or encoded.
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
}

/// An active file of a table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Active {
    path: DataPath,
    size: u64,
}

impl Active {
    fn is_compacted(&self) -> bool {
        self.path.stem.starts_with(COMPACTED_PREFIX)
    }
}

/// How the rewrite of one day ended.
#[derive(Debug)]
#[must_use]
enum DayOutcome {
    Compacted(DayCompacted),
    /// Another writer added or removed a file of the day meanwhile: the
    /// rewrite was dropped, and the day is left for the next run.
    Changed,
}

/// Output files start with this, so that a day already compacted into one
/// file is left alone.
const COMPACTED_PREFIX: &str = "compacted-";
/// Attempts at committing a day's rewrite when other commits (to other
/// days) came first.
const COMMIT_ATTEMPTS: usize = 10;

/// Compacts every closed day of every table.
pub async fn compact(
    tables: &DeltaTables,
    settings: &CompactionSettings,
    now: DateTime<Utc>,
) -> Result<CompactionReport, CompactionError> {
    let closed_before = (now - settings.grace).date_naive();
    let mut report = CompactionReport::default();
    for table in Table::all() {
        let Some(current) = tables.latest(table).await? else {
            continue;
        };
        for (date, files) in days(&current, table)? {
            let due = date < closed_before
                && (files.len() > 1 || !files.iter().any(Active::is_compacted));
            if !due {
                continue;
            }
            match compact_day(tables, table, date, &files, settings).await? {
                DayOutcome::Compacted(done) => {
                    tracing::info!(table = table.name(), %date, files_in = done.files_in, files_out = done.files_out, rows_in = done.rows_in, rows_out = done.rows_out, "day compacted");
                    telemetry::day_compacted(&done);
                    report.compacted.push(done);
                }
                DayOutcome::Changed => {
                    tracing::info!(table = table.name(), %date, "another writer committed to the day meanwhile; left for the next run");
                    telemetry::compaction_conflict();
                    report.conflicts.push((table, date));
                }
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
        });
    }
    Ok(days)
}

/// Rewrites one day.
async fn compact_day(
    tables: &DeltaTables,
    table: Table,
    date: NaiveDate,
    files: &BTreeSet<Active>,
    settings: &CompactionSettings,
) -> Result<DayOutcome, CompactionError> {
    let lake = tables.lake();
    let location = |path: &DataPath| lake.path(&path.in_lake());
    let store_error = |source| CompactionError::Store {
        table: table.name(),
        date,
        source,
    };
    let parquet_error = |source: EncodingError| CompactionError::Parquet {
        table: table.name(),
        date,
        source,
    };
    // Pass 1: which row of which file keeps each event.
    let mut keep: HashMap<String, (Option<i64>, usize, usize)> = HashMap::new();
    let mut rows_in = 0u64;
    for (index, file) in files.iter().enumerate() {
        let bytes = read(lake, &location(&file.path))
            .await
            .map_err(store_error)?;
        let mut row = 0;
        for batch in decode(bytes, Some(&["event_id", "received_at"])).map_err(parquet_error)? {
            let ids = batch.column(0).as_string::<i32>();
            let received = batch.column(1).as_primitive::<TimestampMicrosecondType>();
            for i in 0..batch.num_rows() {
                let at = received.is_valid(i).then(|| received.value(i));
                let candidate = (at, index, row);
                keep.entry(ids.value(i).to_string())
                    .and_modify(|kept| {
                        if earlier(at, kept.0) {
                            *kept = candidate;
                        }
                    })
                    .or_insert(candidate);
                row += 1;
            }
        }
        rows_in += row as u64;
    }
    let mut chosen: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); files.len()];
    for (_, index, row) in keep.values() {
        chosen[*index].insert(*row);
    }
    let rows_out = keep.len() as u64;
    drop(keep);
    // Pass 2: the kept rows, file by file, into outputs of the target size.
    let mut output = Output::new(table, date, settings);
    for (index, file) in files.iter().enumerate() {
        let bytes = read(lake, &location(&file.path))
            .await
            .map_err(store_error)?;
        let mut row = 0;
        for batch in decode(bytes, None).map_err(parquet_error)? {
            let mask: BooleanArray = (row..row + batch.num_rows())
                .map(|r| Some(chosen[index].contains(&r)))
                .collect();
            row += batch.num_rows();
            let kept = arrow::compute::filter_record_batch(&batch, &mask)
                .map_err(|e| parquet_error(EncodingError::Parquet(e.into())))?;
            output.write(&kept).map_err(parquet_error)?;
            if output.full() {
                output.close(lake).await?;
            }
        }
    }
    output.close(lake).await?;
    let written = output.written;
    let done = DayCompacted {
        table,
        date,
        files_in: files.len(),
        files_out: written.len(),
        rows_in,
        rows_out,
        bytes_in: files.iter().map(|f| f.size).sum(),
        bytes_out: written.iter().map(|f| f.size as u64).sum(),
    };
    let data_change = rows_out != rows_in;
    match commit(tables, table, date, files, &written, data_change, settings).await? {
        Rewrite::Committed => Ok(DayOutcome::Compacted(done)),
        Rewrite::DayChanged => {
            for file in &written {
                if let Err(error) = lake.store().delete(&location(&file.path)).await {
                    tracing::warn!(%error, path = %file.path.in_lake(), "removing an unused compacted file failed; vacuum removes it");
                }
            }
            Ok(DayOutcome::Changed)
        }
    }
}

/// Whether a row received at `candidate` was received before one at `kept`
/// (a known time before an unknown one).
fn earlier(candidate: Option<i64>, kept: Option<i64>) -> bool {
    match (candidate, kept) {
        (Some(c), Some(k)) => c < k,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

async fn read(lake: &Lake, path: &object_store::path::Path) -> Result<Bytes, LakeError> {
    Ok(lake.store().get(path).await?.bytes().await?)
}

/// The batches of a Parquet file, with only `columns` when given.
fn decode(bytes: Bytes, columns: Option<&[&str]>) -> Result<Vec<RecordBatch>, EncodingError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let builder = match columns {
        Some(columns) => {
            let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
            builder.with_projection(mask)
        }
        None => builder,
    };
    builder
        .build()?
        .map(|batch| batch.map_err(|e| EncodingError::Parquet(e.into())))
        .collect()
}

/// The output files of a day: one open writer at a time.
struct Output<'s> {
    table: Table,
    date: NaiveDate,
    settings: &'s CompactionSettings,
    writer: Option<ArrowWriter<Vec<u8>>>,
    rows: usize,
    written: Vec<DataFile>,
}

impl<'s> Output<'s> {
    fn new(table: Table, date: NaiveDate, settings: &'s CompactionSettings) -> Self {
        Output {
            table,
            date,
            settings,
            writer: None,
            rows: 0,
            written: Vec::new(),
        }
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), EncodingError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => self.writer.insert(ArrowWriter::try_new(
                Vec::new(),
                batch.schema(),
                Some(properties(self.settings.compression)),
            )?),
        };
        writer.write(batch)?;
        self.rows += batch.num_rows();
        // The open row group's size is measured before compression: it is
        // closed at the target, and the file at the target of closed groups,
        // so every file but a day's last one is at least the target.
        if writer.in_progress_size() >= self.settings.target_bytes {
            writer.flush()?;
        }
        Ok(())
    }

    fn full(&self) -> bool {
        self.writer
            .as_ref()
            .is_some_and(|w| w.bytes_written() >= self.settings.target_bytes)
    }

    /// Closes and uploads the open file, if any.
    async fn close(&mut self, lake: &Lake) -> Result<(), CompactionError> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        let (table, date) = (self.table, self.date);
        let bytes =
            Bytes::from(
                writer
                    .into_inner()
                    .map_err(|source| CompactionError::Parquet {
                        table: table.name(),
                        date,
                        source: source.into(),
                    })?,
            );
        let size = bytes.len();
        // Names are random: a taken one (never seen yet) is drawn again.
        let path = loop {
            let path = DataPath {
                table,
                date,
                stem: format!("{COMPACTED_PREFIX}{:016x}", rand::random::<u64>()),
            };
            let put = lake
                .put(
                    &lake.path(&path.in_lake()),
                    bytes.clone(),
                    &self.settings.upload,
                )
                .await;
            match put {
                Ok(Put::Created) => break path,
                Ok(Put::AlreadyExisted) => continue,
                Err(source) => {
                    return Err(CompactionError::Store {
                        table: table.name(),
                        date,
                        source,
                    })
                }
            }
        };
        self.written.push(DataFile {
            path,
            size,
            rows: std::mem::take(&mut self.rows),
        });
        Ok(())
    }
}

/// How committing a day's rewrite ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
enum Rewrite {
    Committed,
    /// A commit in between added or removed a file of the day.
    DayChanged,
}

/// Commits the rewrite of a day: removes exactly `read`, adds `written`.
/// Commits to other days that come first are let through; one that added
/// or removed a file of this day makes it give up.
async fn commit(
    tables: &DeltaTables,
    table: Table,
    date: NaiveDate,
    read: &BTreeSet<Active>,
    written: &[DataFile],
    data_change: bool,
    settings: &CompactionSettings,
) -> Result<Rewrite, CompactionError> {
    let deleted_at = Utc::now().timestamp_millis();
    let mut actions: Vec<Action> = read
        .iter()
        .map(|file| {
            Action::Remove(Remove {
                path: file.path.in_table(),
                data_change,
                deletion_timestamp: Some(deleted_at),
                extended_file_metadata: Some(true),
                partition_values: Some(partition_values(date)),
                size: Some(file.size as i64),
                tags: None,
                deletion_vector: None,
                base_row_id: None,
                default_row_commit_version: None,
            })
        })
        .collect();
    actions.extend(
        written
            .iter()
            .map(|f| Action::Add(add_action(f, data_change))),
    );
    for _ in 0..COMMIT_ATTEMPTS {
        let Some(current) = tables.latest(table).await? else {
            return Ok(Rewrite::DayChanged);
        };
        let unchanged = days(&current, table)?.get(&date) == Some(read);
        if !unchanged {
            return Ok(Rewrite::DayChanged);
        }
        let state = current.snapshot().map_err(DeltaError::of(table))?;
        // No retries inside the library: a commit in between is examined
        // here, against this day's files.
        let committed = CommitBuilder::from(CommitProperties::default().with_max_retries(0))
            .with_actions(actions.clone())
            .build(
                Some(state),
                current.log_store(),
                DeltaOperation::Optimize {
                    predicate: Some(format!("{PARTITION_COLUMN} = '{date}'")),
                    target_size: settings.target_bytes as i64,
                },
            )
            .await;
        match committed {
            Ok(_) => return Ok(Rewrite::Committed),
            Err(DeltaTableError::Transaction {
                source: TransactionError::MaxCommitAttempts(_),
            })
            | Err(DeltaTableError::VersionAlreadyExists(_)) => continue,
            Err(error) => return Err(DeltaError::of(table)(error).into()),
        }
    }
    Ok(Rewrite::DayChanged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacted_files_are_told_by_their_names() {
        let active = |path: &str| Active {
            path: DataPath::parse_in_table(Table::Events, path).expect("a data path"),
            size: 1,
        };
        assert!(active("dt=2025-03-01/compacted-0a0b0c0d.parquet").is_compacted());
        assert!(!active("dt=2025-03-01/2-0-9-0a0b0c0d.parquet").is_compacted());
    }

    #[test]
    fn the_earliest_known_receipt_wins() {
        assert!(earlier(Some(1), Some(2)));
        assert!(!earlier(Some(2), Some(1)));
        assert!(!earlier(Some(1), Some(1)));
        assert!(earlier(Some(5), None));
        assert!(!earlier(None, Some(5)));
        assert!(!earlier(None, None));
    }
}
