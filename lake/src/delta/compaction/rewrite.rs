//! Pass 2 of a day's rewrite: the kept rows, file by file and one batch at
//! a time, cast to the table's schema, into output files of the target
//! size. Encoding runs on the blocking pool, off the async workers.
//!
//! The table's schema is the one its log holds: the sink's columns in
//! their types, and every other column the log declares (added by another
//! engine, or by a newer sink before a rollback) as it is, so that no value
//! is lost to a rewrite.
//!
//! Memory: the input files read ahead (see `reading::in_order`), and one
//! output file up to the target size.

use arrow::array::{new_null_array, ArrayRef, BooleanArray, RecordBatch};
use std::sync::Arc;

use arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};
use bytes::Bytes;
use chrono::NaiveDate;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoArrow;
use deltalake_core::DeltaTable;
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use schemas::Table;

use super::selection::Selection;
use super::{CompactionError, CompactionSettings, Pass};
use crate::data_file::DataFile;
use crate::delta::error::DeltaError;
use crate::encoding::parquet_file::{properties, EncodingError};
use crate::path::{DataPath, PARTITION_COLUMN};
use crate::reading::in_order;
use crate::store::{Lake, Put};

/// The columns a rewrite of `table` writes: the sink's own, then the other
/// columns of the table's schema at `current` (the partition column aside).
pub(super) fn columns(current: &DeltaTable, table: Table) -> Result<SchemaRef, DeltaError> {
    let own = table.schema();
    let snapshot = current.snapshot().map_err(DeltaError::of(table))?;
    let mut fields: Vec<FieldRef> = own.fields().iter().cloned().collect();
    for field in snapshot.schema().fields() {
        if field.name() == PARTITION_COLUMN || own.field_with_name(field.name()).is_ok() {
            continue;
        }
        let other: Field = field.try_into_arrow().map_err(|error| DeltaError::Schema {
            table: table.name(),
            reason: format!("column {}: {error}", field.name()),
        })?;
        fields.push(Arc::new(other.with_nullable(true)));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Where a rewrite's files go: a table's day, named after the pass.
#[derive(Debug, Clone, Copy)]
pub(super) struct Destination {
    pub(super) table: Table,
    pub(super) date: NaiveDate,
    pub(super) pass: Pass,
}

/// Writes the rows `selection` keeps of `files` (location, size) into new
/// files of the destination with `columns` (see [`columns`]), uploaded;
/// returns them.
pub(super) async fn rewrite(
    lake: &Lake,
    destination: Destination,
    columns: &SchemaRef,
    files: &[(object_store::path::Path, u64)],
    selection: &Selection,
    settings: &CompactionSettings,
) -> Result<Vec<DataFile>, CompactionError> {
    let Destination { table, date, pass } = destination;
    let failed = |reason: String| CompactionError::Unreadable {
        table: table.name(),
        date,
        reason,
    };
    let schema = columns.clone();
    let mut output = Output::new(table, date, settings, pass);
    let opened = in_order(lake, files, None);
    futures::pin_mut!(opened);
    let mut index = 0;
    while let Some(file) = opened.next().await {
        let path = files[index].0.to_string();
        let mut batches = file.map_err(|e| failed(format!("reading {path}: {e}")))?;
        let mut row = 0;
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(|e| failed(format!("reading {path}: {e}")))?;
            let mask: BooleanArray = (row..row + batch.num_rows())
                .map(|r| Some(selection.keeps(index, r)))
                .collect();
            row += batch.num_rows();
            let kept = arrow::compute::filter_record_batch(&batch, &mask)
                .map_err(|e| failed(format!("filtering {path}: {e}")))?;
            let kept = conform(&kept, &schema).map_err(|e| failed(format!("{path}: {e}")))?;
            output.write(kept).await?;
            if output.full() {
                output.close(lake).await?;
            }
        }
        index += 1;
    }
    output.close(lake).await?;
    Ok(output.written)
}

/// `batch` in the table's schema: each column cast to its declared type,
/// a missing nullable column filled with nulls.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, String> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
            Some(column) => arrow::compute::cast(column, field.data_type()).map_err(|e| {
                format!(
                    "column {} does not cast to {}: {e}",
                    field.name(),
                    field.data_type()
                )
            }),
            None if field.is_nullable() => Ok(new_null_array(field.data_type(), batch.num_rows())),
            None => Err(format!("the required column {} is missing", field.name())),
        })
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

/// The largest open row group, before compression: bounds the memory of the
/// encoder apart from the file's encoded bytes.
const ROW_GROUP_BYTES: usize = 32 << 20;

/// The output files of a day: one open writer at a time.
struct Output<'s> {
    table: Table,
    date: NaiveDate,
    settings: &'s CompactionSettings,
    pass: Pass,
    writer: Option<ArrowWriter<Vec<u8>>>,
    rows: usize,
    written: Vec<DataFile>,
}

impl<'s> Output<'s> {
    fn new(table: Table, date: NaiveDate, settings: &'s CompactionSettings, pass: Pass) -> Self {
        Output {
            table,
            date,
            settings,
            pass,
            writer: None,
            rows: 0,
            written: Vec::new(),
        }
    }

    fn parquet_error(&self, source: EncodingError) -> CompactionError {
        CompactionError::Parquet {
            table: self.table.name(),
            date: self.date,
            source,
        }
    }

    /// Encodes `batch` on the blocking pool.
    async fn write(&mut self, batch: RecordBatch) -> Result<(), CompactionError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let writer = match self.writer.take() {
            Some(writer) => writer,
            // Room for the whole file from the start: growing by doubling
            // would copy it, holding two copies at once; pages not written
            // are never resident.
            None => ArrowWriter::try_new(
                Vec::with_capacity(self.settings.target_bytes + ROW_GROUP_BYTES),
                batch.schema(),
                Some(properties(self.settings.compression)),
            )
            .map_err(|e| self.parquet_error(e.into()))?,
        };
        let rows = batch.num_rows();
        let group_bytes = self.settings.target_bytes.min(ROW_GROUP_BYTES);
        let encoded = tokio::task::spawn_blocking(move || {
            let mut writer = writer;
            writer.write(&batch)?;
            // The open row group's size is measured before compression: it
            // is closed at 32 MiB (or the target, if smaller), and the file
            // at the target of closed groups, so every file but a day's last
            // one is at least the target.
            if writer.in_progress_size() >= group_bytes {
                writer.flush()?;
            }
            Ok::<_, parquet::errors::ParquetError>(writer)
        })
        .await
        .expect("encoding does not panic");
        self.writer = Some(encoded.map_err(|e| self.parquet_error(e.into()))?);
        self.rows += rows;
        Ok(())
    }

    fn full(&self) -> bool {
        self.writer
            .as_ref()
            .is_some_and(|w| w.bytes_written() >= self.settings.target_bytes)
    }

    /// Closes and uploads the open file, if any.
    async fn close(&mut self, lake: &Lake) -> Result<(), CompactionError> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        let (table, date) = (self.table, self.date);
        let bytes = tokio::task::spawn_blocking(move || writer.into_inner())
            .await
            .expect("encoding does not panic")
            .map(Bytes::from)
            .map_err(|e| self.parquet_error(e.into()))?;
        let size = bytes.len();
        // Names are random: a taken one (never seen yet) is drawn again.
        let path = loop {
            let path = DataPath {
                table,
                date,
                stem: self.pass.stem(),
            };
            let put = lake
                .put(
                    &lake.path(&path.in_lake()),
                    bytes.clone(),
                    &self.settings.upload,
                )
                .await;
            match put {
                Ok(Put::Created) => break path,
                Ok(Put::AlreadyExisted) => continue,
                Err(source) => {
                    return Err(CompactionError::Store {
                        table: table.name(),
                        date,
                        source,
                    })
                }
            }
        };
        let rows = std::mem::take(&mut self.rows);
        self.written.push(DataFile {
            path,
            size,
            rows,
            stats: Some(crate::statistics::delta_stats(table, &bytes, rows)),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{LargeStringArray, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn other_writers_types_conform_to_the_table() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("note", DataType::Utf8, true),
        ]));
        let foreign = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "event_id",
                DataType::LargeUtf8,
                false,
            )])),
            vec![Arc::new(LargeStringArray::from(vec!["a", "b"]))],
        )
        .expect("a batch");
        let conformed = conform(&foreign, &schema).expect("conforms");
        assert_eq!(conformed.schema(), schema);
        let ids = conformed
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("utf8");
        assert_eq!(ids.value(1), "b");
        assert_eq!(conformed.column(1).null_count(), 2);
        let missing = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("note", DataType::Utf8, true)])),
            vec![Arc::new(StringArray::from(vec![Some("x")]))],
        )
        .expect("a batch");
        assert!(conform(&missing, &schema).is_err());
    }
}
