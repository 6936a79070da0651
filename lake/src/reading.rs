//! What the lake holds of a table: each object's latest event time, read
//! from the `object_id` and `event_timestamp` columns of every file. Used by
//! `enricher backfill --compare-lake` to tell new and changed objects from
//! those the lake already has.

use std::collections::HashMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMicrosecondType;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use schemas::Table;

use crate::store::{Lake, LakeError};

/// Each object's latest `event_timestamp` in `table`.
pub async fn latest_per_object(
    lake: &Lake,
    table: Table,
) -> Result<HashMap<String, DateTime<Utc>>, LakeError> {
    let prefix = lake.path(table.name());
    let files: Vec<_> = lake
        .store()
        .list(Some(&prefix))
        .try_filter(|meta| {
            let path = meta.location.as_ref();
            std::future::ready(path.ends_with(".parquet") && !path.contains("/_delta_log/"))
        })
        .try_collect()
        .await?;
    let mut latest: HashMap<String, DateTime<Utc>> = HashMap::new();
    for file in files {
        let bytes = lake.store().get(&file.location).await?.bytes().await?;
        let footer = |source| LakeError::Footer {
            path: file.location.to_string(),
            source,
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(footer)?;
        let mask =
            ProjectionMask::columns(builder.parquet_schema(), ["object_id", "event_timestamp"]);
        for batch in builder.with_projection(mask).build().map_err(footer)? {
            let batch = batch.map_err(|e| footer(e.into()))?;
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
