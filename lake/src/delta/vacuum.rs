//! Vacuum and log upkeep of the Delta tables: data files no longer in the
//! tables (replaced by compaction, or left by a failed commit) are deleted
//! once older than the retention; the log gets a checkpoint, and commits
//! older than the log retention are removed. The checkpoint holds every
//! partition's transaction, so exactly-once survives the log cleanup.

use std::time::Duration;

use chrono::Utc;
use deltalake_core::operations::vacuum::VacuumMode;
use deltalake_core::protocol::checkpoints::{cleanup_expired_logs_for, create_checkpoint};
use schemas::Table;

use crate::delta::log::{DeltaError, DeltaTables};
use crate::telemetry;

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
    pub checkpoint: i64,
    /// Commit files removed from the log.
    pub logs_removed: usize,
}

/// Vacuums every table, then checkpoints it and cleans its log.
pub async fn vacuum(
    tables: &DeltaTables,
    settings: &VacuumSettings,
) -> Result<Vec<Vacuumed>, DeltaError> {
    let mut done = Vec::new();
    for table in Table::all() {
        let Some(current) = tables.latest(table).await? else {
            continue;
        };
        let retention =
            chrono::Duration::from_std(settings.retention).unwrap_or(chrono::Duration::MAX);
        let (current, metrics) = current
            .vacuum()
            .with_retention_period(retention)
            .with_mode(VacuumMode::Full)
            .with_enforce_retention_duration(!settings.force)
            .await
            .map_err(DeltaError::of(table))?;
        let checkpoint = current.version().unwrap_or_default();
        create_checkpoint(&current, None)
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
        let files_deleted = metrics.files_deleted.len();
        tracing::info!(
            table = table.name(),
            files_deleted,
            checkpoint,
            logs_removed,
            "vacuumed"
        );
        telemetry::vacuumed(files_deleted);
        done.push(Vacuumed {
            table,
            files_deleted,
            checkpoint,
            logs_removed,
        });
    }
    Ok(done)
}
