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

use std::collections::BTreeMap;

use futures::TryStreamExt;
use schemas::Table;

use crate::data_file::DataFile;
use crate::delta::log::{app_id, referenced_paths, Appended, DeltaError, DeltaTables};
use crate::parquet::intents;
use crate::path::stems;
use crate::store::{LakeError, Put};

/// Why a prefix was not converted.
#[derive(Debug, thiserror::Error)]
pub enum ConversionError {
    #[error("{path} is not a file the sink wrote as plain Parquet ({{topic}}+{{partition}}+{{first offset}}+{{last offset}}.parquet under dt=YYYY-MM-DD/): nothing was converted. Move it out of the table's folder (or delete it), then run the conversion again")]
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

/// A plain Parquet file of a table, and the source range it holds.
struct Found {
    file: DataFile,
    app_id: String,
    last: i64,
}

/// Converts every table of `tables`' lake that holds plain Parquet files;
/// tables without any are left as they are (the sink creates them).
/// Every table is examined before anything is committed: a file of
/// another shape stops the conversion with nothing changed.
pub async fn convert_to_delta(tables: &DeltaTables) -> Result<Vec<Converted>, ConversionError> {
    let lake = tables.lake();
    if let Some((topic, partition, (first, last))) = intents::any_left(lake).await? {
        return Err(ConversionError::UnfinishedFlush {
            topic,
            partition,
            first,
            last,
        });
    }
    let mut found = BTreeMap::new();
    for table in Table::all() {
        found.insert(table, parquet_files(tables, table).await?);
    }
    let unfinished = lake.path(UNFINISHED);
    let resuming = lake.read_if_exists(&unfinished).await?.is_some();
    if found.values().any(|files| !files.is_empty()) {
        // Created, or left by the run this one resumes: either way there.
        let _marked: Put = lake.create(&unfinished, bytes::Bytes::new()).await?;
    }
    let mut report = vec![];
    for (table, files) in found {
        if files.is_empty() {
            continue;
        }
        report.push(convert_table(tables, table, files, resuming).await?);
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
pub(crate) const UNFINISHED: &str = "_sink_conversion_unfinished";

/// The plain Parquet files of `table`, with their statistics; the sink's
/// Delta files (a table converted before, and written to since) are
/// passed over.
async fn parquet_files(tables: &DeltaTables, table: Table) -> Result<Vec<Found>, ConversionError> {
    let lake = tables.lake();
    let folder = lake.path(table.name());
    let listed: Vec<_> = lake
        .store()
        .list(Some(&folder))
        .try_collect()
        .await
        .map_err(LakeError::from)?;
    let log = lake.path(&format!("{}/_delta_log", table.name()));
    let mut found = vec![];
    for object in listed {
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
        let (id, last) = range_of(&path.stem)
            .map(|(topic, partition, last)| (app_id(topic, partition), last))
            .ok_or_else(foreign)?;
        let footer = lake.parquet_footer(&object.location).await?;
        let rows = usize::try_from(footer.file_metadata().num_rows()).unwrap_or_default();
        found.push(Found {
            file: DataFile {
                path,
                size: usize::try_from(object.size).unwrap_or(usize::MAX),
                rows,
                stats: Some(crate::statistics::delta_stats_of(&footer)),
            },
            app_id: id,
            last,
        });
    }
    Ok(found)
}

/// The topic, partition and last offset a plain Parquet file's stem
/// (`{topic}+{partition}+{first:020}+{last:020}`) names.
fn range_of(stem: &str) -> Option<(&str, i32, i64)> {
    let mut parts = stem.rsplitn(4, '+');
    let last = parts.next()?.parse().ok()?;
    let _first: i64 = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    let topic = parts.next().filter(|topic| !topic.is_empty())?;
    Some((topic, partition, last))
}

/// Adds the `files` `table`'s log does not name yet, one commit per source
/// partition, each with the partition's transaction at the last offset its
/// files hold. A file the log does not name is added even below the
/// partition's transaction when `resuming` an unfinished conversion (a
/// Delta sink moved the transaction meanwhile); otherwise a file below it
/// is one a compaction rewrote long ago, and is left alone.
async fn convert_table(
    tables: &DeltaTables,
    table: Table,
    files: Vec<Found>,
    resuming: bool,
) -> Result<Converted, ConversionError> {
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
    let mut by_partition: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    for found in files {
        by_partition
            .entry(found.app_id.clone())
            .or_default()
            .push(found);
    }
    for (id, files) in by_partition {
        let held = tables.version_of(table, &id).await?;
        let last = files.iter().map(|f| f.last).max().unwrap_or_default();
        let (new, covered): (Vec<Found>, Vec<Found>) = files
            .into_iter()
            .filter(|f| !named.contains(&f.file.path.in_table()))
            .partition(|f| held.is_none_or(|held| f.last > held));
        let covered: Vec<DataFile> = covered.into_iter().map(|f| f.file).collect();
        if resuming && !covered.is_empty() {
            let version = tables.add_untracked(table, &covered).await?;
            tracing::info!(table = table.name(), app_id = %id, files = covered.len(), version, "plain Parquet files below the partition's transaction added");
            converted.added += covered.len();
            converted.rows += covered.iter().map(|f| f.rows as u64).sum::<u64>();
        }
        let new: Vec<DataFile> = new.into_iter().map(|f| f.file).collect();
        // The partition's transaction once done: what the table held, or
        // what this run (or a writer racing it) committed.
        let mut holds = held.unwrap_or(last);
        if !new.is_empty() {
            match tables.append(table, &new, &id, held, last).await? {
                Appended::Committed(version) => {
                    tracing::info!(table = table.name(), app_id = %id, files = new.len(), version, "plain Parquet files added");
                    converted.added += new.len();
                    converted.rows += new.iter().map(|f| f.rows as u64).sum::<u64>();
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
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_parquet_stem_names_its_topic_partition_and_last_offset() {
        assert_eq!(
            range_of("mobaro.enriched+2+00000000000000000100+00000000000000000249"),
            Some(("mobaro.enriched", 2, 249))
        );
        assert_eq!(
            range_of("a+b+1+0+5"),
            Some(("a+b", 1, 5)),
            "a topic may hold the separator"
        );
        assert_eq!(range_of("2-100-249-0a1b2c3d"), None);
        assert_eq!(range_of("+1+2+3"), None);
        assert_eq!(range_of("t+x+2+3"), None);
    }
}
