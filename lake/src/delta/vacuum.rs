//! Vacuum and log upkeep of the Delta tables: data files removed from the
//! tables (replaced by compaction) are deleted once removed longer than the
//! retention ago, files the sink uploaded for a commit that never landed
//! once older than it; the log gets a checkpoint, and commits older than the
//! log retention are removed. The checkpoint holds every
//! partition's transaction, so exactly-once survives the log cleanup.

use object_store::ObjectStoreExt;
use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use deltalake_core::operations::vacuum::VacuumMode;
use deltalake_core::protocol::checkpoints::cleanup_expired_logs_for;
use deltalake_core::DeltaTable;
use futures::TryStreamExt;
use schemas::Table;

use crate::delta::actions::commit_properties;
use crate::delta::checkpoint;
use crate::delta::error::DeltaError;
use crate::delta::log::DeltaTables;
use crate::delta::state::referenced_paths;
use crate::path::stems;
use crate::telemetry;
use deltalake_core::table::config::TablePropertiesExt;

/// What a vacuum keeps.
#[derive(Debug, Clone, Copy)]
pub struct VacuumSettings {
    /// Files out of the table for less than this are kept, so readers of
    /// recent versions (and time travel within it) still find them.
    pub retention: Duration,
    /// Commits older than this are removed from the log, once a checkpoint
    /// covers them.
    pub log_retention: Duration,
    /// Allow a retention shorter than the table's
    /// `delta.deletedFileRetentionDuration` (7 days unless set).
    pub force: bool,
}

/// What a vacuum did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vacuumed {
    /// The table.
    pub table: Table,
    /// Data files deleted.
    pub files_deleted: usize,
    /// The version the checkpoint was written at.
    pub checkpoint: u64,
    /// Commit files removed from the log.
    pub logs_removed: usize,
}

/// What a vacuum run did: the tables vacuumed, and those that failed (one
/// table's failure does not keep the others from their upkeep).
#[derive(Debug, Default)]
pub struct VacuumReport {
    /// The tables vacuumed.
    pub done: Vec<Vacuumed>,
    /// The tables that failed, and why.
    pub failed: Vec<(Table, DeltaError)>,
    /// Staged uploads left behind, deleted (see [`STAGING_AGE`]).
    pub staging_swept: usize,
}

/// How old a staged upload must be to be swept: a staged upload lives for
/// the seconds between its completion and its copy, unless a failure or a
/// crash left it.
pub(crate) const STAGING_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Vacuums every table, then checkpoints it and cleans its log.
pub async fn vacuum(tables: &DeltaTables, settings: &VacuumSettings) -> VacuumReport {
    let mut report = VacuumReport::default();
    for table in Table::all() {
        match vacuum_table(tables, table, settings).await {
            Ok(Some(done)) => report.done.push(done),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(table = table.name(), %error, "vacuum failed; the next run tries again");
                report.failed.push((table, error));
            }
        }
    }
    match tables.lake().sweep_staging(STAGING_AGE).await {
        Ok(swept) => report.staging_swept = swept,
        Err(error) => {
            tracing::warn!(%error, "sweeping staged uploads failed; the next run tries again")
        }
    }
    report
}

/// Vacuums one table: files removed from it longer than the retention ago
/// (by the time of their removal, not of their creation), then files the
/// sink wrote that no commit ever added (a commit that failed after its
/// upload), older than the retention. A file of another writer is never
/// deleted unless a commit added and later removed it.
async fn vacuum_table(
    tables: &DeltaTables,
    table: Table,
    settings: &VacuumSettings,
) -> Result<Option<Vacuumed>, DeltaError> {
    let Some(current) = tables.latest(table).await? else {
        return Ok(None);
    };
    let current = if settings.force {
        current
    } else {
        retain_as_configured(current, table, settings).await?
    };
    let retention = chrono::Duration::from_std(settings.retention).unwrap_or(chrono::Duration::MAX);
    let (current, metrics) = current
        .vacuum()
        .with_retention_period(retention)
        .with_mode(VacuumMode::Lite)
        .with_enforce_retention_duration(!settings.force)
        // The log is cleaned below, at the configured retention, not at
        // the table's by the library's commits; the library's retries (its
        // default of 15) take the appends that commit meanwhile.
        .with_commit_properties(commit_properties(VACUUM_COMMIT_RETRIES))
        .await
        .map_err(DeltaError::of(table))?;
    let orphans = delete_orphans(tables, table, &current, settings.retention).await?;
    let checkpoint = current.version().unwrap_or_default();
    crate::delta::checkpoint::write(&current.log_store(), checkpoint)
        .await
        .map_err(DeltaError::of(table))?;
    let log_retention =
        chrono::Duration::from_std(settings.log_retention).unwrap_or(chrono::Duration::MAX);
    let cutoff = Utc::now()
        .checked_sub_signed(log_retention)
        .map_or(0, |at| at.timestamp_millis());
    let logs_removed =
        cleanup_expired_logs_for(checkpoint, current.log_store().as_ref(), cutoff, None)
            .await
            .map_err(DeltaError::of(table))?;
    let files_deleted = metrics.files_deleted.len() + orphans;
    tracing::info!(
        table = table.name(),
        files_deleted,
        checkpoint,
        logs_removed,
        "vacuumed"
    );
    telemetry::vacuumed(files_deleted);
    Ok(Some(Vacuumed {
        table,
        files_deleted,
        checkpoint,
        logs_removed,
    }))
}

/// Retries of the vacuum's own commits (and its property commit) when
/// appends commit meanwhile: the library's default.
const VACUUM_COMMIT_RETRIES: usize = 15;

/// `current` with its `delta.deletedFileRetentionDuration` at the vacuum
/// retention and its `delta.logRetentionDuration` at the log retention,
/// committing them where they differ. The first keeps every tombstone in
/// the checkpoints until the vacuum deletes its file (checkpoints drop
/// older ones, which a vacuum would then never see) and lets a retention
/// under the default 7 days pass the library's check; the second keeps the
/// library's own log cleanup at the configured retention.
async fn retain_as_configured(
    current: DeltaTable,
    table: Table,
    settings: &VacuumSettings,
) -> Result<DeltaTable, DeltaError> {
    let snapshot = current.snapshot().map_err(DeltaError::of(table))?;
    let properties = snapshot.table_config();
    let wanted = [
        (
            "delta.deletedFileRetentionDuration",
            properties.deleted_file_retention_duration(),
            settings.retention,
        ),
        (
            "delta.logRetentionDuration",
            properties.log_retention_duration(),
            settings.log_retention,
        ),
    ];
    let changed: HashMap<String, String> = wanted
        .iter()
        .filter(|(_, found, configured)| found != configured)
        .map(|(key, _, configured)| ((*key).to_string(), interval(*configured)))
        .collect();
    if changed.is_empty() {
        return Ok(current);
    }
    tracing::info!(
        table = table.name(),
        ?changed,
        "setting the table's retention properties"
    );
    current
        .set_tbl_properties()
        .with_properties(changed)
        .with_raise_if_not_exists(false)
        .with_commit_properties(commit_properties(VACUUM_COMMIT_RETRIES))
        .await
        .map_err(DeltaError::of(table))
}

/// `duration` as a Delta table property's interval, in days when whole.
fn interval(duration: Duration) -> String {
    const DAY: u64 = 24 * 3600;
    match duration.as_secs() {
        secs if secs > 0 && secs % DAY == 0 => format!("interval {} days", secs / DAY),
        secs => format!("interval {secs} seconds"),
    }
}

/// Deletes the sink's own data files that neither the table nor its
/// tombstones name, last modified longer than `retention` ago.
async fn delete_orphans(
    tables: &DeltaTables,
    table: Table,
    current: &DeltaTable,
    retention: Duration,
) -> Result<usize, DeltaError> {
    let known = referenced_paths(current, table).await?;
    let lake = tables.lake();
    // Plain Parquet history the log no longer names was compacted away;
    // while a conversion runs, it may be history not added yet.
    let converting = super::conversion_unfinished(lake)
        .await
        .map_err(|error| DeltaError::store(table, error))?;
    let ours = |stem: &str| {
        stems::written_by_sink(stem) || (!converting && stems::plain_range(stem).is_some())
    };
    let folder = lake.path(table.name());
    let store_error = |error: object_store::Error| DeltaError::of(table)(error.into());
    let listed: Vec<_> = lake
        .store()
        .list(Some(&folder))
        .try_collect()
        .await
        .map_err(store_error)?;
    // A file removed soon after its addition has no tombstone in the
    // checkpoints (see `checkpoint`): judged by its age, it is kept that
    // much longer, so no file leaves sooner than the retention after its
    // removal.
    let cutoff = Utc::now()
        - chrono::Duration::from_std(retention + checkpoint::SHORT_LIVED)
            .unwrap_or(chrono::Duration::MAX);
    let mut deleted = 0;
    for object in listed {
        let Some(path) = lake.data_path(table, &object.location) else {
            continue;
        };
        if !ours(&path.stem) || known.contains(&path.in_table()) || object.last_modified >= cutoff {
            continue;
        }
        lake.store()
            .delete(&object.location)
            .await
            .map_err(store_error)?;
        tracing::debug!(path = %object.location, "unreferenced file deleted");
        deleted += 1;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_file::DataFile;
    use crate::delta::actions::{app_id, partition_values};
    use crate::path::DataPath;
    use crate::store::Lake;
    use deltalake_core::kernel::transaction::CommitBuilder;
    use deltalake_core::kernel::{Action, Remove};
    use deltalake_core::protocol::DeltaOperation;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    /// Appends `files` to `events` as partition 0 of topic `t`, up to
    /// offset `last`.
    async fn appended(tables: &DeltaTables, files: &[DataFile], last: i64) {
        let appended = tables
            .append(Table::Events, files, &app_id("t", 0), None, last)
            .await
            .expect("appends");
        assert!(matches!(
            appended,
            crate::delta::log::Appended::Committed(_)
        ));
    }

    fn data_file(stem: &str) -> DataFile {
        DataFile {
            path: DataPath {
                table: Table::Events,
                date: chrono::NaiveDate::from_ymd_opt(2025, 3, 1).expect("a date"),
                stem: stem.into(),
            },
            size: 1,
            rows: 1,
            stats: None,
        }
    }

    /// Vacuums every table with a week's retention, expecting no failure.
    async fn vacuum_a_week(tables: &DeltaTables) {
        let settings = VacuumSettings {
            retention: 7 * DAY,
            log_retention: 30 * DAY,
            force: false,
        };
        let report = vacuum(tables, &settings).await;
        assert!(report.failed.is_empty(), "{:?}", report.failed);
    }

    /// Writes the file and dates it `age` back.
    fn place(root: &std::path::Path, file: &DataFile, age: Duration) {
        let path = root.join(file.path.in_lake());
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("mkdir");
        std::fs::write(&path, b"x").expect("write");
        let old = std::time::SystemTime::now() - age;
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(old))
            .expect("dated");
    }

    /// A retention under the default 7 days no longer fails every run,
    /// and the table keeps tombstones and log entries as long as the
    /// vacuum and the log retention say.
    #[tokio::test]
    async fn the_table_keeps_what_the_retentions_say() {
        let tables = DeltaTables::new(Lake::open("memory:///lake").expect("opens"));
        appended(&tables, &[data_file("0-0-9-0a0b0c0d")], 9).await;
        let settings = VacuumSettings {
            retention: DAY,
            log_retention: 90 * DAY,
            force: false,
        };
        let report = vacuum(&tables, &settings).await;
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        let current = tables
            .latest(Table::Events)
            .await
            .expect("reads")
            .expect("a table");
        let snapshot = current.snapshot().expect("a snapshot");
        let properties = snapshot.table_config();
        assert_eq!(properties.deleted_file_retention_duration(), DAY);
        assert_eq!(properties.log_retention_duration(), 90 * DAY);
        let version = current.version();
        let again = vacuum(&tables, &settings).await;
        assert!(again.failed.is_empty(), "{:?}", again.failed);
        let after = tables
            .latest(Table::Events)
            .await
            .expect("reads")
            .expect("a table");
        assert_eq!(after.version(), version, "the properties are set once");
    }

    /// Plain Parquet history a conversion added and a compaction removed
    /// long ago (its tombstone gone from the checkpoints) is deleted once
    /// the log no longer names it, but never while a conversion is
    /// unfinished (it may be history not added yet).
    #[tokio::test]
    async fn converted_history_the_log_no_longer_names_is_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(dir.path().to_str().expect("utf8")).expect("opens");
        let tables = DeltaTables::new(lake.clone());
        let active = data_file("0-0-9-0a0b0c0d");
        let history = data_file("t+0+00000000000000000000+00000000000000000009");
        for file in [&active, &history] {
            place(dir.path(), file, 10 * DAY);
        }
        appended(&tables, std::slice::from_ref(&active), 9).await;
        let settings = VacuumSettings {
            retention: 7 * DAY,
            log_retention: 30 * DAY,
            force: false,
        };
        let exists = |file: &DataFile| dir.path().join(file.path.in_lake()).exists();
        let marker = super::super::conversion_marker(&lake);
        let _marked = lake
            .create(&marker, bytes::Bytes::new())
            .await
            .expect("marks");
        let report = vacuum(&tables, &settings).await;
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        assert!(exists(&history), "deleted during a conversion");
        lake.store().delete(&marker).await.expect("unmarks");
        let report = vacuum(&tables, &settings).await;
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        assert!(!exists(&history), "unnamed history kept");
        assert!(exists(&active), "active");
    }

    #[tokio::test]
    async fn files_outlive_their_removal_by_the_retention_and_foreign_files_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tables =
            DeltaTables::new(Lake::open(dir.path().to_str().expect("utf8")).expect("opens"));
        let (removed, kept) = (data_file("0-0-9-0a0b0c0d"), data_file("0-10-19-0a0b0c0e"));
        let orphan = data_file("0-20-29-0a0b0c0f");
        let foreign = data_file("part-00000-written-by-spark");
        for file in [&removed, &kept, &orphan, &foreign] {
            place(dir.path(), file, 10 * DAY);
        }
        appended(&tables, &[removed.clone(), kept.clone()], 19).await;
        // Compacted away now, ten days after it was written.
        let current = tables
            .latest(Table::Events)
            .await
            .expect("reads")
            .expect("a table");
        let remove = Action::Remove(Remove {
            path: removed.path.in_table(),
            data_change: true,
            deletion_timestamp: Some(Utc::now().timestamp_millis()),
            extended_file_metadata: Some(true),
            partition_values: Some(partition_values(removed.path.date)),
            size: Some(1),
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
        });
        CommitBuilder::from(commit_properties(0))
            .with_actions(vec![remove])
            .build(
                Some(current.snapshot().expect("a snapshot")),
                current.log_store(),
                DeltaOperation::Delete { predicate: None },
            )
            .await
            .expect("commits");
        vacuum_a_week(&tables).await;
        let exists = |file: &DataFile| dir.path().join(file.path.in_lake()).exists();
        assert!(exists(&removed), "removed now: kept for the retention");
        assert!(exists(&kept), "active");
        assert!(
            !exists(&orphan),
            "the sink's own upload that no commit added"
        );
        assert!(exists(&foreign), "another writer's file");
    }

    /// A file removed within the hour of its addition gets no tombstone in
    /// the checkpoint; judged by its age, it still outlives its removal by
    /// the retention, and leaves once that passed. A file removed long after
    /// its addition keeps its tombstone.
    #[tokio::test]
    async fn short_lived_files_have_no_tombstones_and_still_outlive_their_removal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tables =
            DeltaTables::new(Lake::open(dir.path().to_str().expect("utf8")).expect("opens"));
        let minutes = |n: u64| Duration::from_secs(60 * n);
        let brief = data_file("0-0-9-0a0b0c0d");
        let stale = data_file("0-10-19-0a0b0c0e");
        let long = data_file("0-20-29-0a0b0c0f");
        // Written, then removed half an hour later: six days 23 h 50 min
        // ago, and seven days 1 h 30 min ago. The third, three days ago,
        // removed now.
        let written = [
            (&brief, 7 * DAY + minutes(20), minutes(30)),
            (&stale, 7 * DAY + minutes(120), minutes(30)),
            (&long, 3 * DAY, 3 * DAY),
        ];
        for (file, age, _) in written {
            place(dir.path(), file, age);
        }
        appended(&tables, &[brief.clone(), stale.clone(), long.clone()], 29).await;
        let current = tables
            .latest(Table::Events)
            .await
            .expect("reads")
            .expect("a table");
        let now = Utc::now().timestamp_millis();
        let removes = written
            .iter()
            .map(|(file, age, lived)| {
                let added = now - age.as_millis() as i64;
                Action::Remove(Remove {
                    path: file.path.in_table(),
                    data_change: true,
                    deletion_timestamp: Some(added + lived.as_millis() as i64),
                    extended_file_metadata: Some(true),
                    partition_values: Some(partition_values(file.path.date)),
                    size: Some(1),
                    tags: Some(
                        [(checkpoint::ADDED_TAG.to_string(), Some(added.to_string()))]
                            .into_iter()
                            .collect(),
                    ),
                    deletion_vector: None,
                    base_row_id: None,
                    default_row_commit_version: None,
                })
            })
            .collect();
        let version = CommitBuilder::from(commit_properties(0))
            .with_actions(removes)
            .build(
                Some(current.snapshot().expect("a snapshot")),
                current.log_store(),
                DeltaOperation::Delete { predicate: None },
            )
            .await
            .expect("commits")
            .version();
        let written = checkpoint::write(&current.log_store(), version)
            .await
            .expect("checkpoints");
        // The two half-hour files' tombstones are left out (the stale one
        // has expired anyway); the long-lived one's stays.
        assert_eq!(written.files, 0);
        assert!(written.short_lived >= 1, "{written:?}");
        let reread = tables
            .latest(Table::Events)
            .await
            .expect("reads")
            .expect("a table");
        let tombstones: Vec<String> = reread
            .snapshot()
            .expect("a snapshot")
            .all_tombstones(reread.log_store().as_ref())
            .map_ok(|tombstone| tombstone.path().to_string())
            .try_collect()
            .await
            .expect("tombstones");
        assert_eq!(tombstones, vec![long.path.in_table()]);
        vacuum_a_week(&tables).await;
        let exists = |file: &DataFile| dir.path().join(file.path.in_lake()).exists();
        assert!(exists(&brief), "removed less than the retention ago");
        assert!(!exists(&stale), "removed more than the retention ago");
        assert!(exists(&long), "removed now");
    }
}
