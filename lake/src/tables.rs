//! The lake's tables in the format chosen at start-up, with one method per
//! step of the writer's protocol: what the tables hold of a partition, how
//! files are named, announce, commit, settle, abandon. The writer asks which
//! format it is nowhere else.

use std::collections::{BTreeMap, VecDeque};

use chrono::NaiveDate;
use futures::TryStreamExt;
use schemas::Table;

use crate::data_file::DataFile;
use crate::ddl::LakeFormat;
use crate::delta::actions::app_id;
use crate::delta::error::DeltaError;
use crate::delta::log::{Appended, DeltaTables};
use crate::encoding::file_set::Naming;
use crate::event_ids::EventIds;
use crate::offsets::OffsetRange;
use crate::parquet::intents::Intents;
use crate::path::stems;
use crate::provenance::Provenance;
use crate::reading::{held_event_ids_between, ReadError};
use crate::standing::{Held, Standing};
use crate::store::{Lake, LakeError};

/// The tables of one source topic, Delta or plain Parquet.
pub struct Tables {
    format: Format,
    /// The source topic as the tables know it.
    source: String,
}

enum Format {
    /// Delta Lake tables: files become visible in one commit per table,
    /// which records the partition's last offset as a transaction.
    Delta {
        /// The tables.
        tables: DeltaTables,
        /// The source topic, part of each transaction's id.
        topic: String,
    },
    /// Plain Hive-partitioned Parquet: the files are the record, named after
    /// their offset range, with flush intents for ranges in flight.
    Parquet {
        /// Where the files go.
        lake: Lake,
        /// The flush intents of the topic.
        intents: Intents,
    },
}

/// Why a step on the tables failed.
#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    #[error(transparent)]
    /// The store failed.
    Store(#[from] LakeError),
    #[error(transparent)]
    /// A Delta log could not be read or written.
    Delta(#[from] DeltaError),
    #[error("{found} is a plain Parquet file, but LAKE_FORMAT=delta: Delta tables are not created over plain Parquet files, which their readers would not see")]
    /// A Delta lake asked for where plain Parquet files are.
    ParquetPrefix {
        /// A file found.
        found: String,
    },
    #[error("a conversion of plain Parquet history to Delta did not finish ({marker} is there): the tables hold part of it")]
    /// A conversion started and did not finish: only a conversion may
    /// write the tables, until it does.
    ConversionUnfinished {
        /// The marker found.
        marker: String,
    },
    #[error("reading {path}: {source}")]
    /// A data file could not be read.
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        source: parquet::errors::ParquetError,
    },
    #[error("{found} belongs to a Delta table, but LAKE_FORMAT=parquet: plain Parquet files next to a Delta table are invisible to its readers")]
    /// A plain Parquet lake asked for where Delta tables are.
    DeltaPrefix {
        /// A log entry found.
        found: String,
    },
}

impl TablesError {
    /// True when repeating the request cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            TablesError::Store(error) => error.is_permanent(),
            TablesError::Delta(error) => error.is_permanent(),
            // A request the store failed reaches the Parquet reader as an
            // external error; anything else is the file's own.
            TablesError::Unreadable { source, .. } => {
                !matches!(source, parquet::errors::ParquetError::External(_))
            }
            TablesError::ParquetPrefix { .. }
            | TablesError::DeltaPrefix { .. }
            | TablesError::ConversionUnfinished { .. } => true,
        }
    }
}

impl From<ReadError> for TablesError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Store(error) => TablesError::Store(error),
            ReadError::Delta(error) => TablesError::Delta(error),
            ReadError::Parquet { path, source } => TablesError::Unreadable { path, source },
        }
    }
}

/// The first data file under `table`'s folder that the sink's Delta writer
/// did not write (its uploads for a table not created yet are its own).
async fn foreign_file(lake: &Lake, table: Table) -> Result<Option<String>, LakeError> {
    let folder = lake.path(table.name());
    let mut listing = lake.store().list(Some(&folder));
    while let Some(object) = listing.try_next().await? {
        let ours = lake
            .data_path(table, &object.location)
            .is_some_and(|path| stems::written_by_sink(&path.stem));
        if !ours {
            return Ok(Some(object.location.to_string()));
        }
    }
    Ok(None)
}

/// How a commit of a batch's files ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Committed {
    /// Every table holds the batch's records (added now, or found there).
    All,
    /// A table's transaction for the partition moved since the batch was
    /// bounded, to a version short of the batch's end: another writer
    /// consumes the partition. Tables before it in the batch may hold the
    /// batch already; the next owner skips what they hold.
    Superseded {
        /// The table.
        table: Table,
        /// The version the batch was bounded against.
        expected: Option<i64>,
        /// The version found.
        found: Option<i64>,
    },
}

impl Tables {
    /// The tables of `topic` in `lake`, kept as `format` says.
    pub fn open(lake: Lake, format: LakeFormat, topic: &str) -> Tables {
        let format = match format {
            LakeFormat::Delta => Format::Delta {
                tables: DeltaTables::new(lake),
                topic: topic.to_string(),
            },
            LakeFormat::Parquet => Format::Parquet {
                intents: Intents::new(lake.clone(), topic),
                lake,
            },
        };
        Tables {
            format,
            source: topic.to_string(),
        }
    }

    /// Checks that the prefix holds no table of the other format (one
    /// listing request or two per table) and, for Delta, no conversion cut
    /// short (one read).
    pub async fn check_format(&self) -> Result<(), TablesError> {
        let lake = self.lake();
        if let Format::Delta { .. } = &self.format {
            if crate::delta::conversion_unfinished(lake).await? {
                return Err(TablesError::ConversionUnfinished {
                    marker: crate::delta::conversion_marker(lake).to_string(),
                });
            }
        }
        for table in Table::all() {
            let log = lake
                .first_under(&format!("{}/_delta_log", table.name()))
                .await?;
            match (&self.format, log) {
                (Format::Delta { .. }, Some(_)) | (Format::Parquet { .. }, None) => {}
                (Format::Parquet { .. }, Some(found)) => {
                    return Err(TablesError::DeltaPrefix { found })
                }
                (Format::Delta { .. }, None) => {
                    if let Some(found) = foreign_file(lake, table).await? {
                        return Err(TablesError::ParquetPrefix { found });
                    }
                }
            }
        }
        Ok(())
    }

    /// Compares `identity` (the broker's cluster id) with the identity of
    /// the source the tables' records came from, recording it when none is.
    pub async fn provenance(&self, identity: &str) -> Result<Provenance, TablesError> {
        Ok(crate::provenance::compare(self.lake(), &self.source, identity).await?)
    }

    /// The source topic as the tables know it: the name its files and
    /// transactions carry.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The lake the tables live in.
    pub fn lake(&self) -> &Lake {
        match &self.format {
            Format::Delta { tables, .. } => tables.lake(),
            Format::Parquet { lake, .. } => lake,
        }
    }

    /// The Delta tables, for the upkeep that only they have.
    pub fn delta(&self) -> Option<&DeltaTables> {
        match &self.format {
            Format::Delta { tables, .. } => Some(tables),
            Format::Parquet { .. } => None,
        }
    }

    /// The event ids the Delta tables hold on the days from `since` to
    /// `until` (without end when `None`), newest day first, as long as they
    /// take at most `limit` bytes (the result's `since` is then later);
    /// `None` for plain Parquet, whose replays must write the same files
    /// again and so cannot leave out what changed in between.
    pub async fn held_event_ids(
        &self,
        since: NaiveDate,
        until: Option<NaiveDate>,
        limit: usize,
    ) -> Result<Option<EventIds>, TablesError> {
        match &self.format {
            Format::Delta { tables, .. } => {
                let tables_of_lake: Vec<Table> = Table::all().collect();
                Ok(Some(
                    held_event_ids_between(tables, &tables_of_lake, since, until, limit).await?,
                ))
            }
            Format::Parquet { .. } => Ok(None),
        }
    }

    /// What the tables hold of `partition`, read when a batch of it first
    /// opens at `offset`.
    pub async fn standing(&self, partition: i32, offset: i64) -> Result<Standing, TablesError> {
        let held = match &self.format {
            Format::Delta { tables, topic } => {
                let id = app_id(topic, partition);
                let mut versions = BTreeMap::new();
                for table in Table::all() {
                    if let Some(version) = tables.version_of(table, &id).await? {
                        versions.insert(table, version);
                    }
                }
                if !versions.is_empty() {
                    tracing::info!(
                        partition,
                        ?versions,
                        "records up to these offsets are in the tables already"
                    );
                }
                Held::Versions(versions)
            }
            Format::Parquet { intents, .. } => {
                let ranges = intents.from(partition, offset).await?;
                if !ranges.is_empty() {
                    tracing::info!(
                        partition,
                        ?ranges,
                        "replaying announced ranges with their original boundaries"
                    );
                }
                Held::Announced(VecDeque::from(ranges))
            }
        };
        Ok(Standing { partition, held })
    }

    /// How a batch's files are named: plain Parquet files after their
    /// range, so that a replay writes the same names; Delta files uniquely,
    /// as the log says which count.
    pub fn naming(&self) -> Naming {
        match &self.format {
            Format::Delta { .. } => Naming::Unique,
            Format::Parquet { .. } => Naming::Range,
        }
    }

    /// Announces that files of `partition`'s range `(first, last)` are about
    /// to be written (plain Parquet: a flush intent; Delta tables need none,
    /// their transactions stand in for it).
    pub async fn announce(&self, partition: i32, range: OffsetRange) -> Result<(), TablesError> {
        match &self.format {
            Format::Delta { .. } => Ok(()),
            Format::Parquet { intents, .. } => Ok(intents.record(partition, range).await?),
        }
    }

    /// Makes `files`, written already, part of their tables up to the
    /// partition's offset `last`. Delta: one commit per table, with the
    /// partition's transaction at `last`, provided the transaction is still
    /// where `standing` says; a retry after a partial commit finds the
    /// committed tables done. Plain Parquet: written files are the record.
    /// Then [`Standing::committed`] moves the standing.
    pub async fn commit(
        &self,
        standing: &Standing,
        files: &[DataFile],
        last: i64,
    ) -> Result<Committed, TablesError> {
        let mut outcomes = self.commit_together(&[(standing, files, last)]).await?;
        Ok(outcomes.pop().expect("one outcome per batch"))
    }

    /// [`Tables::commit`] for the batches of several partitions, each as
    /// (its standing, its written files, its last offset): Delta, one
    /// commit per table holding every partition's files and transaction
    /// (so a table receives one commit per flush whatever the partitions);
    /// a partition not where its standing says is settled on its own. The
    /// outcomes in the order of `batches`.
    pub async fn commit_together(
        &self,
        batches: &[(&Standing, &[DataFile], i64)],
    ) -> Result<Vec<Committed>, TablesError> {
        let Format::Delta { tables, topic } = &self.format else {
            return Ok(vec![Committed::All; batches.len()]);
        };
        let ids: Vec<String> = batches
            .iter()
            .map(|(standing, _, _)| app_id(topic, standing.partition))
            .collect();
        let mut by_table: BTreeMap<Table, Vec<(usize, Vec<DataFile>)>> = BTreeMap::new();
        for (index, (_, files, _)) in batches.iter().enumerate() {
            let mut own: BTreeMap<Table, Vec<DataFile>> = BTreeMap::new();
            for file in *files {
                own.entry(file.path.table).or_default().push(file.clone());
            }
            for (table, files) in own {
                by_table.entry(table).or_default().push((index, files));
            }
        }
        let mut outcomes = vec![Committed::All; batches.len()];
        for (table, parts) in by_table {
            let parts: Vec<(usize, Vec<DataFile>)> = parts
                .into_iter()
                .filter(|(index, _)| outcomes[*index] == Committed::All)
                .collect();
            let delta_batches: Vec<crate::delta::log::Batch<'_>> = parts
                .iter()
                .map(|(index, files)| {
                    let (standing, _, last) = batches[*index];
                    crate::delta::log::Batch {
                        files,
                        app_id: &ids[*index],
                        expected: standing.version(table),
                        version: last,
                    }
                })
                .collect();
            let appended = tables.append_together(table, &delta_batches).await?;
            for ((index, files), appended) in parts.iter().zip(appended) {
                let (standing, _, last) = batches[*index];
                let partition = standing.partition;
                match appended {
                    Appended::Committed(version) => tracing::info!(
                        table = table.name(),
                        version,
                        partition,
                        last_offset = last,
                        files = files.len(),
                        "committed"
                    ),
                    Appended::AlreadyThere => tracing::info!(
                        table = table.name(),
                        partition,
                        last_offset = last,
                        "the table holds these records already"
                    ),
                    Appended::Superseded(found) => {
                        outcomes[*index] = Committed::Superseded {
                            table,
                            expected: standing.version(table),
                            found,
                        }
                    }
                }
            }
        }
        Ok(outcomes)
    }

    /// Creates each Delta table that does not exist yet, empty: readers of
    /// the lake (dbt's sources, a `delta_scan` per table) find every table
    /// before its first row. Plain Parquet: nothing to create.
    pub async fn create_missing(&self) -> Result<(), TablesError> {
        if let Format::Delta { tables, .. } = &self.format {
            for table in Table::all() {
                tables.latest_or_created(table).await?;
                // Readers of `_lake_status` find every table's, too.
                crate::final_through::create_missing(tables.lake(), table).await?;
            }
        }
        Ok(())
    }

    /// Forgets what is no longer needed once the source's offset is
    /// committed up to `next` (plain Parquet: the intents below it, in the
    /// background, best effort).
    pub fn settle(&self, partition: i32, next: i64) {
        if let Format::Parquet { intents, .. } = &self.format {
            let intents = intents.clone();
            tokio::spawn(async move { intents.forget_below(partition, next).await });
        }
    }

    /// Forgets a batch dropped unwritten: the intent of a range this writer
    /// cut itself (`replays` false) is removed, as no file was written for
    /// it.
    pub async fn abandon(&self, partition: i32, range: OffsetRange, replays: bool) {
        if let (Format::Parquet { intents, .. }, false) = (&self.format, replays) {
            intents.forget(partition, range).await;
        }
    }
}
