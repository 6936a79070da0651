//! The lake's tables as Delta Lake tables. A batch's files for a table become
//! visible in one commit, which also records the batch's topic partition and
//! last offset as an application transaction: the next owner of the
//! partition reads that version back and skips what the table already holds.

use object_store::ObjectStoreExt;
use std::collections::BTreeMap;

use deltalake_core::kernel::transaction::{CommitBuilder, TransactionError};
use deltalake_core::kernel::{Action, Add, Transaction};
use deltalake_core::logstore::{default_logstore, LogStoreRef, StorageConfig};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableError};
use schemas::Table;

use crate::data_file::DataFile;
use crate::delta::actions::{add_action, commit_properties, transactions_of};
use crate::delta::checkpoint;
use crate::delta::error::DeltaError;
use crate::delta::schema::{conform_schema, create_table, Conformed};
use crate::delta::state::{transaction_version, Head};
use crate::store::{Lake, Put};
use crate::telemetry;

/// How an append ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Appended {
    /// The files are in the table, at this table version.
    Committed(u64),
    /// The table already holds the partition up to the batch's last offset
    /// (another member committed the same records): nothing was added.
    AlreadyThere,
    /// The partition's transaction moved since the batch started, to a
    /// version short of the batch's end: another member consumes it.
    Superseded(Option<i64>),
}

/// What one append commits: `files` to `table` with the transaction
/// (`app_id`, `version`), if the partition's transaction is `expected`.
#[derive(Clone, Copy)]
struct Commit<'a> {
    table: Table,
    files: &'a [DataFile],
    app_id: &'a str,
    expected: Option<i64>,
    version: i64,
}

impl Commit<'_> {
    /// The entry's actions: an add per file, then the partition's
    /// transaction.
    fn actions(&self) -> Vec<Action> {
        let mut actions: Vec<Action> = self
            .files
            .iter()
            .map(|f| Action::Add(add_action(f, true)))
            .collect();
        actions.push(Action::Txn(Transaction::new(self.app_id, self.version)));
        actions
    }
}

/// One partition's batch in [`DeltaTables::append_together`]: its files
/// for the table, and its transaction (`app_id`, `version`), provided the
/// partition's transaction is `expected`.
#[derive(Clone, Copy)]
pub(crate) struct Batch<'a> {
    pub(crate) files: &'a [DataFile],
    pub(crate) app_id: &'a str,
    pub(crate) expected: Option<i64>,
    pub(crate) version: i64,
}

impl<'a> Batch<'a> {
    fn commit(&self, table: Table) -> Commit<'a> {
        Commit {
            table,
            files: self.files,
            app_id: self.app_id,
            expected: self.expected,
            version: self.version,
        }
    }
}

/// An entry written after the version a process knew: the version, its
/// path, its first add (to recognise it later), and how the put went.
struct Next {
    next: u64,
    path: object_store::path::Path,
    first_add: Option<Add>,
    put: Result<Put, crate::store::LakeError>,
}

/// How one attempt at an append ended.
#[must_use]
enum Attempt {
    /// The batch is done, as this says.
    Ended(Appended),
    /// Another attempt is due, on what the attempt learnt of the table.
    Again,
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
                let mut fresh = DeltaTable::new(self.log_store(table));
                match fresh.load().await {
                    Ok(()) => fresh,
                    Err(error) if not_a_table(&error) => return Ok(None),
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
        let batch = Commit {
            table,
            files,
            app_id,
            expected,
            version,
        };
        let appended = self.append_on(&mut head, &batch).await;
        match &appended {
            Ok(Appended::Committed(_)) => telemetry::delta_committed(table, started.elapsed()),
            Ok(_) => {}
            // Whatever failed, the retry starts from the log as it is.
            Err(_) => *head = None,
        }
        appended
    }

    /// Appends the batches of several partitions to `table` in one commit:
    /// every batch's files and every partition's transaction in one log
    /// entry, so that the commits a table receives do not grow with the
    /// partitions a sink owns. When a partition is not where its batch
    /// expects it (its records are there already, or another member moved
    /// it), or the entry lands below a checkpoint, each batch is appended
    /// on its own instead, which settles each as [`DeltaTables::append`]
    /// does. Outcomes in the order of `batches`.
    pub(crate) async fn append_together(
        &self,
        table: Table,
        batches: &[Batch<'_>],
    ) -> Result<Vec<Appended>, DeltaError> {
        if let [batch] = batches {
            let appended = self
                .append(
                    table,
                    batch.files,
                    batch.app_id,
                    batch.expected,
                    batch.version,
                )
                .await?;
            return Ok(vec![appended]);
        }
        let started = std::time::Instant::now();
        let mut head = self.heads[&table].lock().await;
        if !self.lake.proven_create_only() {
            *head = None;
        }
        let commits: Vec<Commit<'_>> = batches.iter().map(|b| b.commit(table)).collect();
        let appended = match self.together_on(&mut head, table, &commits).await {
            Ok(Some(next)) => {
                telemetry::delta_committed(table, started.elapsed());
                Ok(vec![Appended::Committed(next); commits.len()])
            }
            Ok(None) => self.each_on(&mut head, &commits).await,
            Err(error) => Err(error),
        };
        // Whatever failed, the retry starts from the log as it is.
        if appended.is_err() {
            *head = None;
        }
        appended
    }

    /// Each of `commits` appended on its own, in order.
    async fn each_on(
        &self,
        head: &mut Option<Head>,
        commits: &[Commit<'_>],
    ) -> Result<Vec<Appended>, DeltaError> {
        let mut appended = Vec::with_capacity(commits.len());
        for commit in commits {
            appended.push(self.append_on(head, commit).await?);
        }
        Ok(appended)
    }

    /// Attempts at the one commit of [`DeltaTables::append_together`]: the
    /// version it committed, or None when the batches must be appended one
    /// by one.
    async fn together_on(
        &self,
        head: &mut Option<Head>,
        table: Table,
        commits: &[Commit<'_>],
    ) -> Result<Option<u64>, DeltaError> {
        loop {
            // A partition not where its batch expects it, or a head too
            // stale to say: each batch is settled on its own.
            for commit in commits {
                if self.examine(head, commit).await?.is_some() {
                    return Ok(None);
                }
            }
            let known = head.as_mut().expect("examined with a head");
            let actions: Vec<Action> = commits.iter().flat_map(Commit::actions).collect();
            let Next {
                next,
                path,
                first_add,
                put,
            } = self.write_next(known, table, actions).await?;
            match put {
                Ok(Put::Created) if self.below_checkpoint(table, next).await? => {
                    *head = None;
                    let first = &commits[0];
                    return match self
                        .below_checkpoint_settled(first, next, &path, first_add.as_ref())
                        .await?
                    {
                        Attempt::Ended(Appended::Committed(next)) => Ok(Some(next)),
                        _ => Ok(None),
                    };
                }
                Ok(Put::Created) => {
                    known.version = next;
                    for commit in commits {
                        known
                            .transactions
                            .insert(commit.app_id.to_string(), Some(commit.version));
                    }
                    if known.checkpoint_due(next) {
                        self.checkpoint_later(table, next);
                    }
                    return Ok(Some(next));
                }
                Ok(Put::AlreadyExisted) => {
                    telemetry::delta_conflict(table);
                    if !self.catch_up(known, table, next).await? {
                        *head = None;
                    }
                }
                Err(error) => return Err(DeltaError::store(table, error)),
            }
        }
    }

    /// [`DeltaTables::append`] with what this process knows of the table:
    /// attempts until one ends the batch.
    async fn append_on(
        &self,
        head: &mut Option<Head>,
        batch: &Commit<'_>,
    ) -> Result<Appended, DeltaError> {
        loop {
            match self.attempt(head, batch).await? {
                Attempt::Ended(appended) => return Ok(appended),
                Attempt::Again => {}
            }
        }
    }

    /// One attempt at the append: from what this process knows of the
    /// table (read again when `head` is empty), the partition's version,
    /// then the create-only write of the next entry.
    async fn attempt(
        &self,
        head: &mut Option<Head>,
        batch: &Commit<'_>,
    ) -> Result<Attempt, DeltaError> {
        if let Some(decided) = self.examine(head, batch).await? {
            return Ok(decided);
        }
        let known = head.as_mut().expect("examined with a head");
        let Commit {
            table,
            app_id,
            version,
            ..
        } = *batch;
        let Next {
            next,
            path,
            first_add,
            put,
        } = self.write_next(known, table, batch.actions()).await?;
        match put {
            Ok(Put::Created) if self.below_checkpoint(table, next).await? => {
                *head = None;
                self.below_checkpoint_settled(batch, next, &path, first_add.as_ref())
                    .await
            }
            Ok(Put::Created) => {
                known.version = next;
                known.transactions.insert(app_id.to_string(), Some(version));
                if known.checkpoint_due(next) {
                    self.checkpoint_later(table, next);
                }
                Ok(Attempt::Ended(Appended::Committed(next)))
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
                Ok(Attempt::Again)
            }
            Err(error) => Err(DeltaError::store(table, error)),
        }
    }

    /// Writes `actions` as the entry after the version `known` knows, with
    /// a create-only put.
    async fn write_next(
        &self,
        known: &Head,
        table: Table,
        actions: Vec<Action>,
    ) -> Result<Next, DeltaError> {
        let first_add = match actions.first() {
            Some(Action::Add(add)) => Some(add.clone()),
            _ => None,
        };
        let entry = known.entry(table, actions).await?;
        let next = known.version + 1;
        let path = self.log_path(table, &format!("{next:020}.json"));
        let put = self.lake.create(&path, entry).await;
        Ok(Next {
            next,
            path,
            first_add,
            put,
        })
    }

    /// Where the batch's partition stands in what this process knows of
    /// the table: None when the batch goes on to be written, or how the
    /// attempt ends (the batch is there, another member's, or the table
    /// must be read again first).
    async fn examine(
        &self,
        head: &mut Option<Head>,
        batch: &Commit<'_>,
    ) -> Result<Option<Attempt>, DeltaError> {
        let Commit {
            table,
            app_id,
            expected,
            version,
            ..
        } = *batch;
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
                    return Ok(Some(Attempt::Again));
                }
                Err(error) => return Err(error),
            },
        };
        if found != expected && !fresh {
            // Other writers may have moved the partition since: only
            // the log as it is now can say that the batch is done.
            *head = None;
            return Ok(Some(Attempt::Again));
        }
        if found.is_some_and(|v| v >= version) {
            return Ok(Some(Attempt::Ended(Appended::AlreadyThere)));
        }
        if found != expected {
            return Ok(Some(Attempt::Ended(Appended::Superseded(found))));
        }
        Ok(None)
    }

    /// How an entry written at `next`, found below the table's last
    /// checkpoint, ends the attempt: committed when the table holds it
    /// (another writer committed on top and checkpointed it between the
    /// write and the check); otherwise the version was free because the
    /// log's cleanup had removed it, readers would never see the entry, so
    /// it is removed and the batch examined again against the log as it is.
    async fn below_checkpoint_settled(
        &self,
        batch: &Commit<'_>,
        next: u64,
        path: &object_store::path::Path,
        first_add: Option<&Add>,
    ) -> Result<Attempt, DeltaError> {
        let Commit {
            table,
            app_id,
            version,
            ..
        } = *batch;
        if self.includes(table, app_id, version, first_add).await? {
            return Ok(Attempt::Ended(Appended::Committed(next)));
        }
        telemetry::delta_conflict(table);
        tracing::info!(
            table = table.name(),
            app_id,
            version = next,
            "the version was below the table's last checkpoint; reading the table again"
        );
        if let Err(error) = self.lake.store().delete(path).await {
            tracing::warn!(%error, %path, "removing an entry below the checkpoint failed; readers ignore it");
        }
        Ok(Attempt::Again)
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
        from: u64,
    ) -> Result<bool, DeltaError> {
        const MOST: u64 = 32;
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
    async fn below_checkpoint(&self, table: Table, version: u64) -> Result<bool, DeltaError> {
        let path = self.log_path(table, "_last_checkpoint");
        let read = self.lake.read_if_exists(&path).await;
        let Some(bytes) = read.map_err(|error| DeltaError::store(table, error))? else {
            return Ok(false);
        };
        // A `_last_checkpoint` that does not parse is a log this sink cannot
        // use: reading it again cannot help, so the error is permanent.
        let last: checkpoint::LastCheckpoint =
            serde_json::from_slice(&bytes).map_err(|json_err| {
                DeltaError::of(table)(DeltaTableError::InvalidJsonLog {
                    json_err,
                    line: String::from_utf8_lossy(&bytes).into_owned(),
                    version,
                })
            })?;
        Ok(last.version >= version)
    }

    /// Writes a checkpoint of `table` at its latest version, so that
    /// readers replay no commit before it.
    pub(crate) async fn checkpoint(&self, table: Table) -> Result<(), DeltaError> {
        if let Some(current) = self.latest(table).await? {
            let version = current.version().unwrap_or_default();
            checkpoint::write(&current.log_store(), version)
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
    ) -> Result<u64, DeltaError> {
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

    /// Writes a checkpoint of `table` at `version` in the background, every
    /// [`CHECKPOINT_EVERY`](crate::delta::state::CHECKPOINT_EVERY) commits: readers and restarts then replay at
    /// most that many commits. Its failure does not undo the commit; the
    /// upkeep writes one again.
    fn checkpoint_later(&self, table: Table, version: u64) {
        let log_store = self.log_store(table);
        tokio::spawn(async move {
            match checkpoint::write(&log_store, version).await {
                Ok(written) => tracing::debug!(
                    table = table.name(),
                    version,
                    actions = written.actions,
                    files = written.files,
                    short_lived = written.short_lived,
                    "checkpoint written"
                ),
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

/// True when `error` says the table has no log yet: an object store
/// lists no log entry, a local folder does not exist.
fn not_a_table(error: &DeltaTableError) -> bool {
    match error {
        DeltaTableError::NotATable(_) => true,
        DeltaTableError::KernelError(delta_kernel::Error::InvalidTableLocation(reason)) => {
            reason.starts_with("Path does not exist")
        }
        _ => false,
    }
}

/// The directory of a table's log.
const DELTA_LOG: &str = "_delta_log";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::actions::app_id;
    use crate::delta::schema::delta_columns;
    use crate::path::PARTITION_COLUMN;
    use chrono::NaiveDate;
    use deltalake_core::kernel::{DataType as DeltaType, PrimitiveType, StructField};

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

    /// Several partitions' batches become one commit; a partition not where
    /// its batch expects it sends each batch its own way.
    #[tokio::test]
    async fn partitions_append_together_in_one_commit() {
        let (one, two) = two_writers().await;
        let table = Table::Events;
        let (p0, p1) = (app_id("t", 0), app_id("t", 1));
        let (a, b) = ([file("a")], [file("b")]);
        let batch = |files, app_id, expected, version| Batch {
            files,
            app_id,
            expected,
            version,
        };
        let together = one
            .append_together(table, &[batch(&a, &p0, None, 5), batch(&b, &p1, None, 7)])
            .await
            .expect("appends");
        assert_eq!(
            together,
            vec![Appended::Committed(1), Appended::Committed(1)]
        );
        assert_eq!(two.version_of(table, &p0).await.expect("reads"), Some(5));
        assert_eq!(two.version_of(table, &p1).await.expect("reads"), Some(7));
        // `two` moves partition 1 on; `one`'s next pair finds it superseded
        // and still commits partition 0.
        let moved = two.append(table, &[file("c")], &p1, Some(7), 9).await;
        assert!(matches!(moved, Ok(Appended::Committed(2))), "{moved:?}");
        let (d, e) = ([file("d")], [file("e")]);
        let split = one
            .append_together(
                table,
                &[batch(&d, &p0, Some(5), 6), batch(&e, &p1, Some(7), 8)],
            )
            .await
            .expect("appends");
        assert_eq!(split, vec![Appended::Committed(3), Appended::AlreadyThere]);
        assert_eq!(active_files(one.lake(), table).await, 4);
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
