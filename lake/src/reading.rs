//! What the lake holds of a table: each object's latest event time. Used by
//! `enricher backfill --compare-lake` to tell new and changed objects from
//! those the lake already has. A Delta table is read through its snapshot
//! (only the files it holds); a plain Parquet table is every file of its
//! folder. Only the `object_id` and `event_timestamp` columns are decoded;
//! small files are fetched with one request each, large ones streamed.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMicrosecondType;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt, TryStreamExt};
use parquet::arrow::arrow_reader::{
    ArrowReaderBuilder, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::async_reader::{
    ParquetObjectReader, ParquetRecordBatchStream, ParquetRecordBatchStreamBuilder,
};
use parquet::arrow::ProjectionMask;
use parquet::errors::ParquetError;
use schemas::Table;

use crate::delta::log::{DeltaError, DeltaTables};
use crate::store::{Lake, LakeError};

/// Why a table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    /// The store failed.
    Store(#[from] LakeError),
    #[error(transparent)]
    /// The table's Delta log could not be read.
    Delta(#[from] DeltaError),
    #[error("reading {path}: {source}")]
    /// A data file could not be decoded.
    Parquet {
        /// The file.
        path: String,
        /// Why.
        source: ParquetError,
    },
}

/// A data file to read: its location in the store and its size.
struct Located {
    location: object_store::path::Path,
    size: u64,
}

/// Each object's latest `event_timestamp` in `table`.
pub async fn latest_per_object(
    lake: &Lake,
    table: Table,
) -> Result<HashMap<String, DateTime<Utc>>, ReadError> {
    let mut latest: HashMap<String, DateTime<Utc>> = HashMap::new();
    let files: Vec<_> = files_of(lake, table)
        .await?
        .into_iter()
        .map(|file| (file.location, file.size))
        .collect();
    let opened = in_order(lake, &files, Some(&["object_id", "event_timestamp"]));
    futures::pin_mut!(opened);
    let mut index = 0;
    while let Some(file) = opened.next().await {
        let parquet = |source| ReadError::Parquet {
            path: files[index].0.to_string(),
            source,
        };
        let mut batches = file.map_err(parquet)?;
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(parquet)?;
            let (Some(ids), Some(times)) = (
                batch.column_by_name("object_id"),
                batch.column_by_name("event_timestamp"),
            ) else {
                continue;
            };
            let (ids, times) = (
                ids.as_string::<i32>(),
                times.as_primitive::<TimestampMicrosecondType>(),
            );
            for row in 0..batch.num_rows() {
                if ids.is_null(row) || times.is_null(row) {
                    continue;
                }
                let Some(time) = DateTime::from_timestamp_micros(times.value(row)) else {
                    continue;
                };
                let entry = latest.entry(ids.value(row).to_string()).or_insert(time);
                *entry = (*entry).max(time);
            }
        }
        index += 1;
    }
    Ok(latest)
}

/// Files up to this size are fetched with one GET and decoded from memory;
/// larger ones are streamed with ranged reads, a row group at a time. Most
/// of a lake's files are far smaller: a flush of a few seconds, or a
/// compacted day.
pub(crate) const FETCHED_WHOLE_UP_TO: u64 = 8 << 20;

/// How many files are fetched ahead of the one being decoded: it hides the
/// store's latency per request, and bounds memory to this many files below
/// [`FETCHED_WHOLE_UP_TO`].
const READ_AHEAD: usize = 8;

/// The record batches of one Parquet file, one at a time.
pub(crate) enum FileBatches {
    /// Fetched whole, decoded from memory.
    Fetched(ParquetRecordBatchReader),
    /// Read with ranged requests as it is consumed.
    Streamed(ParquetRecordBatchStream<ParquetObjectReader>),
}

impl FileBatches {
    /// The next batch, or `None` at the end of the file.
    pub(crate) async fn next(&mut self) -> Option<Result<RecordBatch, ParquetError>> {
        match self {
            FileBatches::Fetched(reader) => reader
                .next()
                .map(|batch| batch.map_err(|e| ParquetError::External(Box::new(e)))),
            FileBatches::Streamed(stream) => stream.try_next().await.transpose(),
        }
    }
}

/// The Parquet files `files` (location, size), in their order, with only
/// `columns` when given: each small file fetched with one request, up to
/// [`READ_AHEAD`] of them in flight, a large one streamed.
pub(crate) fn in_order<'a>(
    lake: &'a Lake,
    files: &'a [(object_store::path::Path, u64)],
    columns: Option<&'a [&'a str]>,
) -> impl Stream<Item = Result<FileBatches, ParquetError>> + 'a {
    futures::stream::iter(files)
        .map(move |(location, size)| open(lake, location.clone(), *size, columns))
        .buffered(READ_AHEAD)
}

/// One file's batches, fetched whole or streamed by its size.
async fn open(
    lake: &Lake,
    location: object_store::path::Path,
    size: u64,
    columns: Option<&[&str]>,
) -> Result<FileBatches, ParquetError> {
    if size <= FETCHED_WHOLE_UP_TO {
        let bytes = lake
            .store()
            .get(&location)
            .await
            .map_err(|e| ParquetError::External(Box::new(e)))?
            .bytes()
            .await
            .map_err(|e| ParquetError::External(Box::new(e)))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
        return Ok(FileBatches::Fetched(projected(builder, columns).build()?));
    }
    let reader = ParquetObjectReader::new(lake.store().clone(), location).with_file_size(size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    Ok(FileBatches::Streamed(projected(builder, columns).build()?))
}

/// `builder` reading only `columns`, when given.
fn projected<T>(builder: ArrowReaderBuilder<T>, columns: Option<&[&str]>) -> ArrowReaderBuilder<T> {
    match columns {
        Some(columns) => {
            let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
            builder.with_projection(mask)
        }
        None => builder,
    }
}

/// The data files `table` holds: a Delta table's active files, or every
/// Parquet file under a plain table's folder.
async fn files_of(lake: &Lake, table: Table) -> Result<Vec<Located>, ReadError> {
    let delta = DeltaTables::new(lake.clone());
    if let Some(current) = delta.latest(table).await? {
        let state = current.snapshot().map_err(DeltaError::of(table))?;
        return Ok(state
            .log_data()
            .iter()
            .map(|file| Located {
                location: lake.path(&format!("{}/{}", table.name(), file.path())),
                size: file.size().max(0) as u64,
            })
            .collect());
    }
    let listed: Vec<_> = lake
        .store()
        .list(Some(&lake.path(table.name())))
        .try_collect()
        .await
        .map_err(LakeError::from)?;
    Ok(listed
        .into_iter()
        .filter(|meta| meta.location.as_ref().ends_with(".parquet"))
        .map(|meta| Located {
            location: meta.location,
            size: meta.size,
        })
        .collect())
}
