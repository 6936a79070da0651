//! Arrow batches to Parquet bytes, with the settings warehouses read well:
//! microsecond UTC timestamps (from the schemas), dictionary and statistics on,
//! zstd by default, and key-value metadata saying where the rows came from.

use std::str::FromStr;

use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use schemas::{EnrichedView, Table};

use crate::encoding::table_builder::{TableBuilder, TableError};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
/// Why a Parquet file could not be encoded.
pub enum EncodingError {
    #[error(transparent)]
    /// The Arrow batch could not be built.
    Table(#[from] TableError),
    #[error("writing parquet: {0}")]
    /// Parquet encoding failed.
    Parquet(#[from] parquet::errors::ParquetError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// The Parquet files' compression codec.
pub enum Compression {
    /// zstd (the default): small files, fast to read.
    Zstd,
    /// Snappy: faster to write, larger files.
    Snappy,
    /// No compression.
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
/// A row group is also closed at this encoded size (warehouses read row
/// groups of 64 to 256 MiB best).
const ROW_GROUP_BYTES: usize = 128 * 1024 * 1024;
/// Rows are handed from the Arrow builder to the Parquet writer in chunks of
/// at most this many rows; the writer's size is measured at those points.
const CHUNK_ROWS: usize = 8 * 1024;

pub(crate) fn properties(compression: Compression) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(compression.parquet())
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(concat!("mobaro-lake sink ", env!("CARGO_PKG_VERSION")).to_string());
    // Unique per row: a dictionary only costs time before it falls back.
    // Statistics per column chunk (not per page): their null counts go into
    // the Delta `add` (`record_json`'s tells the rows with a record, against
    // which the typed columns' null shares are judged), and `event_id`'s
    // bounds let a lookup by id skip files. Bounds are cut to 64 bytes.
    for column in Table::unique_columns() {
        builder = builder
            .set_column_dictionary_enabled((*column).into(), false)
            .set_column_statistics_enabled((*column).into(), EnabledStatistics::Chunk);
    }
    builder.build()
}

/// One Parquet file being written: rows go into an Arrow builder, then in
/// chunks into a Parquet writer that encodes and compresses them in memory.
pub(crate) struct ParquetFile {
    builder: TableBuilder,
    writer: ArrowWriter<Vec<u8>>,
    rows: usize,
    /// Input bytes in the builder, not yet handed to the writer.
    pending_bytes: usize,
    chunk_bytes: usize,
    /// SHA-256 over the event_ids of the rows, in order: identifies the
    /// file's content, so that a file found under its name can be told apart
    /// from one that merely has the same name.
    content: Sha256,
}

/// Key-value metadata key of the content digest (hex SHA-256 of the rows'
/// event_ids, in order).
pub(crate) const CONTENT_DIGEST_KEY: &str = "mobaro_lake.event_ids_sha256";

impl ParquetFile {
    /// Rows go to the writer in chunks of `chunk_bytes` input bytes (or
    /// 8192 rows): the writer measures the file at those points.
    pub(crate) fn new(
        table: Table,
        compression: Compression,
        chunk_bytes: usize,
        monitors: bool,
    ) -> Result<Self, EncodingError> {
        let builder = TableBuilder::new(table, monitors);
        let writer =
            ArrowWriter::try_new(Vec::new(), builder.schema(), Some(properties(compression)))?;
        Ok(ParquetFile {
            builder,
            writer,
            rows: 0,
            pending_bytes: 0,
            chunk_bytes,
            content: Sha256::new(),
        })
    }

    /// Appends one record, `size` bytes of input.
    pub(crate) fn append(
        &mut self,
        record: &EnrichedView<'_>,
        size: usize,
    ) -> Result<(), EncodingError> {
        self.builder.append(record);
        self.content.update(record.event_id.as_bytes());
        self.content.update(b"\n");
        self.rows += 1;
        self.pending_bytes += size;
        if self.builder.len() >= CHUNK_ROWS || self.pending_bytes >= self.chunk_bytes {
            self.write_pending()?;
        }
        Ok(())
    }

    fn write_pending(&mut self) -> Result<(), EncodingError> {
        if self.builder.is_empty() {
            return Ok(());
        }
        self.writer.write(&self.builder.finish()?)?;
        self.pending_bytes = 0;
        if self.writer.in_progress_size() >= ROW_GROUP_BYTES {
            self.writer.flush()?;
        }
        Ok(())
    }

    /// Rows appended so far.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// The file's size so far as the writer measures it: row groups written
    /// plus its estimate of the open one. Rows of the current chunk are not in
    /// it yet.
    pub(crate) fn encoded_bytes(&self) -> usize {
        self.writer.bytes_written() + self.writer.in_progress_size()
    }

    /// Memory held for this file: the encoded bytes, the writer's open pages
    /// and the input waiting in the builder.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.writer.bytes_written() + self.writer.memory_size() + self.pending_bytes
    }

    /// Closes the file, with `metadata` and the content digest added to its
    /// key-value metadata; returns the bytes and the metadata added.
    pub(crate) fn finish(
        mut self,
        mut metadata: Vec<(String, String)>,
    ) -> Result<(Bytes, Vec<(String, String)>), EncodingError> {
        self.write_pending()?;
        metadata.push((
            CONTENT_DIGEST_KEY.to_string(),
            hex::encode(self.content.finalize()),
        ));
        for (key, value) in &metadata {
            self.writer
                .append_key_value_metadata(KeyValue::new(key.clone(), Some(value.clone())));
        }
        Ok((Bytes::from(self.writer.into_inner()?), metadata))
    }
}

/// A Parquet file of one `events` row, with `metadata`, for tests of what
/// reads files back.
#[cfg(test)]
pub(crate) fn one_event_file(
    metadata: Vec<(String, String)>,
) -> (bytes::Bytes, Vec<(String, String)>) {
    let mut file =
        ParquetFile::new(schemas::Table::Events, Compression::Zstd, 1 << 20, true).expect("file");
    let text = r#"{"event_id":"00000000000000000000000000000001","resource":"Users","event":"Updated","object_id":"users/1-A","event_timestamp":"2025-03-01T08:00:00Z","received_at":null,"fetched_at":null,"status":"not_fetched"}"#;
    let record = schemas::EnrichedView::from_json(text.as_bytes()).expect("decodes");
    file.append(&record, text.len()).expect("appends");
    file.finish(metadata).expect("closes")
}
