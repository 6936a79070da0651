//! What the lake holds of a table: each object's latest event time (used by
//! `enricher backfill --compare-lake` to tell new and changed objects from
//! those the lake already has), and the event ids of recent days (used by the
//! sink to leave out records a table holds). A Delta table is read through its snapshot
//! (only the files it holds); a plain Parquet table is every file of its
//! folder. Only the `object_id` and `event_timestamp` columns are decoded;
//! small files are fetched with one request each, large ones streamed.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMicrosecondType;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use futures::future::BoxFuture;
use futures::FutureExt;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::arrow_reader::{
    ArrowReaderBuilder, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::async_reader::{
    AsyncFileReader, ParquetRecordBatchStream, ParquetRecordBatchStreamBuilder,
};
use parquet::arrow::ProjectionMask;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use schemas::Table;

use crate::delta::error::DeltaError;
use crate::delta::log::DeltaTables;
use crate::event_ids::{digest, EventIds};
use crate::path::DataPath;
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
    let files: Vec<_> = files_of(&DeltaTables::new(lake.clone()), table)
        .await?
        .into_iter()
        .map(|file| (file.location, file.size))
        .collect();
    each_batch(
        lake,
        &files,
        &["object_id", "event_timestamp"],
        |_, batch| {
            let (Some(ids), Some(times)) = (
                batch.column_by_name("object_id"),
                batch.column_by_name("event_timestamp"),
            ) else {
                return true;
            };
            let Some(times) = times.as_primitive_opt::<TimestampMicrosecondType>() else {
                return true;
            };
            for (row, id) in texts(ids).into_iter().enumerate() {
                let Some(id) = id.filter(|_| !times.is_null(row)) else {
                    continue;
                };
                let Some(time) = DateTime::from_timestamp_micros(times.value(row)) else {
                    continue;
                };
                let entry = latest.entry(id.to_string()).or_insert(time);
                *entry = (*entry).max(time);
            }
            true
        },
    )
    .await?;
    Ok(latest)
}

/// The `event_id`s `tables` hold on the days from `since` to `until`
/// (without end when `None`), from the tables' states `delta` has loaded
/// (brought up to date, not read again). Days are read newest first, and
/// the read stops within the first day that takes the ids past `limit`
/// bytes: that day and the older ones are left untracked (the result's
/// `since` says from which day on the ids are whole), so the ids never
/// take much more than `limit`.
pub(crate) async fn held_event_ids_between(
    delta: &DeltaTables,
    tables: &[Table],
    since: NaiveDate,
    until: Option<NaiveDate>,
    limit: usize,
) -> Result<EventIds, ReadError> {
    let lake = delta.lake();
    let mut files: Vec<(NaiveDate, Table, object_store::path::Path, u64)> = vec![];
    for &table in tables {
        files.extend(
            files_of(delta, table)
                .await?
                .into_iter()
                .filter_map(|file| {
                    let relative = file
                        .location
                        .as_ref()
                        .rsplit(&format!("{}/", table.name()))
                        .next()?;
                    let date = DataPath::parse_in_table(table, relative)?.date;
                    (date >= since && until.is_none_or(|until| date <= until)).then_some((
                        date,
                        table,
                        file.location,
                        file.size,
                    ))
                }),
        );
    }
    files.sort_by_key(|file| std::cmp::Reverse(file.0));
    let mut held = EventIds::new(since);
    for day in files.chunk_by(|a, b| a.0 == b.0) {
        let date = day[0].0;
        let located: Vec<_> = day.iter().map(|(_, _, l, s)| (l.clone(), *s)).collect();
        let mut whole = true;
        each_batch(lake, &located, &["event_id"], |index, batch| {
            let table = day[index].1;
            let ids = batch
                .column_by_name("event_id")
                .map(texts)
                .unwrap_or_default();
            held.extend(
                ids.into_iter()
                    .flatten()
                    .map(|id| (table, date, digest(id))),
            );
            whole = held.bytes() <= limit;
            whole
        })
        .await?;
        if !whole {
            held.forget_before(date + chrono::Days::new(1));
            break;
        }
    }
    Ok(held)
}

/// Calls `each` with the index of the file and each record batch of `files`
/// (location, size), in order, decoding only `columns`; `each` returns false
/// to stop early.
pub(crate) async fn each_batch(
    lake: &Lake,
    files: &[(object_store::path::Path, u64)],
    columns: &[&str],
    mut each: impl FnMut(usize, &RecordBatch) -> bool,
) -> Result<(), ReadError> {
    let opened = in_order(lake, files, Some(columns));
    futures::pin_mut!(opened);
    let mut index = 0;
    while let Some(file) = opened.next().await {
        let parquet = |source| ReadError::Parquet {
            path: files[index].0.to_string(),
            source,
        };
        let mut batches = file.map_err(parquet)?;
        while let Some(batch) = batches.next().await {
            if !each(index, &batch.map_err(parquet)?) {
                return Ok(());
            }
        }
        index += 1;
    }
    Ok(())
}

/// The values of a string column, whichever layout its writer chose
/// (`Utf8`, `LargeUtf8`, or the `Utf8View` of DataFusion-based writers such
/// as Python `deltalake`); none for another type.
pub(crate) fn texts(column: &arrow::array::ArrayRef) -> Vec<Option<&str>> {
    if let Some(texts) = column.as_string_opt::<i32>() {
        texts.iter().collect()
    } else if let Some(texts) = column.as_string_opt::<i64>() {
        texts.iter().collect()
    } else if let Some(texts) = column.as_string_view_opt() {
        texts.iter().collect()
    } else {
        Vec::new()
    }
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
    Streamed(ParquetRecordBatchStream<StoredFile>),
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
    let reader = StoredFile {
        store: lake.store().clone(),
        location,
        size,
    };
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    Ok(FileBatches::Streamed(projected(builder, columns).build()?))
}

/// A Parquet file of known size in the store, read with ranged requests:
/// its footer from the end (no request for its size), then the column
/// chunks the decoder asks for.
pub(crate) struct StoredFile {
    store: Arc<dyn ObjectStore>,
    location: object_store::path::Path,
    size: u64,
}

fn store_error(error: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(error))
}

impl AsyncFileReader for StoredFile {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.location, range)
                .await
                .map_err(store_error)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.location, &ranges)
                .await
                .map_err(store_error)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_metadata_options(options.map(|o| o.metadata_options().clone()))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
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
async fn files_of(delta: &DeltaTables, table: Table) -> Result<Vec<Located>, ReadError> {
    let lake = delta.lake();
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, LargeStringArray, StringArray, StringViewArray};

    use super::texts;

    #[test]
    fn ids_read_whatever_string_layout_their_writer_chose() {
        let columns: [ArrayRef; 3] = [
            Arc::new(StringArray::from(vec![Some("a"), None])),
            Arc::new(LargeStringArray::from(vec![Some("a"), None])),
            Arc::new(StringViewArray::from(vec![Some("a"), None])),
        ];
        for column in &columns {
            assert_eq!(texts(column), [Some("a"), None], "{:?}", column.data_type());
        }
    }
}
