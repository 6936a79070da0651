//! Checkpoints without the tombstones of short-lived files.
//!
//! A checkpoint carries, besides the active files, a tombstone for every
//! file removed within `delta.deletedFileRetentionDuration` (7 days): so
//! that a vacuum judging files by their age alone does not delete a file
//! written long ago and removed only recently. With a commit every second,
//! nearly every file is a small one that an open-day merge removes within
//! minutes of its writing: a day of them is tens of thousands of
//! tombstones, which every reader of every checkpoint reads (DuckDB pays
//! about 2 µs each on every query) and which make each checkpoint larger
//! the older the week.
//!
//! Such a file needs no tombstone: whoever deletes by age (this sink's
//! vacuum, a Spark or delta-rs full vacuum) keeps it for the retention after
//! its writing, which is the retention after its removal less the minutes in
//! between. So the sink's removes carry, in their `tags`, when the removed
//! file was added ([`ADDED_TAG`]), and the checkpoints written here leave out
//! the tombstones of files removed within [`SHORT_LIVED`] of their addition.
//! Every other tombstone (compaction of a closed day, erasure, another
//! writer's removes, which carry no tag) is kept as the protocol says. The
//! commits themselves keep every remove, so time travel and conflict checks
//! see them as before; the vacuum deletes untagged orphans by age with
//! [`SHORT_LIVED`] added to its retention, so no file leaves sooner than
//! the retention after its removal.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, Int64Array, MapArray, StringArray, StructArray};
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::snapshot::Snapshot;
use delta_kernel::FilteredEngineData;
use deltalake_core::logstore::LogStoreRef;
use deltalake_core::{DeltaResult, DeltaTableError};
use object_store::ObjectStoreExt;

/// The tag of a remove that holds when the removed file was added
/// (milliseconds since the epoch, the add's `modificationTime`).
pub(crate) const ADDED_TAG: &str = "mobaro.addedAt";

/// Files removed within this of their addition get no tombstone in the
/// checkpoints; the vacuum keeps untagged files this much longer.
pub(crate) const SHORT_LIVED: Duration = Duration::from_secs(3600);

/// `_last_checkpoint`: the latest checkpoint, and what it holds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LastCheckpoint {
    pub(crate) version: u64,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    size_in_bytes: u64,
    #[serde(default)]
    num_of_add_files: i64,
}

/// What a checkpoint holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// Actions written.
    pub(crate) actions: i64,
    /// Of which active files.
    pub(crate) files: i64,
    /// Tombstones left out.
    pub(crate) short_lived: i64,
}

/// Writes the checkpoint of the table in `log_store` at `version`, then
/// `_last_checkpoint` unless it already names a later one.
pub(crate) async fn write(log_store: &LogStoreRef, version: u64) -> DeltaResult<Written> {
    let root = log_store.transaction_url(None)?;
    let engine = log_store.engine(None);
    let written = tokio::task::spawn_blocking(move || -> DeltaResult<Option<Written>> {
        let snapshot = Snapshot::builder_for(root)
            .at_version(version)
            .build(engine.as_ref())?;
        if snapshot.log_segment().checkpoint_version == Some(version) {
            // Written already: a second copy could change under a reader.
            return Ok(None);
        }
        let writer = snapshot.create_checkpoint_writer(engine.as_ref())?;
        let path = writer.checkpoint_path()?;
        let counts = Arc::new(std::sync::Mutex::new(Written::default()));
        let counting = counts.clone();
        let now = chrono::Utc::now().timestamp_millis();
        let batches = writer.checkpoint_data(engine.as_ref())?.map(move |batch| {
            let (data, mut selected) = batch?.into_parts();
            let kept = keep(data, &mut selected, now)?;
            let mut counts = counting.lock().unwrap_or_else(|p| p.into_inner());
            counts.actions += kept.actions;
            counts.files += kept.files;
            counts.short_lived += kept.short_lived;
            Ok(kept.data)
        });
        engine
            .parquet_handler()
            .write_parquet_file(path.clone(), Box::new(batches))?;
        let counts = *counts.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Some(counts))
    })
    .await
    .map_err(|error| DeltaTableError::Generic(format!("writing a checkpoint: {error}")))??;
    let Some(counts) = written else {
        return Ok(Written::default());
    };
    let store = log_store.object_store(None);
    let log = log_store.log_path();
    let checkpoint = log
        .clone()
        .join(format!("{version:020}.checkpoint.parquet"));
    let size = store.head(&checkpoint).await?.size;
    let hint = log.clone().join("_last_checkpoint");
    let newer = match store.get(&hint).await {
        // One that does not parse is replaced.
        Ok(found) => serde_json::from_slice::<LastCheckpoint>(&found.bytes().await?)
            .is_ok_and(|last| last.version > version),
        Err(object_store::Error::NotFound { .. }) => false,
        Err(error) => return Err(error.into()),
    };
    if !newer {
        let last = LastCheckpoint {
            version,
            size: counts.actions,
            size_in_bytes: size,
            num_of_add_files: counts.files,
        };
        store.put(&hint, serde_json::to_vec(&last)?.into()).await?;
    }
    Ok(counts)
}

/// The paths the commits from `latest` back to the first one older than
/// `since` (milliseconds since the epoch, by the commit's own timestamp)
/// removed: the tombstones a checkpoint may have left out, for files
/// added after `since`. One GET per commit read; a log cleaned below stops
/// the walk.
pub(crate) async fn removed_since(
    log_store: &LogStoreRef,
    latest: u64,
    since: i64,
) -> DeltaResult<std::collections::HashSet<String>> {
    let store = log_store.object_store(None);
    let log = log_store.log_path();
    let mut removed = std::collections::HashSet::new();
    for version in (0..=latest).rev() {
        let entry = log.clone().join(format!("{version:020}.json"));
        let bytes = match store.get(&entry).await {
            Ok(found) => found.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => break,
            Err(error) => return Err(error.into()),
        };
        let mut older = false;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(action) = serde_json::from_slice::<serde_json::Value>(line) else {
                continue;
            };
            if let Some(path) = action["remove"]["path"].as_str() {
                removed.insert(path.to_string());
            }
            if let Some(at) = action["commitInfo"]["timestamp"].as_i64() {
                older = at < since;
            }
        }
        if older {
            break;
        }
    }
    Ok(removed)
}

/// A batch of checkpoint actions with the short-lived tombstones left out.
struct Kept {
    data: Box<dyn delta_kernel::EngineData>,
    actions: i64,
    files: i64,
    short_lived: i64,
}

fn keep(
    data: Box<dyn delta_kernel::EngineData>,
    selected: &mut Vec<bool>,
    now: i64,
) -> delta_kernel::DeltaResult<Kept> {
    let arrow = ArrowEngineData::try_from_engine_data(data)?;
    let batch = arrow.record_batch();
    let rows = batch.num_rows();
    // A selection vector shorter than the batch selects the rest.
    selected.resize(rows, true);
    let mut short_lived = 0;
    if let Some(removes) = struct_column(batch.column_by_name("remove")) {
        let deleted = removes
            .column_by_name("deletionTimestamp")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>());
        let tags = removes
            .column_by_name("tags")
            .and_then(|c| c.as_any().downcast_ref::<MapArray>());
        if let (Some(deleted), Some(tags)) = (deleted, tags) {
            for (row, selected) in selected.iter_mut().enumerate() {
                if !*selected || removes.is_null(row) || deleted.is_null(row) {
                    continue;
                }
                let Some(added) = added_at(tags, row) else {
                    continue;
                };
                let lived = deleted.value(row).saturating_sub(added);
                // Never before the file was added: a clock skew keeps it.
                if (0..=SHORT_LIVED.as_millis() as i64).contains(&lived)
                    && now >= deleted.value(row)
                {
                    *selected = false;
                    short_lived += 1;
                }
            }
        }
    }
    let files = struct_column(batch.column_by_name("add")).map_or(0, |adds| {
        (0..rows)
            .filter(|&row| selected[row] && !adds.is_null(row))
            .count() as i64
    });
    let actions = selected.iter().filter(|s| **s).count() as i64;
    let data =
        FilteredEngineData::try_new(arrow, std::mem::take(selected))?.apply_selection_vector()?;
    Ok(Kept {
        data,
        actions,
        files,
        short_lived,
    })
}

fn struct_column(column: Option<&ArrayRef>) -> Option<&StructArray> {
    column.and_then(|c| c.as_any().downcast_ref::<StructArray>())
}

/// The [`ADDED_TAG`] of the remove in `row`, if it has one.
fn added_at(tags: &MapArray, row: usize) -> Option<i64> {
    if tags.is_null(row) {
        return None;
    }
    let entries = tags.value(row);
    let keys = entries.column(0).as_any().downcast_ref::<StringArray>()?;
    let values = entries.column(1).as_any().downcast_ref::<StringArray>()?;
    (0..keys.len())
        .find(|&i| keys.value(i) == ADDED_TAG && !values.is_null(i))
        .and_then(|i| values.value(i).parse().ok())
}
