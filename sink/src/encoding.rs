//! Arrow batches to Parquet bytes, with the settings warehouses read well:
//! microsecond UTC timestamps (from the schemas), dictionary and statistics on,
//! zstd by default, and key-value metadata saying where the rows came from.

use std::str::FromStr;

use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use schemas::{EnrichedRecord, Table};

#[derive(Debug, thiserror::Error)]
pub enum EncodingError {
    #[error(transparent)]
    Table(#[from] schemas::TableError),
    #[error("writing parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Snappy,
    None,
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "zstd" => Ok(Compression::Zstd),
            "snappy" => Ok(Compression::Snappy),
            "none" | "uncompressed" => Ok(Compression::None),
            other => Err(format!(
                "unknown compression {other:?} (zstd, snappy or none)"
            )),
        }
    }
}

impl Compression {
    fn parquet(self) -> ParquetCompression {
        match self {
            Compression::Zstd => {
                ParquetCompression::ZSTD(ZstdLevel::try_new(3).expect("3 is a valid zstd level"))
            }
            Compression::Snappy => ParquetCompression::SNAPPY,
            Compression::None => ParquetCompression::UNCOMPRESSED,
        }
    }
}

/// Rows per row group: large enough for warehouse scans, small enough to bound
/// the writer's memory.
const ROW_GROUP_ROWS: usize = 128 * 1024;

pub fn encode(
    table: Table,
    records: &[&EnrichedRecord],
    compression: Compression,
    metadata: Vec<(String, String)>,
) -> Result<Bytes, EncodingError> {
    let batch = table.to_batch(records)?;
    let properties = WriterProperties::builder()
        .set_compression(compression.parquet())
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        // Unique per row: a dictionary only costs time before it falls back,
        // and min/max of whole JSON documents help no query.
        .set_column_dictionary_enabled("record_json".into(), false)
        .set_column_statistics_enabled("record_json".into(), EnabledStatistics::None)
        .set_column_dictionary_enabled("event_id".into(), false)
        .set_max_row_group_size(ROW_GROUP_ROWS)
        .set_created_by(concat!("mobaro-lake sink ", env!("CARGO_PKG_VERSION")).to_string())
        .set_key_value_metadata(Some(
            metadata
                .into_iter()
                .map(|(k, v)| KeyValue::new(k, v))
                .collect(),
        ))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), table.schema(), Some(properties))?;
    writer.write(&batch)?;
    Ok(Bytes::from(writer.into_inner()?))
}
