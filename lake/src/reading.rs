//! What the lake holds of a table: each object's latest event time. Used by
//! `enricher backfill --compare-lake` to tell new and changed objects from
//! those the lake already has. A Delta table is read through its snapshot
//! (only the files it holds); a plain Parquet table is every file of its
//! folder. Only the `object_id` and `event_timestamp` columns are fetched,
//! with ranged reads.

use std::collections::HashMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMicrosecondType;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use parquet::arrow::async_reader::{
    ParquetObjectReader, ParquetRecordBatchStream, ParquetRecordBatchStreamBuilder,
};
use parquet::arrow::ProjectionMask;
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
        source: parquet::errors::ParquetError,
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
    for file in files_of(lake, table).await? {
        let path = file.location.to_string();
        let parquet = |source| ReadError::Parquet {
            path: path.clone(),
            source,
        };
        let reader =
            ParquetObjectReader::new(lake.store().clone(), file.location).with_file_size(file.size);
        let builder = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(parquet)?;
        let mask =
            ProjectionMask::columns(builder.parquet_schema(), ["object_id", "event_timestamp"]);
        let mut batches = builder.with_projection(mask).build().map_err(parquet)?;
        while let Some(batch) = batches.try_next().await.map_err(parquet)? {
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
    }
    Ok(latest)
}

/// The record batches of the Parquet file at `location` (`size` bytes),
/// with only `columns` when given, read with ranged requests as they are
/// consumed: one row group in memory at a time.
pub(crate) async fn batches(
    lake: &Lake,
    location: object_store::path::Path,
    size: u64,
    columns: Option<&[&str]>,
) -> Result<ParquetRecordBatchStream<ParquetObjectReader>, parquet::errors::ParquetError> {
    let reader = ParquetObjectReader::new(lake.store().clone(), location).with_file_size(size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    let builder = match columns {
        Some(columns) => {
            let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
            builder.with_projection(mask)
        }
        None => builder,
    };
    builder.build()
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
