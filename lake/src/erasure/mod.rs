//! Forgetting a person (the GDPR's right to erasure), in every Delta table
//! of the lake, in its log, and in every later write.
//!
//! An erasure, for one User id:
//! 1. records the person in the ledger (a keyed hash, see `ledger.rs`), so
//!    that every writer erases them from what it writes from then on;
//! 2. learns the person's name, e-mail and username from their User
//!    records, to hunt them in free text too;
//! 3. per table, reads the active files, and rewrites those that name the
//!    person (copy-on-write, see `redaction.rs` for what changes), in one
//!    commit that removes exactly the files read and adds the rewrites,
//!    and re-adds every other file whose statistics hold bounds of a
//!    personal column without them. A commit that lands first is let
//!    through when it leaves those files active (an append), and the
//!    table is read again when it does not (a compaction); files added
//!    meanwhile are read in the next pass, until a pass finds the person
//!    nowhere;
//! 4. deletes at once the files it replaced, and every file out of the
//!    table (removed earlier, or uploaded by a write that never committed
//!    and older than an hour) that names the person;
//! 5. writes a checkpoint and removes every log entry and checkpoint before
//!    it: time travel to before the erasure ends, rather than showing the
//!    person.

mod audit;
mod ledger;
mod redaction;
mod watch;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use deltalake_core::kernel::transaction::{CommitBuilder, TransactionError};
use deltalake_core::kernel::{Action, Add, Remove};
use deltalake_core::protocol::checkpoints::cleanup_expired_logs_for;
use deltalake_core::protocol::DeltaOperation;
use deltalake_core::{DeltaTable, DeltaTableError};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectStoreExt;
use parquet::arrow::ArrowWriter;
use schemas::{Resource, Table};

pub use audit::found_again;
pub use ledger::{Erasure, ErasureKey, Ledger, LedgerError, Screened, TableErased};
pub use watch::Erasures;

use crate::data_file::DataFile;
use crate::delta::actions::{add_action, commit_properties, partition_values};
use crate::delta::checkpoint;
use crate::delta::error::DeltaError;
use crate::delta::log::DeltaTables;
use crate::delta::state::referenced_paths;
use crate::encoding::parquet_file::{properties, Compression};
use crate::path::{stems, DataPath};
use crate::reading::{each_batch, in_order};
use crate::statistics::without_personal_bounds;
use crate::store::{LakeError, Put, Upload};
use crate::telemetry;
use redaction::{forget_in_batch, Hunt};

/// Why an erasure failed. Run it again: it picks up where it stopped.
#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error(transparent)]
    /// A table's log could not be read or written.
    Delta(#[from] DeltaError),
    #[error(transparent)]
    /// The store failed.
    Store(#[from] LakeError),
    #[error(transparent)]
    /// The ledger could not be read or written.
    Ledger(#[from] LedgerError),
    #[error("{table}: {path}: {reason}")]
    /// A data file could not be read or written.
    File {
        /// The table.
        table: &'static str,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    #[error("{table}: a file has a deletion vector (rows deleted by another engine), which this erasure does not apply; nothing of the table was changed")]
    /// Another engine deleted rows with a deletion vector.
    DeletionVector {
        /// The table.
        table: &'static str,
    },
    #[error("{table}: {files} file(s) naming the person were uploaded in the last hour and no commit has added them yet; run the erasure again in an hour (a writer older than the ledger may be running)")]
    /// Recent uploads name the person, neither committed nor old enough to
    /// be known abandoned.
    InFlight {
        /// The table.
        table: &'static str,
        /// How many.
        files: usize,
    },
    #[error("{table}: writers kept adding files naming the person for {passes} passes; is a sink older than the erasure ledger running?")]
    /// Every pass found new files naming the person.
    Unsettled {
        /// The table.
        table: &'static str,
        /// Passes made.
        passes: usize,
    },
}

/// How an erasure runs.
#[derive(Debug, Clone)]
pub struct ErasureSettings {
    /// The hashing key when it comes from a secret; else the lake's.
    pub key: Option<ErasureKey>,
    /// Report what would change without changing anything.
    pub dry_run: bool,
    /// The rewritten files' codec.
    pub compression: Compression,
    /// How rewritten files are uploaded.
    pub upload: Upload,
    /// How long running writers take to read the ledger and drop what
    /// they buffered: no table is done before this long after the person
    /// entered the ledger.
    pub writers_settle: Duration,
}

/// What an erasure did (or, dry, would do).
#[derive(Debug, Clone)]
pub struct ErasureReport {
    /// The keyed hash the ledger holds for the person.
    pub person: String,
    /// Values hunted besides the id (name, e-mail, username), as a count.
    pub values_hunted: usize,
    /// Per table.
    pub tables: Vec<TableErased>,
    /// Whether nothing was changed.
    pub dry_run: bool,
}

/// Passes over a table before writers are deemed to keep adding the
/// person.
const MAX_PASSES: usize = 20;
/// Commit attempts when other commits come first.
const COMMIT_ATTEMPTS: usize = 10;
/// A file no commit names is a write in flight for this long after its
/// upload; after it, an abandoned one.
const IN_FLIGHT: Duration = Duration::from_secs(3600);

/// An active file of a table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Active {
    /// Relative to the table.
    path: String,
    size: u64,
}

impl Active {
    /// Where the file of `table` is in `lake`, with its size: what the
    /// readers take.
    fn located(&self, lake: &crate::Lake, table: Table) -> (Path, u64) {
        (
            lake.path(&format!("{}/{}", table.name(), self.path)),
            self.size,
        )
    }
}

/// Forgets the person with User id `user_id` in every Delta table, hunting
/// `values` (and the name, e-mail and username their User records hold)
/// too. An id the lake does not hold is not an error: the report counts
/// zero rows.
pub async fn forget(
    tables: &DeltaTables,
    user_id: &str,
    values: &[String],
    settings: &ErasureSettings,
) -> Result<ErasureReport, ErasureError> {
    let lake = tables.lake();
    let ledger = if settings.dry_run {
        Ledger::open(lake, settings.key.as_ref()).await?
    } else {
        Ledger::open_for_erasure(lake, settings.key.as_ref()).await?
    };
    let person = ledger
        .hash(user_id)
        .unwrap_or_else(|| "(no key yet)".to_string());
    let mut hunt = Hunt::new(user_id);
    for value in values {
        if !hunt.learn(value) {
            tracing::warn!("a value shorter than 3 characters is not hunted in free text");
        }
    }
    learn_from_users(tables, &mut hunt).await?;
    let mut erasure = Erasure {
        person: person.clone(),
        values: hunt
            .hunted()
            .iter()
            .filter_map(|value| ledger.hash_value(value))
            .collect(),
        started_at: Utc::now(),
        finished_at: None,
        tables: Vec::new(),
    };
    if !settings.dry_run {
        // First: from here on every writer erases the person.
        Ledger::record(lake, &erasure).await?;
    }
    let settle_at = tokio::time::Instant::now() + settings.writers_settle;
    tracing::info!(
        values = hunt.values(),
        dry_run = settings.dry_run,
        "erasure started"
    );
    for table in Table::all() {
        let done = forget_in_table(tables, table, &hunt, settings, settle_at).await?;
        tracing::info!(
            table = table.name(),
            files_read = done.files_read,
            files_rewritten = done.files_rewritten,
            rows_deleted = done.rows_deleted,
            rows_redacted = done.rows_redacted,
            stale_files_deleted = done.stale_files_deleted,
            log_objects_removed = done.log_objects_removed,
            "table done"
        );
        erasure.tables.push(done);
    }
    if !settings.dry_run {
        erasure.finished_at = Some(Utc::now());
        Ledger::record(lake, &erasure).await?;
    }
    Ok(ErasureReport {
        person,
        values_hunted: hunt.values(),
        tables: erasure.tables,
        dry_run: settings.dry_run,
    })
}

/// Adds the name, e-mail and username of the person's User records.
async fn learn_from_users(tables: &DeltaTables, hunt: &mut Hunt) -> Result<(), ErasureError> {
    let table = Table::Records(Resource::Users);
    let Some(current) = tables.latest(table).await? else {
        return Ok(());
    };
    let lake = tables.lake();
    let files: Vec<(Path, u64)> = active(&current, table)?
        .into_iter()
        .map(|f| f.located(lake, table))
        .collect();
    let mut learned = Vec::new();
    each_batch(
        lake,
        &files,
        &["object_id", "id", "name", "email", "username"],
        |_, batch| {
            let column = |name: &str| batch.column_by_name(name).map(crate::reading::texts);
            let (objects, ids) = (column("object_id"), column("id"));
            let values: Vec<_> = ["name", "email", "username"]
                .iter()
                .filter_map(|name| column(name))
                .collect();
            for row in 0..batch.num_rows() {
                let named = |texts: &Option<Vec<Option<&str>>>| {
                    texts
                        .as_ref()
                        .and_then(|t| t.get(row).copied().flatten())
                        .is_some_and(|id| hunt.is_id(id))
                };
                if named(&objects) || named(&ids) {
                    learned.extend(values.iter().filter_map(|v| v[row].map(str::to_string)));
                }
            }
            true
        },
    )
    .await
    .map_err(|error| ErasureError::File {
        table: table.name(),
        path: "(users)".into(),
        reason: error.to_string(),
    })?;
    for value in learned {
        hunt.learn(&value);
    }
    Ok(())
}

/// The active files of `current`.
fn active(current: &DeltaTable, table: Table) -> Result<Vec<Active>, ErasureError> {
    let state = current.snapshot().map_err(DeltaError::of(table))?;
    let mut files = Vec::new();
    for file in state.log_data().iter() {
        if file.deletion_vector_descriptor().is_some() {
            return Err(ErasureError::DeletionVector {
                table: table.name(),
            });
        }
        files.push(Active {
            path: file.path().to_string(),
            size: file.size().max(0) as u64,
        });
    }
    Ok(files)
}

/// What one file holds of the person.
#[derive(Debug, Default, Clone, Copy)]
struct Found {
    deleted: usize,
    redacted: usize,
}

impl Found {
    fn names_person(self) -> bool {
        self.deleted + self.redacted > 0
    }
}

/// Forgets the person in one table, pass after pass, until a pass finds
/// them in no file; then cleans the log.
async fn forget_in_table(
    tables: &DeltaTables,
    table: Table,
    hunt: &Hunt,
    settings: &ErasureSettings,
    settle_at: tokio::time::Instant,
) -> Result<TableErased, ErasureError> {
    let mut done = TableErased {
        table: table.name().to_string(),
        ..TableErased::default()
    };
    if tables.latest(table).await?.is_none() {
        return Ok(done);
    }
    // Files known not to name the person: read once, or written by this
    // erasure.
    let mut clean: HashSet<String> = HashSet::new();
    let mut settled = false;
    for _ in 0..MAX_PASSES {
        let current = tables.latest(table).await?.expect("read above");
        let unread: Vec<Active> = active(&current, table)?
            .into_iter()
            .filter(|f| !clean.contains(&f.path))
            .collect();
        let found = find(tables, table, hunt, &unread).await?;
        done.files_read += unread.len();
        let mut holders = Vec::new();
        for (file, found) in unread.into_iter().zip(found) {
            if found.names_person() {
                holders.push((file, found));
            } else {
                clean.insert(file.path);
            }
        }
        let statistics = stale_statistics(&current, table)?;
        if settings.dry_run {
            count(&mut done, &holders);
            done.statistics_cleared = statistics.len();
            settled = true;
            break;
        }
        if holders.is_empty() && statistics.is_empty() {
            if tokio::time::Instant::now() < settle_at {
                // Writers that have not read the ledger yet may still
                // commit what names the person: read again after them.
                tokio::time::sleep_until(settle_at).await;
                continue;
            }
            settled = true;
            break;
        }
        let mut written = Vec::new();
        for (file, _) in &holders {
            if let Some(rewritten) = rewrite(tables, table, hunt, file, settings).await? {
                clean.insert(rewritten.path.in_table());
                written.push(rewritten);
            }
        }
        let replaced: Vec<Active> = holders.iter().map(|(f, _)| f.clone()).collect();
        match commit(tables, table, &replaced, &written).await? {
            Some(cleared) => {
                count(&mut done, &holders);
                done.statistics_cleared += cleared;
                let lake = tables.lake();
                for file in &replaced {
                    let (location, _) = file.located(lake, table);
                    delete(lake, &location).await?;
                }
                if holders.is_empty() && tokio::time::Instant::now() >= settle_at {
                    settled = true;
                    break;
                }
            }
            None => {
                // A commit in between removed a file this one replaces:
                // the rewrites go, the table is read again.
                let lake = tables.lake();
                for file in &written {
                    clean.remove(&file.path.in_table());
                    delete(lake, &lake.path(&file.path.in_lake())).await?;
                }
            }
        }
    }
    if !settled {
        return Err(ErasureError::Unsettled {
            table: table.name(),
            passes: MAX_PASSES,
        });
    }
    let current = tables.latest(table).await?.expect("read above");
    let (deleted, in_flight) = sweep(tables, table, hunt, &current, settings.dry_run).await?;
    done.stale_files_deleted = deleted;
    if in_flight > 0 {
        return Err(ErasureError::InFlight {
            table: table.name(),
            files: in_flight,
        });
    }
    if !settings.dry_run {
        done.log_objects_removed = purge_log(tables, table).await?;
    }
    telemetry::erased_rows(table, "deleted", done.rows_deleted);
    telemetry::erased_rows(table, "redacted", done.rows_redacted);
    Ok(done)
}

fn count(done: &mut TableErased, holders: &[(Active, Found)]) {
    done.files_rewritten += holders.len();
    done.bytes_rewritten += holders.iter().map(|(f, _)| f.size).sum::<u64>();
    done.rows_deleted += holders.iter().map(|(_, f)| f.deleted).sum::<usize>();
    done.rows_redacted += holders.iter().map(|(_, f)| f.redacted).sum::<usize>();
}

/// What each of `files` (relative to the table) holds of the person.
async fn find(
    tables: &DeltaTables,
    table: Table,
    hunt: &Hunt,
    files: &[Active],
) -> Result<Vec<Found>, ErasureError> {
    let lake = tables.lake();
    let located: Vec<(Path, u64)> = files.iter().map(|f| f.located(lake, table)).collect();
    let mut found = vec![Found::default(); files.len()];
    let opened = in_order(lake, &located, None);
    futures::pin_mut!(opened);
    let mut index = 0;
    while let Some(file) = opened.next().await {
        let failed = |reason: String| ErasureError::File {
            table: table.name(),
            path: files[index].path.clone(),
            reason,
        };
        let mut batches = file.map_err(|e| failed(e.to_string()))?;
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(|e| failed(e.to_string()))?;
            if let Some(forgotten) =
                forget_in_batch(table, hunt, &batch).map_err(|e| failed(e.to_string()))?
            {
                found[index].deleted += forgotten.deleted;
                found[index].redacted += forgotten.redacted;
            }
        }
        index += 1;
        if index % 100 == 0 {
            tracing::info!(
                table = table.name(),
                files_read = index,
                of = files.len(),
                "reading"
            );
        }
    }
    Ok(found)
}

/// `file` rewritten with the person forgotten, uploaded; None when no row
/// is left.
async fn rewrite(
    tables: &DeltaTables,
    table: Table,
    hunt: &Hunt,
    file: &Active,
    settings: &ErasureSettings,
) -> Result<Option<DataFile>, ErasureError> {
    let lake = tables.lake();
    let failed = |reason: String| ErasureError::File {
        table: table.name(),
        path: file.path.clone(),
        reason,
    };
    let Some(original) = DataPath::parse_in_table(table, &file.path) else {
        return Err(failed("not in a dt= folder".into()));
    };
    let located = [file.located(lake, table)];
    let mut writer: Option<ArrowWriter<Vec<u8>>> = None;
    let mut rows = 0;
    let opened = in_order(lake, &located, None);
    futures::pin_mut!(opened);
    while let Some(batches) = opened.next().await {
        let mut batches = batches.map_err(|e| failed(e.to_string()))?;
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(|e| failed(e.to_string()))?;
            let kept =
                match forget_in_batch(table, hunt, &batch).map_err(|e| failed(e.to_string()))? {
                    Some(forgotten) => forgotten.batch,
                    None => batch,
                };
            let writer = match &mut writer {
                Some(writer) => writer,
                None => writer.insert(
                    ArrowWriter::try_new(
                        Vec::new(),
                        kept.schema(),
                        Some(properties(settings.compression)),
                    )
                    .map_err(|e| failed(e.to_string()))?,
                ),
            };
            rows += kept.num_rows();
            writer.write(&kept).map_err(|e| failed(e.to_string()))?;
        }
    }
    let Some(writer) = writer.filter(|_| rows > 0) else {
        return Ok(None);
    };
    let bytes = bytes::Bytes::from(writer.into_inner().map_err(|e| failed(e.to_string()))?);
    loop {
        let path = DataPath {
            table,
            date: original.date,
            stem: stems::compacted(),
        };
        match lake
            .put(&lake.path(&path.in_lake()), bytes.clone(), &settings.upload)
            .await?
        {
            Put::Created => {
                return Ok(Some(DataFile {
                    stats: Some(crate::statistics::delta_stats(table, &bytes, rows)),
                    path,
                    size: bytes.len(),
                    rows,
                }))
            }
            Put::AlreadyExisted => continue,
        }
    }
}

/// The `add`s of `current`'s files whose statistics hold bounds of a
/// personal column, re-added without them.
fn stale_statistics(current: &DeltaTable, table: Table) -> Result<Vec<Add>, ErasureError> {
    let state = current.snapshot().map_err(DeltaError::of(table))?;
    let now = Utc::now().timestamp_millis();
    Ok(state
        .log_data()
        .iter()
        .filter_map(|file| {
            let stats = without_personal_bounds(table, &file.stats()?)?;
            Some(Add {
                path: file.path().to_string(),
                partition_values: file.partition_values_map(),
                size: file.size(),
                modification_time: now,
                data_change: false,
                stats: Some(stats),
                tags: None,
                deletion_vector: None,
                base_row_id: None,
                default_row_commit_version: None,
                clustering_provider: None,
            })
        })
        .collect())
}

/// Commits the replacement of `replaced` by `written`, with the statistics
/// of every other file cleared of personal bounds; how many files' were,
/// or None when a commit in between removed one of those files.
async fn commit(
    tables: &DeltaTables,
    table: Table,
    replaced: &[Active],
    written: &[DataFile],
) -> Result<Option<usize>, ErasureError> {
    for _ in 0..COMMIT_ATTEMPTS {
        let current = tables.latest(table).await?.expect("read before");
        let paths: HashSet<String> = active(&current, table)?
            .into_iter()
            .map(|f| f.path)
            .collect();
        if replaced.iter().any(|f| !paths.contains(&f.path)) {
            return Ok(None);
        }
        let replaced_paths: HashSet<&str> = replaced.iter().map(|f| f.path.as_str()).collect();
        let cleared: Vec<Add> = stale_statistics(&current, table)?
            .into_iter()
            .filter(|add| !replaced_paths.contains(add.path.as_str()))
            .collect();
        let cleared_count = cleared.len();
        let deleted_at = Utc::now().timestamp_millis();
        let mut actions: Vec<Action> = replaced
            .iter()
            .map(|file| {
                let date = DataPath::parse_in_table(table, &file.path).map(|p| p.date);
                Action::Remove(Remove {
                    path: file.path.clone(),
                    data_change: true,
                    deletion_timestamp: Some(deleted_at),
                    extended_file_metadata: Some(true),
                    partition_values: date.map(partition_values),
                    size: Some(file.size as i64),
                    tags: None,
                    deletion_vector: None,
                    base_row_id: None,
                    default_row_commit_version: None,
                })
            })
            .collect();
        actions.extend(written.iter().map(|f| Action::Add(add_action(f, true))));
        actions.extend(cleared.into_iter().map(Action::Add));
        let state = current.snapshot().map_err(DeltaError::of(table))?;
        let committed = CommitBuilder::from(commit_properties(0))
            .with_actions(actions)
            .build(
                Some(state),
                current.log_store(),
                // No predicate: it would put the person in the log.
                DeltaOperation::Delete { predicate: None },
            )
            .await;
        match committed {
            Ok(_) => return Ok(Some(cleared_count)),
            Err(DeltaTableError::Transaction {
                source: TransactionError::MaxCommitAttempts(_),
            })
            | Err(DeltaTableError::VersionAlreadyExists(_)) => continue,
            Err(error) => return Err(DeltaError::of(table)(error).into()),
        }
    }
    Ok(None)
}

async fn delete(lake: &crate::Lake, location: &Path) -> Result<(), ErasureError> {
    match lake.store().delete(location).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(error) => Err(LakeError::from(error).into()),
    }
}

/// Deletes the files under `table`'s folder that `current` does not hold
/// and that name the person: removed earlier (their tombstones kept for
/// time travel), or uploaded by a write that never committed, older than
/// [`IN_FLIGHT`]. Returns how many were deleted, and how many younger
/// uploads naming the person no commit names (yet).
async fn sweep(
    tables: &DeltaTables,
    table: Table,
    hunt: &Hunt,
    current: &DeltaTable,
    dry_run: bool,
) -> Result<(usize, usize), ErasureError> {
    let lake = tables.lake();
    let holds: HashSet<String> = active(current, table)?
        .into_iter()
        .map(|f| f.path)
        .collect();
    let tombstoned = referenced_paths(current, table).await?;
    let listed: Vec<_> = lake
        .store()
        .list(Some(&lake.path(table.name())))
        .try_collect()
        .await
        .map_err(LakeError::from)?;
    let mut out: BTreeMap<String, (Path, u64, bool, DateTime<Utc>)> = BTreeMap::new();
    let cutoff = Utc::now() - chrono::Duration::from_std(IN_FLIGHT).expect("an hour");
    for object in listed {
        let Some(path) = lake.data_path(table, &object.location) else {
            continue;
        };
        let relative = path.in_table();
        if holds.contains(&relative) {
            continue;
        }
        let settled = tombstoned.contains(&relative) || object.last_modified < cutoff;
        out.insert(
            relative,
            (object.location, object.size, settled, object.last_modified),
        );
    }
    let files: Vec<Active> = out
        .iter()
        .map(|(path, (_, size, _, _))| Active {
            path: path.clone(),
            size: *size,
        })
        .collect();
    let found = find(tables, table, hunt, &files).await?;
    // A recent file may be one a merge removed soon after its commit, whose
    // tombstone the checkpoints leave out: the commits since say so.
    let oldest_unsettled = out
        .values()
        .zip(&found)
        .filter(|((_, _, settled, _), found)| !settled && found.names_person())
        .map(|((_, _, _, modified), _)| *modified)
        .min();
    let removed = match oldest_unsettled {
        Some(oldest) => {
            let since = (oldest - chrono::Duration::minutes(5)).timestamp_millis();
            checkpoint::removed_since(
                &current.log_store(),
                current.version().unwrap_or_default(),
                since,
            )
            .await
            .map_err(DeltaError::of(table))?
        }
        None => HashSet::new(),
    };
    let (mut deleted, mut in_flight) = (0, 0);
    for ((relative, (location, _, settled, _)), found) in out.iter().zip(found) {
        if !found.names_person() {
            continue;
        }
        if !settled && !removed.contains(relative) {
            in_flight += 1;
        } else if !dry_run {
            delete(lake, location).await?;
            deleted += 1;
        } else {
            deleted += 1;
        }
    }
    Ok((deleted, in_flight))
}

/// Writes a checkpoint of `table` at its latest version and removes every
/// log entry and checkpoint before it; how many objects were removed.
async fn purge_log(tables: &DeltaTables, table: Table) -> Result<usize, ErasureError> {
    let current = tables.latest(table).await?.expect("read before");
    let version = current.version().unwrap_or_default();
    checkpoint::write(&current.log_store(), version)
        .await
        .map_err(DeltaError::of(table))?;
    // Every entry below the checkpoint, however recent.
    let cutoff = (Utc::now() + chrono::Duration::days(1)).timestamp_millis();
    let removed = cleanup_expired_logs_for(version, current.log_store().as_ref(), cutoff, None)
        .await
        .map_err(DeltaError::of(table))?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Lake;

    fn upload() -> Upload {
        Upload {
            multipart_threshold: 1 << 30,
            part_size: 16 << 20,
        }
    }

    fn settings(dry_run: bool) -> ErasureSettings {
        ErasureSettings {
            key: None,
            dry_run,
            compression: Compression::Zstd,
            upload: upload(),
            writers_settle: Duration::ZERO,
        }
    }

    fn enriched(offset: u32, resource: &str, object: &str, record: &str) -> String {
        format!(
            r#"{{"event_id":"{offset:032x}","resource":"{resource}","event":"Updated","object_id":"{object}","event_timestamp":"2025-03-01T08:00:00Z","received_at":"2025-03-01T08:00:01Z","fetched_at":"2025-03-01T08:00:02Z","status":"found","record":{record}}}"#
        )
    }

    /// Appends `records` to their tables as one batch of partition 0.
    async fn append(
        tables: &DeltaTables,
        records: &[String],
        last: i64,
        held: &mut std::collections::HashMap<Table, i64>,
    ) {
        let mut files = crate::FileSet::new(Compression::Zstd, 1 << 20);
        for text in records {
            let view = schemas::EnrichedView::from_json(text.as_bytes()).expect("decodes");
            files.push(&view, text.len(), |_| false).expect("encodes");
        }
        let origin = crate::Origin {
            topic: "t",
            partition: 0,
            first: last - records.len() as i64 + 1,
            last,
        };
        let id = crate::delta::actions::app_id("t", 0);
        for encoded in files
            .finish(&origin, crate::Naming::Unique)
            .expect("closes")
        {
            let put = tables.lake().write_file(&encoded, &upload()).await;
            assert_eq!(put.expect("writes"), Put::Created);
            let mut file = encoded.data_file();
            if encoded.path.table == Table::Records(Resource::Results) && last == 5 {
                // As an older sink wrote them: bounds of personal columns.
                file.stats = Some(r#"{"numRecords":1,"minValues":{"user_name":"Ava Hansen","id":"results/3-A"},"maxValues":{"user_name":"Noah Smith","id":"results/3-A"},"nullCount":{}}"#.into());
            }
            let appended = tables
                .append(
                    encoded.path.table,
                    &[file],
                    &id,
                    held.insert(encoded.path.table, last),
                    last,
                )
                .await
                .expect("appends");
            assert!(matches!(
                appended,
                crate::delta::log::Appended::Committed(_)
            ));
        }
    }

    /// Every text under the lake: object bytes, and each Parquet file's
    /// decoded string columns.
    async fn everything(lake: &Lake) -> String {
        let listed: Vec<_> = lake.store().list(None).try_collect().await.expect("lists");
        let mut all = String::new();
        for object in listed {
            let bytes = lake
                .store()
                .get(&object.location)
                .await
                .expect("gets")
                .bytes()
                .await
                .expect("reads");
            all.push_str(&String::from_utf8_lossy(&bytes));
            if object.location.as_ref().ends_with(".parquet") {
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 1024)
                        .expect("parquet");
                for batch in reader {
                    let batch = batch.expect("decodes");
                    all.push_str(&format!("{batch:?}"));
                    for column in batch.columns() {
                        for text in crate::reading::texts(column).into_iter().flatten() {
                            all.push_str(text);
                        }
                    }
                }
            }
        }
        all
    }

    #[tokio::test]
    async fn the_person_is_gone_from_every_file_and_log_entry_and_others_stay() {
        let lake = Lake::open("memory:///lake").expect("opens");
        let tables = DeltaTables::new(lake.clone());
        let mut held = std::collections::HashMap::new();
        let ava = r#"{"id":"users/5-A","name":"Ava Hansen","email":"ava.hansen@park.example","username":"ava12"}"#;
        let noah = r#"{"id":"users/6-A","name":"Noah Smith","email":"noah.smith@park.example","username":"noah7"}"#;
        let result = |id: u32, user: &str, name: &str| {
            format!(
                r#"{{"id":"results/{id}-A","user":{{"id":"{user}","name":"{name}"}},"score":0.9}}"#
            )
        };
        append(
            &tables,
            &[
                enriched(1, "Users", "users/5-A", ava),
                enriched(2, "Users", "users/6-A", noah),
                enriched(
                    3,
                    "Results",
                    "results/1-A",
                    &result(1, "users/5-A", "Ava Hansen"),
                ),
                enriched(
                    4,
                    "Results",
                    "results/2-A",
                    &result(2, "users/6-A", "Noah Smith"),
                ),
            ],
            3,
            &mut held,
        )
        .await;
        append(
            &tables,
            &[
                enriched(
                    5,
                    "Notes",
                    "notes/1-A",
                    r#"{"id":"notes/1-A","text":"Ask ava12 about the brakes"}"#,
                ),
                enriched(
                    6,
                    "Results",
                    "results/3-A",
                    &result(3, "users/6-A", "Noah Smith"),
                ),
            ],
            5,
            &mut held,
        )
        .await;
        for table in Table::all() {
            if tables.latest(table).await.expect("reads").is_some() {
                tables.checkpoint(table).await.expect("checkpoints");
            }
        }
        assert!(everything(&lake).await.contains("ava.hansen@park.example"));
        let dry = forget(&tables, "users/5-A", &[], &settings(true))
            .await
            .expect("runs dry");
        let results = |report: &ErasureReport, name: &str| {
            report
                .tables
                .iter()
                .find(|t| t.table == name)
                .cloned()
                .expect("a table")
        };
        assert_eq!(results(&dry, "results").rows_redacted, 1);
        assert!(
            everything(&lake).await.contains("Ava Hansen"),
            "a dry run changes nothing"
        );
        let report = forget(&tables, "5-A", &[], &settings(false))
            .await
            .expect("forgets");
        assert_eq!(report.values_hunted, 3, "name, e-mail, username learnt");
        assert_eq!(results(&report, "users").rows_deleted, 1);
        assert_eq!(results(&report, "events").rows_deleted, 1);
        assert_eq!(results(&report, "results").rows_redacted, 1);
        assert_eq!(
            results(&report, "results").files_rewritten,
            1,
            "the second batch's file is not rewritten"
        );
        assert_eq!(results(&report, "notes").rows_redacted, 1);
        assert_eq!(results(&report, "results").statistics_cleared, 1);
        let all = everything(&lake).await;
        for value in [
            "users/5-A",
            "Ava Hansen",
            "ava.hansen@park.example",
            "ava12",
        ] {
            assert!(!all.contains(value), "{value} is still in the lake");
        }
        for value in [
            "users/6-A",
            "Noah Smith",
            "noah.smith@park.example",
            "results/1-A",
        ] {
            assert!(all.contains(value), "{value} was lost");
        }
        let ledger = Ledger::open(&lake, None).await.expect("opens");
        assert!(ledger.forgets("users/5-A"));
        let erasures = Ledger::erasures(&lake).await.expect("lists");
        assert!(erasures[0].finished_at.is_some());
        // Again: nothing left to do.
        let again = forget(&tables, "users/5-A", &[], &settings(false))
            .await
            .expect("forgets");
        assert!(
            again
                .tables
                .iter()
                .all(|t| t.rows_deleted + t.rows_redacted == 0),
            "{again:?}"
        );
    }
}
