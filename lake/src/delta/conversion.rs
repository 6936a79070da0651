//! Plain Parquet history turned into Delta tables in place: every file the
//! sink wrote with `LAKE_FORMAT=parquet` is added to its table's log as it
//! is (no row is rewritten), with the statistics of its footer, and each
//! source partition's transaction is set to the last offset its files
//! hold, so that a Delta sink goes on exactly where the Parquet sink
//! stopped, and a replay of the topic adds nothing the files hold.
//!
//! A conversion can run again: each partition's files the log does not
//! reference are added, the others are already there. So a run cut short,
//! or files a Parquet sink wrote after the first run, are taken by the next.
//!
//! A flush intent left by the Parquet sink (a batch stopped between two of
//! its files) stops the conversion before anything is committed: only the
//! Parquet sink can write the missing files, by replaying the range.

use object_store::ObjectStoreExt;
use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use schemas::Table;

use crate::data_file::DataFile;
use crate::delta::actions::app_id;
use crate::delta::error::DeltaError;
use crate::delta::log::{Appended, DeltaTables};
use crate::delta::state::referenced_paths;
use crate::parquet::intents;
use crate::path::{stems, DataPath};
use crate::store::{Lake, LakeError, Put};

/// Why a prefix was not converted.
#[derive(Debug, thiserror::Error)]
pub enum ConversionError {
    #[error("{path} is not a file the sink wrote as plain Parquet ({{topic}}+{{partition}}+{{first offset}}+{{last offset}}.parquet under dt=YYYY-MM-DD/): nothing was converted")]
    /// A file in a table's folder that neither format's sink wrote.
    Foreign {
        /// Its location.
        path: String,
    },
    #[error("the plain Parquet flush of {topic} partition {partition}, offsets {first} to {last}, did not finish (its intent is under _sink_intents/): nothing was converted")]
    /// A flush intent is left: a batch's files may be missing.
    UnfinishedFlush {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The batch's first offset.
        first: i64,
        /// The batch's last offset.
        last: i64,
    },
    #[error(transparent)]
    /// The store failed.
    Lake(#[from] LakeError),
    #[error(transparent)]
    /// A Delta table could not be read or written.
    Delta(#[from] DeltaError),
}

impl ConversionError {
    /// Whether trying again cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            ConversionError::Foreign { .. } | ConversionError::UnfinishedFlush { .. } => true,
            ConversionError::Lake(error) => error.is_permanent(),
            ConversionError::Delta(error) => error.is_permanent(),
        }
    }
}

/// What a conversion did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// The table.
    pub table: Table,
    /// Plain Parquet files found.
    pub files: usize,
    /// Of them, added now (the others were added by an earlier run).
    pub added: usize,
    /// Rows of the files added now.
    pub rows: u64,
    /// Each source partition's transaction (`{topic}-{partition}`): the
    /// last offset the table holds.
    pub transactions: BTreeMap<String, i64>,
}

/// A plain Parquet file of a table as listed, and the source range it
/// holds: a few hundred bytes, so that a listing of hundreds of thousands
/// of files fits; footers are read a commit's worth at a time.
struct Listed {
    path: DataPath,
    location: object_store::path::Path,
    size: usize,
    app_id: String,
    last: i64,
}

/// Files per commit: a commit of this many adds with their statistics is
/// a few MiB, which readers load in well under a second.
const FILES_PER_COMMIT: usize = 5_000;

/// Footers read at once.
const FOOTERS_IN_FLIGHT: usize = 16;

/// Converts every table of `tables`' lake that holds plain Parquet files;
/// tables without any are left as they are (the sink creates them).
/// Every table is examined before anything is committed: a file of
/// another shape stops the conversion with nothing changed.
pub async fn convert_to_delta(tables: &DeltaTables) -> Result<Vec<Converted>, ConversionError> {
    convert_in_commits_of(tables, FILES_PER_COMMIT).await
}

/// [`convert_to_delta`] with commits of at most `files_per_commit` files.
async fn convert_in_commits_of(
    tables: &DeltaTables,
    files_per_commit: usize,
) -> Result<Vec<Converted>, ConversionError> {
    let lake = tables.lake();
    if let Some((topic, partition, range)) = intents::any_left(lake).await? {
        return Err(ConversionError::UnfinishedFlush {
            topic,
            partition,
            first: range.first,
            last: range.last,
        });
    }
    let mut found = BTreeMap::new();
    for table in Table::all() {
        found.insert(table, parquet_files(tables, table).await?);
    }
    let unfinished = marker(lake);
    let resuming = is_unfinished(lake).await?;
    if found.values().any(|files| !files.is_empty()) {
        // Created, or left by the run this one resumes: either way there.
        let _marked: Put = lake.create(&unfinished, bytes::Bytes::new()).await?;
    }
    let mut report = vec![];
    for (table, files) in found {
        if files.is_empty() {
            continue;
        }
        report.push(convert_table(tables, table, files, resuming, files_per_commit).await?);
    }
    lake.store()
        .delete(&unfinished)
        .await
        .or_else(|error| match error {
            object_store::Error::NotFound { .. } => Ok(()),
            error => Err(LakeError::from(error)),
        })?;
    Ok(report)
}

/// Present from a conversion's first commit until it finished: a lake
/// holding it is converted in part, and only a conversion may write it.
const UNFINISHED: &str = "_sink_conversion_unfinished";

/// Where the marker of an unfinished conversion lives in `lake`.
pub(crate) fn marker(lake: &Lake) -> object_store::path::Path {
    lake.path(UNFINISHED)
}

/// Whether a conversion of `lake` started and did not finish.
pub(crate) async fn is_unfinished(lake: &Lake) -> Result<bool, LakeError> {
    Ok(lake.read_if_exists(&marker(lake)).await?.is_some())
}

/// The plain Parquet files of `table`, listed as a stream; the sink's
/// Delta files (a table converted before, and written to since) are
/// passed over.
async fn parquet_files(tables: &DeltaTables, table: Table) -> Result<Vec<Listed>, ConversionError> {
    let lake = tables.lake();
    let folder = lake.path(table.name());
    let log = lake.path(&format!("{}/_delta_log", table.name()));
    let mut listing = lake.store().list(Some(&folder));
    let mut found = vec![];
    while let Some(object) = listing.try_next().await.map_err(LakeError::from)? {
        if object.location.prefix_matches(&log) {
            continue;
        }
        let foreign = || ConversionError::Foreign {
            path: object.location.to_string(),
        };
        let path = lake
            .data_path(table, &object.location)
            .ok_or_else(foreign)?;
        if stems::written_by_sink(&path.stem) {
            continue;
        }
        let (app_id, last) = stems::plain_range(&path.stem)
            .map(|(topic, partition, last)| (app_id(topic, partition), last))
            .ok_or_else(foreign)?;
        found.push(Listed {
            path,
            location: object.location,
            size: usize::try_from(object.size).unwrap_or(usize::MAX),
            app_id,
            last,
        });
    }
    Ok(found)
}

/// `files` with their rows and statistics, from their footers.
async fn with_footers(lake: &Lake, files: &[Listed]) -> Result<Vec<DataFile>, ConversionError> {
    futures::stream::iter(files)
        .map(|listed| async move {
            let footer = lake.parquet_footer(&listed.location).await?;
            Ok::<_, ConversionError>(DataFile {
                path: listed.path.clone(),
                size: listed.size,
                rows: usize::try_from(footer.file_metadata().num_rows()).unwrap_or_default(),
                stats: Some(crate::statistics::delta_stats_of(
                    listed.path.table,
                    &footer,
                )),
            })
        })
        .buffered(FOOTERS_IN_FLIGHT)
        .try_collect()
        .await
}

/// Adds the `files` `table`'s log does not name yet, per source partition
/// in commits of at most `files_per_commit` files, the last of which
/// sets the partition's transaction at the last offset its files hold;
/// then writes a checkpoint. A file the log does not name is added even
/// below the partition's transaction when `resuming` an unfinished
/// conversion (a Delta sink moved the transaction meanwhile); otherwise a
/// file below it is one a compaction rewrote long ago, and is left alone.
async fn convert_table(
    tables: &DeltaTables,
    table: Table,
    files: Vec<Listed>,
    resuming: bool,
    files_per_commit: usize,
) -> Result<Converted, ConversionError> {
    let lake = tables.lake();
    let named = match tables.latest(table).await? {
        Some(current) => referenced_paths(&current, table).await?,
        None => Default::default(),
    };
    let mut converted = Converted {
        table,
        files: files.len(),
        added: 0,
        rows: 0,
        transactions: BTreeMap::new(),
    };
    let mut by_partition: BTreeMap<String, Vec<Listed>> = BTreeMap::new();
    for listed in files {
        if !named.contains(&listed.path.in_table()) {
            by_partition
                .entry(listed.app_id.clone())
                .or_default()
                .push(listed);
        }
    }
    drop(named);
    for (id, files) in by_partition {
        let held = tables.version_of(table, &id).await?;
        let last = files.iter().map(|f| f.last).max().unwrap_or_default();
        let (mut new, covered): (Vec<Listed>, Vec<Listed>) = files
            .into_iter()
            .partition(|f| held.is_none_or(|held| f.last > held));
        if resuming {
            for chunk in covered.chunks(files_per_commit) {
                let chunk = with_footers(lake, chunk).await?;
                let version = tables.add_untracked(table, &chunk).await?;
                tracing::info!(table = table.name(), app_id = %id, files = chunk.len(), version, "plain Parquet files below the partition's transaction added");
                converted.count(&chunk);
            }
        }
        // The partition's transaction once done: what the table held, or
        // what this run (or a writer racing it) committed.
        let mut holds = held.unwrap_or(last);
        new.sort_by_key(|f| f.last);
        let mut chunks = new.chunks(files_per_commit).peekable();
        while let Some(chunk) = chunks.next() {
            let chunk = with_footers(lake, chunk).await?;
            if chunks.peek().is_some() {
                // Not the partition's last files: its transaction moves
                // with the last commit only, and a run cut short here
                // finds these files in the log.
                let version = tables.add_untracked(table, &chunk).await?;
                tracing::info!(table = table.name(), app_id = %id, files = chunk.len(), version, "plain Parquet files added");
                converted.count(&chunk);
                continue;
            }
            match tables.append(table, &chunk, &id, held, last).await? {
                Appended::Committed(version) => {
                    tracing::info!(table = table.name(), app_id = %id, files = chunk.len(), version, "plain Parquet files added");
                    converted.count(&chunk);
                    holds = last;
                }
                Appended::AlreadyThere => {
                    holds = tables.version_of(table, &id).await?.unwrap_or(last);
                }
                Appended::Superseded(found) => {
                    // A Delta sink committed to the partition meanwhile.
                    tracing::warn!(table = table.name(), app_id = %id, ?found, "the partition's transaction moved during the conversion: its files are left for the next run");
                    holds = found.unwrap_or(holds);
                }
            }
        }
        converted.transactions.insert(id, holds);
    }
    if converted.added > 0 {
        tables.checkpoint(table).await?;
    }
    Ok(converted)
}

impl Converted {
    /// Counts `files` as added now.
    fn count(&mut self, files: &[DataFile]) {
        self.added += files.len();
        self.rows += files.iter().map(|f| f.rows as u64).sum::<u64>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain Parquet files of three partitions over several days,
    /// converted in commits of at most five files (of [`FILES_PER_COMMIT`]
    /// when `LAKE_CONVERSION_FILES` asks for more than 1,000 files, as
    /// `scripts/conversion` does): the log holds them all, each partition's
    /// transaction at its last offset, a checkpoint at the end; peak RSS
    /// and the largest commit are printed.
    #[tokio::test]
    async fn a_conversion_commits_in_bounded_steps_and_checkpoints() {
        let count: usize = std::env::var("LAKE_CONVERSION_FILES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(12);
        let per_commit = if count > 1_000 { FILES_PER_COMMIT } else { 5 };
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(dir.path().to_str().expect("utf8")).expect("opens");
        let (bytes, _) = crate::encoding::parquet_file::one_event_file(vec![]);
        let mut last = BTreeMap::new();
        for n in 0..count {
            let (partition, turn) = (n % 3, (n / 3) as i64);
            let day = 1 + (n / 2_000) % 28;
            let folder = dir.path().join(format!("events/dt=2025-03-{day:02}"));
            std::fs::create_dir_all(&folder).expect("mkdir");
            let name = format!(
                "t+{partition}+{:020}+{:020}.parquet",
                turn * 10,
                turn * 10 + 9
            );
            std::fs::write(folder.join(name), &bytes).expect("writes");
            last.insert(format!("t-{partition}"), turn * 10 + 9);
        }
        let started = std::time::Instant::now();
        let tables = DeltaTables::new(lake.clone());
        let report = convert_in_commits_of(&tables, per_commit)
            .await
            .expect("converts");
        let took = started.elapsed();
        assert_eq!(report.len(), 1);
        assert_eq!((report[0].files, report[0].added), (count, count));
        assert_eq!(report[0].transactions, last);
        let opening = std::time::Instant::now();
        let current = DeltaTables::new(lake.clone())
            .latest(Table::Events)
            .await
            .expect("reads")
            .expect("a table");
        let opened = opening.elapsed();
        let state = current.snapshot().expect("a snapshot");
        assert_eq!(state.log_data().iter().count(), count);
        let log = dir.path().join("events/_delta_log");
        assert!(log.join("_last_checkpoint").exists());
        let largest_commit = std::fs::read_dir(&log)
            .expect("a log")
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|entry| entry.metadata().ok().map(|m| m.len()))
            .max()
            .unwrap_or(0);
        let commits = current.version().unwrap_or_default();
        let peak_mib = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|kb| kb.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0);
        eprintln!(
            "conversion: {count} files in {commits} commits of at most {per_commit}, largest commit {} KiB, {:.1} s, peak RSS {peak_mib:.0} MiB; a new reader opens the table in {:.2} s",
            largest_commit / 1024,
            took.as_secs_f64(),
            opened.as_secs_f64()
        );
        assert!(commits as usize <= count.div_ceil(per_commit) + 3);
        let again = convert_in_commits_of(&tables, per_commit)
            .await
            .expect("converts");
        assert_eq!(again[0].added, 0);
    }
}
