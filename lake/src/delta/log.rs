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
use deltalake_core::logstore::{default_logstore, CommitOrBytes, LogStoreRef, StorageConfig};
use deltalake_core::protocol::checkpoints::create_checkpoint;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::table::config::TablePropertiesExt;
use deltalake_core::{DeltaTable, DeltaTableConfig, DeltaTableError};
use schemas::Table;

use crate::data_file::DataFile;
use crate::path::{partition_value, PARTITION_COLUMN};
use crate::store::{Lake, LakeError, Put};
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
    #[error("delta table {table}: reading or writing its log: {source}")]
    /// The store failed a read or write of the log.
    Store {
        /// The table's name.
        table: &'static str,
        /// Why.
        source: LakeError,
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

    fn store(table: Table, source: LakeError) -> DeltaError {
        DeltaError::Store {
            table: table.name(),
            source,
        }
    }

    /// True when repeating the request cannot help: the store refuses the
    /// credentials, or the log holds something this sink cannot use.
    pub fn is_permanent(&self) -> bool {
        match self {
            DeltaError::Schema { .. } | DeltaError::SchemaConflict { .. } => true,
            DeltaError::Store { source, .. } => source.is_permanent(),
            DeltaError::Table { source, .. } => match source.as_ref() {
                DeltaTableError::ObjectStore { source } => matches!(
                    source,
                    object_store::Error::PermissionDenied { .. }
                        | object_store::Error::Unauthenticated { .. }
                ),
                // A log this sink cannot use (features it does not
                // support, entries it cannot read): repeating cannot help.
                DeltaTableError::KernelError(error) => is_unreadable_log(error),
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

/// True for a kernel error that says the log asks for what this library
/// cannot do (a reader or writer feature it does not know, a protocol it
/// does not support), or is not a Delta log it can read: no retry helps.
fn is_unreadable_log(error: &delta_kernel::error::Error) -> bool {
    use delta_kernel::error::Error;
    matches!(
        error,
        Error::Unsupported(_)
            | Error::InvalidProtocol(_)
            | Error::MissingProtocol
            | Error::MissingMetadata
            | Error::MissingMetadataAndProtocol
            | Error::InvalidTableLocation(_)
            | Error::InvalidLogPath(_)
            | Error::InvalidCheckpoint(_)
            | Error::ChangeDataFeedUnsupported(_)
    )
}

/// The properties of the commits the library makes for the sink (schema
/// changes, compaction; appends write their entry themselves): at most
/// `retries` retries by the library, and no log cleanup after the commit.
/// The cleanup lists the whole log, a cost that grows with the table's age;
/// it belongs to the upkeep (see `vacuum.rs`). The library's checkpoint
/// every 100 commits stays: without it, each reload of the table replays
/// every commit since the last checkpoint.
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
    /// What the appends know of each table, one writer at a time per table.
    heads: BTreeMap<Table, tokio::sync::Mutex<Option<Head>>>,
    /// Tables whose schema this process has checked against the sink's.
    conformed: tokio::sync::Mutex<std::collections::BTreeSet<Table>>,
}

impl DeltaTables {
    /// The Delta tables under `lake`.
    pub fn new(lake: Lake) -> Self {
        DeltaTables {
            lake,
            loaded: Default::default(),
            heads: Table::all().map(|t| (t, Default::default())).collect(),
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
    ///
    /// On a store proven create-only, the commit is one create-only write of
    /// the version after the last one this process knows, with no listing of
    /// the log: if it lands, no other writer committed in between, so what
    /// this process knows of the partitions' transactions is exact. If the
    /// version is taken, the entries from there on are read by name and the
    /// batch examined again: another partition's commit is no conflict for a
    /// blind append, a commit of the same partition ends the batch. A
    /// version below the last checkpoint (removed by the log's cleanup) is
    /// found after the write and undone. Where the store is not proven
    /// create-only, the table is read again before every commit.
    pub(crate) async fn append(
        &self,
        table: Table,
        files: &[DataFile],
        app_id: &str,
        expected: Option<i64>,
        version: i64,
    ) -> Result<Appended, DeltaError> {
        let started = std::time::Instant::now();
        let mut head = self.heads[&table].lock().await;
        if !self.lake.proven_create_only() {
            *head = None;
        }
        let appended = self
            .append_on(&mut head, table, files, app_id, expected, version)
            .await;
        match &appended {
            Ok(Appended::Committed(_)) => telemetry::delta_committed(table, started.elapsed()),
            Ok(_) => {}
            // Whatever failed, the retry starts from the log as it is.
            Err(_) => *head = None,
        }
        appended
    }

    /// [`DeltaTables::append`] with what this process knows of the table.
    async fn append_on(
        &self,
        head: &mut Option<Head>,
        table: Table,
        files: &[DataFile],
        app_id: &str,
        expected: Option<i64>,
        version: i64,
    ) -> Result<Appended, DeltaError> {
        loop {
            let fresh = head.is_none();
            let known = match head.as_mut() {
                Some(known) => known,
                None => head.insert(Head::new(self.latest_or_created(table).await?)),
            };
            let found = match known.transactions.get(app_id) {
                Some(found) => *found,
                // The loaded state answers for partitions this process has
                // not committed since. An older state may reference log
                // entries the upkeep has removed since: then the log as it
                // is now answers.
                None => match known.read_transaction(table, app_id).await {
                    Ok(found) => found,
                    Err(error) if !fresh => {
                        tracing::debug!(table = table.name(), %error, "reading the table again");
                        *head = None;
                        continue;
                    }
                    Err(error) => return Err(error),
                },
            };
            if found != expected && !fresh {
                // Other writers may have moved the partition since: only
                // the log as it is now can say that the batch is done.
                *head = None;
                continue;
            }
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
            let first_add = match actions.first() {
                Some(Action::Add(add)) => Some(add.clone()),
                _ => None,
            };
            let entry = known.entry(table, actions).await?;
            let next = known.version + 1;
            let path = self.log_path(table, &format!("{next:020}.json"));
            match self.lake.create(&path, entry).await {
                Ok(Put::Created) if self.below_checkpoint(table, next).await? => {
                    *head = None;
                    if self
                        .includes(table, app_id, version, first_add.as_ref())
                        .await?
                    {
                        // Another writer committed on top and checkpointed
                        // the table between the write and the check: the
                        // entry is in the table, and stays in its log.
                        return Ok(Appended::Committed(next));
                    }
                    // The version was free because the log's cleanup had
                    // removed it: readers start at the later checkpoint and
                    // never see this entry. It is removed, and the batch
                    // examined again against the log as it is.
                    telemetry::delta_conflict(table);
                    tracing::info!(
                        table = table.name(),
                        app_id,
                        version = next,
                        "the version was below the table's last checkpoint; reading the table again"
                    );
                    if let Err(error) = self.lake.store().delete(&path).await {
                        tracing::warn!(%error, %path, "removing an entry below the checkpoint failed; readers ignore it");
                    }
                }
                Ok(Put::Created) => {
                    known.version = next;
                    known.transactions.insert(app_id.to_string(), Some(version));
                    if known.checkpoint_due(next) {
                        self.checkpoint_later(table, next);
                    }
                    return Ok(Appended::Committed(next));
                }
                Ok(Put::AlreadyExisted) => {
                    telemetry::delta_conflict(table);
                    if !self.catch_up(known, table, next).await? {
                        tracing::info!(
                            table = table.name(),
                            app_id,
                            version = next,
                            "another writer changed the table; reading it again"
                        );
                        *head = None;
                    }
                }
                Err(error) => return Err(DeltaError::store(table, error)),
            }
        }
    }

    /// Takes the other writers' commits from `from` on into `known`, each
    /// read by name until the first missing one (no listing): their
    /// partitions' transactions are applied, other files' adds and removes
    /// do not concern a blind append. False when the table must be read
    /// again instead: an entry changes its metadata or protocol, the first
    /// is gone (removed by the log's cleanup), or there are too many.
    async fn catch_up(
        &self,
        known: &mut Head,
        table: Table,
        from: i64,
    ) -> Result<bool, DeltaError> {
        const MOST: i64 = 32;
        let mut version = from;
        loop {
            let path = self.log_path(table, &format!("{version:020}.json"));
            let read = self.lake.read_if_exists(&path).await;
            let Some(bytes) = read.map_err(|error| DeltaError::store(table, error))? else {
                return Ok(version > from);
            };
            let Some(transactions) = transactions_of(&bytes) else {
                return Ok(false);
            };
            known.transactions.extend(transactions);
            known.version = version;
            version += 1;
            if version - from >= MOST {
                return Ok(false);
            }
        }
    }

    /// The path of `name` in `table`'s log.
    fn log_path(&self, table: Table, name: &str) -> object_store::path::Path {
        self.lake
            .path(&format!("{}/{DELTA_LOG}/{name}", table.name()))
    }

    /// True when `table`'s last checkpoint (`_last_checkpoint`) is at
    /// `version` or later. The log's cleanup removes only entries below the
    /// last checkpoint, and only after writing it, so a create-only write
    /// that lands on a version the cleanup removed is found here: one GET.
    async fn below_checkpoint(&self, table: Table, version: i64) -> Result<bool, DeltaError> {
        let path = self.log_path(table, "_last_checkpoint");
        let read = self.lake.read_if_exists(&path).await;
        let Some(bytes) = read.map_err(|error| DeltaError::store(table, error))? else {
            return Ok(false);
        };
        // A `_last_checkpoint` that does not parse is a log this sink cannot
        // use: reading it again cannot help, so the error is permanent.
        let last: serde_json::Value = serde_json::from_slice(&bytes).map_err(|json_err| {
            DeltaError::of(table)(DeltaTableError::InvalidJsonLog {
                json_err,
                line: String::from_utf8_lossy(&bytes).into_owned(),
                version,
            })
        })?;
        Ok(last["version"].as_i64().is_some_and(|at| at >= version))
    }

    /// Writes a checkpoint of `table` at its latest version, so that
    /// readers replay no commit before it.
    pub(crate) async fn checkpoint(&self, table: Table) -> Result<(), DeltaError> {
        if let Some(current) = self.latest(table).await? {
            create_checkpoint(&current, None)
                .await
                .map_err(DeltaError::of(table))?;
        }
        Ok(())
    }

    /// Adds `files` to `table` in one commit that sets no transaction (the
    /// library's, retried on conflicts): files a partition's transaction
    /// covers already but the log lacks. Its version.
    pub(crate) async fn add_untracked(
        &self,
        table: Table,
        files: &[DataFile],
    ) -> Result<i64, DeltaError> {
        let current = self.latest_or_created(table).await?;
        let state = current.snapshot().map_err(DeltaError::of(table))?;
        let committed = CommitBuilder::from(commit_properties(10))
            .with_actions(
                files
                    .iter()
                    .map(|f| Action::Add(add_action(f, true)))
                    .collect(),
            )
            .build(
                Some(state),
                current.log_store(),
                DeltaOperation::Write {
                    mode: SaveMode::Append,
                    partition_by: None,
                    predicate: None,
                },
            )
            .await
            .map_err(DeltaError::of(table))?;
        *self.heads[&table].lock().await = None;
        Ok(committed.version())
    }

    /// True when `table` as it is now holds the commit of `app_id` at
    /// `version` whose first add is `first`: its transaction, and that very
    /// add (path and time: a replay writes the same names at another time).
    async fn includes(
        &self,
        table: Table,
        app_id: &str,
        version: i64,
        first: Option<&Add>,
    ) -> Result<bool, DeltaError> {
        let Some(current) = self.latest(table).await? else {
            return Ok(false);
        };
        if transaction_version(&current, table, app_id).await? != Some(version) {
            return Ok(false);
        }
        let Some(first) = first else {
            return Ok(true);
        };
        let state = current.snapshot().map_err(DeltaError::of(table))?;
        let holds = state.log_data().iter().any(|file| {
            file.path() == first.path.as_str()
                && file.modification_time() == first.modification_time
        });
        Ok(holds)
    }

    /// Writes a checkpoint of `table` at `version` in the background, as
    /// the library would after the commit (every `checkpointInterval`
    /// commits): readers and restarts then replay at most that many commits.
    /// Its failure does not undo the commit; the upkeep writes one again.
    fn checkpoint_later(&self, table: Table, version: i64) {
        let log_store = self.log_store(table);
        tokio::spawn(async move {
            let mut at = DeltaTable::new(log_store, DeltaTableConfig::default());
            let written = match at.load_version(version).await {
                Ok(()) => create_checkpoint(&at, None).await,
                Err(error) => Err(error),
            };
            match written {
                Ok(()) => tracing::debug!(table = table.name(), version, "checkpoint written"),
                Err(error) => tracing::warn!(
                    table = table.name(),
                    version,
                    %error,
                    "writing a checkpoint failed; the commit stands, and the upkeep writes one"
                ),
            }
        });
    }
}

/// The transactions a log entry sets, or None when it changes the
/// table's metadata or protocol (or does not parse): what a blind append
/// needs to know of another writer's commit.
fn transactions_of(entry: &[u8]) -> Option<Vec<(String, Option<i64>)>> {
    let mut transactions = Vec::new();
    for line in entry
        .split(|b| *b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
    {
        let action: serde_json::Value = serde_json::from_slice(line).ok()?;
        if action.get("metaData").is_some() || action.get("protocol").is_some() {
            return None;
        }
        if let Some(txn) = action.get("txn") {
            let app_id = txn.get("appId")?.as_str()?;
            let version = txn.get("version")?.as_i64()?;
            transactions.push((app_id.to_string(), Some(version)));
        }
    }
    Some(transactions)
}

/// The directory of a table's log.
const DELTA_LOG: &str = "_delta_log";

/// What an appending writer knows of a table between reads of its log: a
/// loaded state, the last version known to exist (the state's, or a later
/// one this process committed or caught up with), and the transactions of
/// the partitions it asked about or read in entries since, at that version.
struct Head {
    state: DeltaTable,
    version: i64,
    transactions: HashMap<String, Option<i64>>,
}

impl Head {
    fn new(state: DeltaTable) -> Head {
        Head {
            version: state.version().unwrap_or_default(),
            state,
            transactions: HashMap::new(),
        }
    }

    /// `app_id`'s version in the loaded state, remembered.
    async fn read_transaction(
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
    async fn entry(&self, table: Table, actions: Vec<Action>) -> Result<bytes::Bytes, DeltaError> {
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

    /// True when `version` is one the library would checkpoint after.
    fn checkpoint_due(&self, version: i64) -> bool {
        let interval = self
            .state
            .snapshot()
            .map(|state| state.table_config().checkpoint_interval().get())
            .unwrap_or(100);
        (version as u64 + 1).is_multiple_of(interval)
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

/// The paths of the data files `current` names: its files, and those
/// removed whose tombstones it still holds.
pub(crate) async fn referenced_paths(
    current: &DeltaTable,
    table: Table,
) -> Result<std::collections::HashSet<String>, DeltaError> {
    use futures::TryStreamExt;
    let state = current.snapshot().map_err(DeltaError::of(table))?;
    let mut known: std::collections::HashSet<String> = state
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
            let lake = Lake::open(&location).expect("opens");
            lake.check_create_only().await.expect("create-only");
            let tables = DeltaTables::new(lake);
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

    /// Two processes' tables on one proven create-only lake.
    async fn two_writers() -> (DeltaTables, DeltaTables) {
        let lake = Lake::open("memory:///lake").expect("opens");
        lake.check_create_only().await.expect("create-only");
        (DeltaTables::new(lake.clone()), DeltaTables::new(lake))
    }

    /// The files of `table` at its latest version, read by a new process.
    async fn active_files(lake: &Lake, table: Table) -> usize {
        DeltaTables::new(lake.clone())
            .latest(table)
            .await
            .expect("reads")
            .expect("a table")
            .get_file_uris()
            .expect("files")
            .count()
    }

    /// Two processes append to one table without listing its log: each
    /// commits on top of what it knows, and a version the other took sends
    /// it back to the log, where another partition's commit is no conflict
    /// and its own partition's commit by the other ends the batch.
    #[tokio::test]
    async fn writers_that_know_stale_versions_meet_at_the_create_only_write() {
        let (one, two) = two_writers().await;
        let table = Table::Events;
        let (p0, p1) = (app_id("t", 0), app_id("t", 1));
        let first = one.append(table, &[file("a")], &p0, None, 5).await;
        assert!(matches!(first, Ok(Appended::Committed(1))), "{first:?}");
        let second = two.append(table, &[file("b")], &p1, None, 7).await;
        assert!(matches!(second, Ok(Appended::Committed(2))), "{second:?}");
        // `one` still knows version 1: version 2 is taken, it reads the log
        // again and commits version 3.
        let third = one.append(table, &[file("c")], &p0, Some(5), 9).await;
        assert!(matches!(third, Ok(Appended::Committed(3))), "{third:?}");
        // `two` takes partition 0 over from what the log says...
        let taken = two.append(table, &[file("d")], &p0, Some(9), 12).await;
        assert!(matches!(taken, Ok(Appended::Committed(4))), "{taken:?}");
        // ...and `one`, knowing partition 0 at 9, finds it moved.
        let stale = one.append(table, &[file("e")], &p0, Some(9), 14).await;
        assert_eq!(stale.expect("reads"), Appended::Superseded(Some(12)));
        assert_eq!(active_files(one.lake(), table).await, 4);
    }

    /// A writer that knows an old version, after another process wrote a
    /// checkpoint and removed the log entries below it: its write of the
    /// next version lands on a removed slot, is found below the checkpoint,
    /// removed, and made again on top of the log; a partition it never
    /// committed is read from the log as it is, not from the old state.
    #[tokio::test]
    async fn a_version_the_log_cleanup_removed_is_not_committed_to() {
        let (one, two) = two_writers().await;
        let table = Table::Events;
        let (p0, p1, p2) = (app_id("t", 0), app_id("t", 1), app_id("t", 2));
        let first = one.append(table, &[file("a")], &p0, None, 5).await;
        assert!(matches!(first, Ok(Appended::Committed(1))), "{first:?}");
        for (n, name) in ["b", "c", "d"].into_iter().enumerate() {
            let appended = two
                .append(
                    table,
                    &[file(name)],
                    &p1,
                    (n > 0).then_some(n as i64),
                    n as i64 + 1,
                )
                .await;
            assert!(
                matches!(appended, Ok(Appended::Committed(_))),
                "{appended:?}"
            );
        }
        let current = two.latest(table).await.expect("reads").expect("a table");
        assert_eq!(current.version(), Some(4));
        deltalake_core::protocol::checkpoints::create_checkpoint(&current, None)
            .await
            .expect("checkpoints");
        let removed = deltalake_core::protocol::checkpoints::cleanup_expired_logs_for(
            4,
            current.log_store().as_ref(),
            i64::MAX,
            None,
        )
        .await
        .expect("cleans");
        assert!(removed >= 3, "{removed} entries removed");

        let next = one.append(table, &[file("e")], &p0, Some(5), 9).await;
        assert!(matches!(next, Ok(Appended::Committed(5))), "{next:?}");
        let slot = one.log_path(table, &format!("{:020}.json", 2));
        assert!(
            one.lake().store().head(&slot).await.is_err(),
            "version 2 left in the log"
        );
        let third = one.append(table, &[file("f")], &p2, None, 3).await;
        assert!(matches!(third, Ok(Appended::Committed(6))), "{third:?}");
        let reader = DeltaTables::new(one.lake().clone());
        assert_eq!(reader.version_of(table, &p0).await.expect("reads"), Some(9));
        assert_eq!(reader.version_of(table, &p1).await.expect("reads"), Some(3));
        assert_eq!(active_files(one.lake(), table).await, 6);
    }

    /// An entry found below the last checkpoint is the sink's own commit,
    /// kept, when the table holds its transaction and its very add (a
    /// checkpoint written on top of it after the write), and a stray on a
    /// removed slot otherwise.
    #[tokio::test]
    async fn an_entry_below_the_checkpoint_is_kept_when_the_table_holds_it() {
        let (one, _) = two_writers().await;
        let table = Table::Events;
        let p0 = app_id("t", 0);
        let first = one.append(table, &[file("a")], &p0, None, 5).await;
        assert!(matches!(first, Ok(Appended::Committed(1))), "{first:?}");
        let current = one.latest(table).await.expect("reads").expect("a table");
        deltalake_core::protocol::checkpoints::create_checkpoint(&current, None)
            .await
            .expect("checkpoints");
        assert!(one.below_checkpoint(table, 1).await.expect("reads"));
        let state = current.snapshot().expect("a snapshot");
        let written = state.log_data().iter().next().expect("one file");
        let mut add = add_action(&file("a"), true);
        add.modification_time = written.modification_time();
        assert!(one
            .includes(table, &p0, 5, Some(&add))
            .await
            .expect("reads"));
        assert!(!one
            .includes(table, &p0, 6, Some(&add))
            .await
            .expect("reads"));
        // The same name written at another time: a replay's stray entry.
        add.modification_time += 1;
        assert!(!one
            .includes(table, &p0, 5, Some(&add))
            .await
            .expect("reads"));
    }

    #[test]
    fn an_entry_says_which_transactions_it_sets_unless_it_changes_the_table() {
        let append = br#"{"commitInfo":{"operation":"WRITE"}}
{"add":{"path":"a.parquet"}}
{"txn":{"appId":"t-0","version":12,"lastUpdated":1}}
"#;
        assert_eq!(
            transactions_of(append),
            Some(vec![("t-0".to_string(), Some(12))])
        );
        let compaction = br#"{"remove":{"path":"a.parquet"}}
{"add":{"path":"b.parquet"}}"#;
        assert_eq!(transactions_of(compaction), Some(vec![]));
        let evolved = br#"{"metaData":{"id":"x"}}"#;
        assert_eq!(transactions_of(evolved), None);
        assert_eq!(transactions_of(b"{not json"), None);
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

    /// A table whose protocol asks for a reader feature this library does
    /// not know stops the sink with a permanent error, instead of being
    /// read again every 30 s for ever.
    #[tokio::test]
    async fn a_reader_feature_it_does_not_know_is_permanent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(dir.path().to_str().expect("utf8")).expect("opens");
        let users = Table::Records(schemas::Resource::Users);
        let tables = DeltaTables::new(lake.clone());
        let appended = tables
            .append(users, &[file("a")], &app_id("t", 0), None, 9)
            .await
            .expect("appends");
        assert!(matches!(appended, Appended::Committed(1)), "{appended:?}");
        let protocol = r#"{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["futureReaderFeature"],"writerFeatures":["futureReaderFeature"]}}"#;
        std::fs::write(
            dir.path()
                .join("users/_delta_log/00000000000000000002.json"),
            format!("{protocol}\n"),
        )
        .expect("writes");
        let refused = DeltaTables::new(lake).latest(users).await;
        assert!(
            matches!(&refused, Err(error) if error.is_permanent()),
            "{refused:?}"
        );
    }
}
