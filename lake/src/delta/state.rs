//! What a writer knows of a table between reads of its log, and what a
//! loaded state answers: a partition's transaction, the paths it names.

use std::collections::{HashMap, HashSet};

use deltalake_core::kernel::transaction::CommitBuilder;
use deltalake_core::kernel::Action;
use deltalake_core::logstore::CommitOrBytes;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableError};
use schemas::Table;

use crate::delta::actions::commit_properties;
use crate::delta::error::DeltaError;

/// Commits between two checkpoints the sink writes. Ten, not the Delta
/// default of 100: with a commit a second, a reader replays at most ten
/// commit files (each costs DuckDB about 0.7 ms, more on an object store),
/// and a checkpoint without short-lived tombstones (see `checkpoint`) is
/// small: the active files and a week of compactions' removes.
pub(crate) const CHECKPOINT_EVERY: u64 = 10;

/// What an appending writer knows of a table between reads of its log: a
/// loaded state, the last version known to exist (the state's, or a later
/// one this process committed or caught up with), and the transactions of
/// the partitions it asked about or read in entries since, at that version.
pub(crate) struct Head {
    pub(crate) state: DeltaTable,
    pub(crate) version: u64,
    pub(crate) transactions: HashMap<String, Option<i64>>,
}

impl Head {
    pub(crate) fn new(state: DeltaTable) -> Head {
        Head {
            version: state.version().unwrap_or_default(),
            state,
            transactions: HashMap::new(),
        }
    }

    /// `app_id`'s version in the loaded state, remembered.
    pub(crate) async fn read_transaction(
        &mut self,
        table: Table,
        app_id: &str,
    ) -> Result<Option<i64>, DeltaError> {
        let found = transaction_version(&self.state, table, app_id).await?;
        self.transactions.insert(app_id.to_string(), found);
        Ok(found)
    }

    /// The log entry of a blind append of `actions`, checked against the
    /// table's protocol (writer features, append-only).
    pub(crate) async fn entry(
        &self,
        table: Table,
        actions: Vec<Action>,
    ) -> Result<bytes::Bytes, DeltaError> {
        let state = self.state.snapshot().map_err(DeltaError::of(table))?;
        let prepared = CommitBuilder::from(commit_properties(0))
            .with_actions(actions)
            .build(
                Some(state),
                self.state.log_store(),
                DeltaOperation::Write {
                    mode: SaveMode::Append,
                    partition_by: None,
                    predicate: None,
                },
            )
            .into_prepared_commit_future()
            .await
            .map_err(DeltaError::of(table))?;
        match prepared.commit_or_bytes() {
            CommitOrBytes::LogBytes(bytes) => Ok(bytes.clone()),
            CommitOrBytes::TmpCommit(_) => Err(DeltaError::of(table)(DeltaTableError::Generic(
                "the log store staged the commit instead of returning its bytes".into(),
            ))),
        }
    }

    /// True when `version` is one to checkpoint after: every
    /// [`CHECKPOINT_EVERY`] commits.
    pub(crate) fn checkpoint_due(&self, version: u64) -> bool {
        (version + 1).is_multiple_of(CHECKPOINT_EVERY)
    }
}

/// The version `current` holds for `app_id`.
pub(crate) async fn transaction_version(
    current: &DeltaTable,
    table: Table,
    app_id: &str,
) -> Result<Option<i64>, DeltaError> {
    current
        .snapshot()
        .map_err(DeltaError::of(table))?
        .transaction_version(current.log_store().as_ref(), app_id)
        .await
        .map_err(DeltaError::of(table))
}

/// The paths of the data files `current` names: its files, and those
/// removed whose tombstones it still holds.
pub(crate) async fn referenced_paths(
    current: &DeltaTable,
    table: Table,
) -> Result<HashSet<String>, DeltaError> {
    use futures::TryStreamExt;
    let state = current.snapshot().map_err(DeltaError::of(table))?;
    let mut known: HashSet<String> = state
        .log_data()
        .iter()
        .map(|file| file.path().to_string())
        .collect();
    let tombstones: Vec<String> = state
        .all_tombstones(current.log_store().as_ref())
        .map_ok(|tombstone| tombstone.path().to_string())
        .try_collect()
        .await
        .map_err(DeltaError::of(table))?;
    known.extend(tombstones);
    Ok(known)
}
