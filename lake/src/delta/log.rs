//! The lake's tables as Delta Lake tables. A batch's files for a table become
//! visible in one commit, which also records the batch's topic partition and
//! last offset as an application transaction: the next owner of the
//! partition reads that version back and skips what the table already holds.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake_core::kernel::{
    Action, Add, DataType as DeltaType, MetadataExt, PrimitiveType, StructField, StructType,
    Transaction,
};
use deltalake_core::logstore::{default_logstore, LogStoreRef, StorageConfig};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableConfig, DeltaTableError};
use schemas::Table;

use crate::data_file::DataFile;
use crate::path::{partition_value, PARTITION_COLUMN};
use crate::store::Lake;
use crate::telemetry;

/// Why a Delta table could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("delta table {table}: {source}")]
    /// The Delta library or the store behind it failed.
    Table {
        /// The table's name.
        table: &'static str,
        /// Why.
        source: Box<DeltaTableError>,
    },
    #[error("delta table {table}: column {column} is {found} in the table but {wanted} in the sink's schema; the sink cannot write it. Write this version of the pipeline to a new LAKE_URL prefix, or rewrite the table with the new type (e.g. in Spark or DuckDB) and restart")]
    /// A column's type in the table differs from the sink's.
    SchemaConflict {
        /// The table's name.
        table: &'static str,
        /// The column.
        column: String,
        /// Its type in the table.
        found: String,
        /// Its type in the sink's schema.
        wanted: String,
    },
    #[error("delta table {table}: the schema does not convert: {reason}")]
    /// A column type has no Delta equivalent.
    Schema {
        /// The table's name.
        table: &'static str,
        /// Why.
        reason: String,
    },
}

impl DeltaError {
    pub(crate) fn of(table: Table) -> impl FnOnce(DeltaTableError) -> DeltaError {
        move |source| DeltaError::Table {
            table: table.name(),
            source: Box::new(source),
        }
    }

    /// True when repeating the request cannot help: the store refuses the
    /// credentials, or the log holds something this sink cannot use.
    pub fn is_permanent(&self) -> bool {
        match self {
            DeltaError::Schema { .. } | DeltaError::SchemaConflict { .. } => true,
            DeltaError::Table { source, .. } => match source.as_ref() {
                DeltaTableError::ObjectStore { source } => matches!(
                    source,
                    object_store::Error::PermissionDenied { .. }
                        | object_store::Error::Unauthenticated { .. }
                ),
                // A log this sink cannot use (features it does not
                // support, entries it cannot read): repeating cannot help.
                DeltaTableError::InvalidTableLocation(_)
                | DeltaTableError::MissingFeature { .. }
                | DeltaTableError::SchemaMismatch { .. }
                | DeltaTableError::InvalidJsonLog { .. }
                | DeltaTableError::InvalidData { .. }
                | DeltaTableError::InvalidVersion(_)
                | DeltaTableError::Transaction {
                    source:
                        TransactionError::UnsupportedTableFeatures(_)
                        | TransactionError::TableFeaturesRequired(_)
                        | TransactionError::DeltaTableAppendOnly,
                } => true,
                _ => false,
            },
        }
    }
}

/// The properties of every commit of the sink: at most `retries` retries
/// by the library, and no log cleanup after the commit. The cleanup lists
/// the whole log, a cost that grows with the table's age; it belongs to the
/// upkeep (see `vacuum.rs`). The library's checkpoint every 100 commits
/// stays: without it, each reload of the table replays every commit since
/// the last checkpoint. A checkpoint that fails after its commit landed
/// makes the commit be retried, which then finds the transaction there.
pub(crate) fn commit_properties(retries: usize) -> CommitProperties {
    CommitProperties::default()
        .with_max_retries(retries)
        .with_cleanup_expired_logs(Some(false))
}

/// The `add` action of `file`.
pub(crate) fn add_action(file: &DataFile, data_change: bool) -> Add {
    Add {
        path: file.path.in_table(),
        partition_values: partition_values(file.path.date),
        size: file.size as i64,
        modification_time: chrono::Utc::now().timestamp_millis(),
        data_change,
        stats: Some(
            file.stats
                .clone()
                .unwrap_or_else(|| format!(r#"{{"numRecords":{}}}"#, file.rows)),
        ),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    }
}

/// The partition values of a file of `date`.
pub(crate) fn partition_values(date: NaiveDate) -> HashMap<String, Option<String>> {
    HashMap::from([(PARTITION_COLUMN.to_string(), Some(partition_value(date)))])
}

/// How an append ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Appended {
    /// The files are in the table, at this table version.
    Committed(i64),
    /// The table already holds the partition up to the batch's last offset
    /// (another member committed the same records): nothing was added.
    AlreadyThere,
    /// The partition's transaction moved since the batch started, to a
    /// version short of the batch's end: another member consumes it.
    Superseded(Option<i64>),
}

/// The application id of a topic partition's transactions.
pub(crate) fn app_id(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}")
}

/// A Delta table of the lake: its log store, and its latest loaded state.
pub struct DeltaTables {
    lake: Lake,
    loaded: tokio::sync::Mutex<BTreeMap<Table, DeltaTable>>,
    /// Tables whose schema this process has checked against the sink's.
    conformed: tokio::sync::Mutex<std::collections::BTreeSet<Table>>,
}

/// Commit attempts for blind appends that collide with other writers'
/// commits (other partitions' appends do not conflict and are retried by
/// the library with a conflict check).
const APPEND_RETRIES: usize = 15;

impl DeltaTables {
    /// The Delta tables under `lake`.
    pub fn new(lake: Lake) -> Self {
        DeltaTables {
            lake,
            loaded: Default::default(),
            conformed: Default::default(),
        }
    }

    /// The lake the tables live in.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// The log store of `table`: commits are create-only puts (If-None-Match
    /// on S3), so concurrent writers need no lock table.
    pub fn log_store(&self, table: Table) -> LogStoreRef {
        let (prefixed, root, url) = self.lake.folder(table.name());
        default_logstore(prefixed, root, &url, &StorageConfig::default())
    }

    /// `table` at its latest version, or None when it does not exist yet.
    pub async fn latest(&self, table: Table) -> Result<Option<DeltaTable>, DeltaError> {
        let mut loaded = self.loaded.lock().await;
        let current = match loaded.remove(&table) {
            Some(mut current) => {
                current
                    .update_state()
                    .await
                    .map_err(DeltaError::of(table))?;
                current
            }
            None => {
                let mut fresh = DeltaTable::new(self.log_store(table), DeltaTableConfig::default());
                match fresh.load().await {
                    Ok(()) => fresh,
                    Err(DeltaTableError::NotATable(_)) => return Ok(None),
                    Err(error) => return Err(DeltaError::of(table)(error)),
                }
            }
        };
        loaded.insert(table, current.clone());
        Ok(Some(current))
    }

    /// `table` at its latest version, created (empty, partitioned by `dt`)
    /// when missing.
    pub(crate) async fn latest_or_created(&self, table: Table) -> Result<DeltaTable, DeltaError> {
        if let Some(current) = self.latest(table).await? {
            let mut conformed = self.conformed.lock().await;
            if conformed.contains(&table) {
                return Ok(current);
            }
            return match conform_schema(table, &current).await? {
                Conformed::Already => {
                    conformed.insert(table);
                    Ok(current)
                }
                Conformed::Evolved => {
                    conformed.insert(table);
                    Ok(self.latest(table).await?.unwrap_or(current))
                }
                Conformed::Raced => Ok(current),
            };
        }
        let created = create_table(table, self.log_store(table)).await;
        match created {
            Ok(_) => tracing::info!(table = table.name(), "delta table created"),
            // Another writer created it first.
            Err(DeltaTableError::VersionAlreadyExists(_))
            | Err(DeltaTableError::Transaction {
                source: TransactionError::VersionAlreadyExists(_),
            }) => {}
            Err(error) => return Err(DeltaError::of(table)(error)),
        }
        self.latest(table)
            .await?
            .ok_or_else(|| DeltaError::of(table)(DeltaTableError::NotInitialized))
    }

    /// The last offset of `app_id`'s partition that `table` holds.
    pub(crate) async fn version_of(
        &self,
        table: Table,
        app_id: &str,
    ) -> Result<Option<i64>, DeltaError> {
        let Some(current) = self.latest(table).await? else {
            return Ok(None);
        };
        transaction_version(&current, table, app_id).await
    }

    /// Adds `files` to `table` in one commit with the transaction
    /// (`app_id`, `version`), provided the partition's transaction is still
    /// at `expected`, the version the batch's records were filtered against.
    /// Concurrent appends of other partitions are retried; a concurrent
    /// commit of the same partition is re-examined.
    pub(crate) async fn append(
        &self,
        table: Table,
        files: &[DataFile],
        app_id: &str,
        expected: Option<i64>,
        version: i64,
    ) -> Result<Appended, DeltaError> {
        loop {
            let current = self.latest_or_created(table).await?;
            let found = transaction_version(&current, table, app_id).await?;
            if found.is_some_and(|v| v >= version) {
                return Ok(Appended::AlreadyThere);
            }
            if found != expected {
                return Ok(Appended::Superseded(found));
            }
            let mut actions: Vec<Action> = files
                .iter()
                .map(|f| Action::Add(add_action(f, true)))
                .collect();
            actions.push(Action::Txn(Transaction::new(app_id, version)));
            let state = current.snapshot().map_err(DeltaError::of(table))?;
            let started = std::time::Instant::now();
            let committed = CommitBuilder::from(commit_properties(APPEND_RETRIES))
                .with_actions(actions)
                .build(
                    Some(state),
                    current.log_store(),
                    DeltaOperation::Write {
                        mode: SaveMode::Append,
                        partition_by: None,
                        predicate: None,
                    },
                )
                .await;
            match committed {
                Ok(commit) => {
                    telemetry::delta_committed(table, started.elapsed());
                    return Ok(Appended::Committed(commit.version()));
                }
                Err(DeltaTableError::Transaction {
                    source: TransactionError::CommitConflict(conflict),
                }) => {
                    telemetry::delta_conflict(table);
                    tracing::info!(table = table.name(), app_id, %conflict, "commit conflict; examining the table again");
                }
                Err(error) => return Err(DeltaError::of(table)(error)),
            }
        }
    }
}

/// Whether a table's schema had to change to take the sink's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
enum Conformed {
    Already,
    /// Columns were added in a metadata commit.
    Evolved,
    /// Another writer committed first: checked again on the next load.
    Raced,
}

/// Makes `current`'s schema hold every column of the sink's: the columns it
/// lacks (added to the data contract since the table was created) are added
/// as nullable in one metadata commit, so readers see them; a column whose
/// type differs stops the sink.
async fn conform_schema(table: Table, current: &DeltaTable) -> Result<Conformed, DeltaError> {
    let state = current.snapshot().map_err(DeltaError::of(table))?;
    let existing = state.schema();
    let mut missing = Vec::new();
    for wanted in delta_columns(table)? {
        match existing.field(wanted.name()) {
            Some(found) if found.data_type() == wanted.data_type() => {}
            Some(found) => {
                return Err(DeltaError::SchemaConflict {
                    table: table.name(),
                    column: wanted.name().clone(),
                    found: found.data_type().to_string(),
                    wanted: wanted.data_type().to_string(),
                })
            }
            None => missing.push(StructField::new(
                wanted.name().clone(),
                wanted.data_type().clone(),
                true,
            )),
        }
    }
    if missing.is_empty() {
        return Ok(Conformed::Already);
    }
    let evolved = StructType::try_new(existing.fields().cloned().chain(missing.iter().cloned()))
        .map_err(|error| DeltaError::Schema {
            table: table.name(),
            reason: error.to_string(),
        })?;
    let metadata = state
        .metadata()
        .clone()
        .with_schema(&evolved)
        .map_err(|error| DeltaError::Schema {
            table: table.name(),
            reason: error.to_string(),
        })?;
    let added: Vec<String> = missing.iter().map(|f| f.name().clone()).collect();
    let committed = CommitBuilder::from(commit_properties(0))
        .with_actions(vec![Action::Metadata(metadata)])
        .build(
            Some(state),
            current.log_store(),
            DeltaOperation::AddColumn { fields: missing },
        )
        .await;
    match committed {
        Ok(_) => {
            tracing::info!(table = table.name(), columns = ?added, "columns added to the table's schema");
            Ok(Conformed::Evolved)
        }
        // Another writer changed the table first: the next load checks again.
        Err(DeltaTableError::Transaction { .. })
        | Err(DeltaTableError::VersionAlreadyExists(_)) => {
            tracing::info!(
                table = table.name(),
                "the table changed while its schema was evolved; checked again on the next load"
            );
            Ok(Conformed::Raced)
        }
        Err(error) => Err(DeltaError::of(table)(error)),
    }
}

/// The version `current` holds for `app_id`.
async fn transaction_version(
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

/// The columns of `table` in Delta types, with the `dt` partition column.
pub(crate) fn delta_columns(table: Table) -> Result<Vec<StructField>, DeltaError> {
    let schema = table.schema();
    let converted: StructType =
        schema
            .as_ref()
            .try_into_kernel()
            .map_err(|error: arrow::error::ArrowError| DeltaError::Schema {
                table: table.name(),
                reason: error.to_string(),
            })?;
    let mut columns: Vec<StructField> = converted.fields().cloned().collect();
    columns.push(StructField::new(
        PARTITION_COLUMN,
        DeltaType::Primitive(PrimitiveType::Date),
        true,
    ));
    Ok(columns)
}

/// Creates `table`'s Delta log, version 0.
async fn create_table(table: Table, log_store: LogStoreRef) -> Result<DeltaTable, DeltaTableError> {
    let columns =
        delta_columns(table).map_err(|error| DeltaTableError::Generic(error.to_string()))?;
    deltalake_core::operations::create::CreateBuilder::new()
        .with_log_store(log_store)
        .with_table_name(table.name())
        .with_columns(columns)
        .with_partition_columns([PARTITION_COLUMN])
        .with_save_mode(SaveMode::ErrorIfExists)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> DataFile {
        DataFile {
            path: crate::path::DataPath {
                table: Table::Records(schemas::Resource::Users),
                date: NaiveDate::from_ymd_opt(2025, 3, 1).expect("a date"),
                stem: name.into(),
            },
            size: 100,
            rows: 1,
            stats: None,
        }
    }

    #[tokio::test]
    async fn appends_carry_the_partition_offset_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        for location in [
            "memory:///lake".to_string(),
            dir.path().to_str().expect("utf8").to_string(),
        ] {
            let tables = DeltaTables::new(Lake::open(&location).expect("opens"));
            let id = app_id("mobaro.enriched", 2);
            let table = Table::Records(schemas::Resource::Users);
            assert_eq!(tables.version_of(table, &id).await.expect("reads"), None);
            let first = tables
                .append(table, &[file("a")], &id, None, 9)
                .await
                .expect("appends");
            assert!(matches!(first, Appended::Committed(1)), "{first:?}");
            // A replay of the same batch finds it there.
            let again = tables
                .append(table, &[file("b")], &id, None, 9)
                .await
                .expect("reads");
            assert_eq!(again, Appended::AlreadyThere);
            // A batch filtered against an older version is superseded.
            let stale = tables
                .append(table, &[file("c")], &id, None, 20)
                .await
                .expect("reads");
            assert_eq!(stale, Appended::Superseded(Some(9)));
            let next = tables
                .append(table, &[file("d")], &id, Some(9), 20)
                .await
                .expect("appends");
            assert!(matches!(next, Appended::Committed(2)), "{next:?}");
            // Another process reads the same versions from the log.
            let other = DeltaTables::new(tables.lake().clone());
            assert_eq!(other.version_of(table, &id).await.expect("reads"), Some(20));
            assert_eq!(
                other.version_of(table, "other-0").await.expect("reads"),
                None
            );
        }
    }

    /// Creates `table` with only its first `columns` columns (and `dt`), as
    /// an older version of the data contract would have.
    async fn create_older(tables: &DeltaTables, table: Table, columns: usize, retype: bool) {
        let mut fields = delta_columns(table).expect("converts");
        let partition = fields.pop().expect("dt");
        fields.truncate(columns);
        if retype {
            let last = fields.pop().expect("a column");
            fields.push(StructField::new(
                last.name().clone(),
                DeltaType::Primitive(PrimitiveType::Long),
                true,
            ));
        }
        fields.push(partition);
        deltalake_core::operations::create::CreateBuilder::new()
            .with_log_store(tables.log_store(table))
            .with_table_name(table.name())
            .with_columns(fields)
            .with_partition_columns([PARTITION_COLUMN])
            .with_save_mode(SaveMode::ErrorIfExists)
            .await
            .expect("creates");
    }

    #[tokio::test]
    async fn new_columns_are_added_to_an_older_table_and_a_retyped_one_stops() {
        let tables = DeltaTables::new(Lake::open("memory:///lake").expect("opens"));
        let users = Table::Records(schemas::Resource::Users);
        create_older(&tables, users, 3, false).await;
        let current = tables.latest_or_created(users).await.expect("evolves");
        let schema = current.snapshot().expect("a snapshot").schema();
        for wanted in delta_columns(users).expect("converts") {
            assert!(
                schema.field(wanted.name()).is_some(),
                "{} missing",
                wanted.name()
            );
        }
        // Appends go on into the evolved table.
        let appended = tables
            .append(users, &[file("a")], &app_id("t", 0), None, 9)
            .await
            .expect("appends");
        assert!(matches!(appended, Appended::Committed(_)), "{appended:?}");

        let retyped = DeltaTables::new(Lake::open("memory:///other").expect("opens"));
        create_older(&retyped, users, 3, true).await;
        let refused = retyped.latest_or_created(users).await;
        assert!(
            matches!(&refused, Err(error @ DeltaError::SchemaConflict { .. }) if error.is_permanent()),
            "{refused:?}"
        );
    }
}
