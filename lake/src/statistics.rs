//! A data file's statistics as a Delta `add` carries them: `numRecords`,
//! and per top-level column (the first 32, Delta's default) `nullCount`,
//! `minValues` and `maxValues`, read from the Parquet footer's row-group
//! statistics. Readers that skip files by statistics (Athena, DuckDB's
//! delta extension, Spark, Trino) then read only the files a filter can
//! match.
//!
//! Bounds are only ever widened, never narrowed: timestamps are written to
//! the millisecond (as Delta does), the minimum rounded down and the maximum
//! up; strings longer than 32 characters (Delta's default prefix) and types
//! without an agreed JSON form get a null count only.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use bytes::Bytes;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::parquet_to_arrow_schema;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use schemas::Table;
use serde_json::{Map, Number, Value};

/// Columns with statistics, as Delta's `dataSkippingNumIndexedCols`.
const INDEXED_COLUMNS: usize = 32;

/// Longest string kept as a bound, as Delta's string prefix length.
const STRING_PREFIX: usize = 32;

/// The statistics JSON of `table`'s Parquet file `bytes` holding `rows`
/// rows; only `numRecords` when its footer cannot be read. Personal columns
/// ([`Table::personal_columns`]) get a null count only.
pub(crate) fn delta_stats(table: Table, bytes: &Bytes, rows: usize) -> String {
    let metadata = ParquetMetaDataReader::new().parse_and_finish(bytes).ok();
    stats_json(rows, metadata.as_ref().and_then(|m| columns(table, m)))
}

/// The statistics JSON of a Parquet file of `table` from its footer's
/// `metadata`.
pub(crate) fn delta_stats_of(table: Table, metadata: &ParquetMetaData) -> String {
    let rows = usize::try_from(metadata.file_metadata().num_rows()).unwrap_or_default();
    stats_json(rows, columns(table, metadata))
}

/// `stats` (a Delta `add`'s statistics JSON) without bounds for `table`'s
/// personal columns, or None when it has none of them.
pub(crate) fn without_personal_bounds(table: Table, stats: &str) -> Option<String> {
    let mut parsed: Value = serde_json::from_str(stats).ok()?;
    let mut changed = false;
    for bounds in ["minValues", "maxValues"] {
        if let Some(Value::Object(values)) = parsed.get_mut(bounds) {
            for column in table.personal_columns() {
                changed |= values.remove(*column).is_some();
            }
        }
    }
    changed.then(|| parsed.to_string())
}

fn stats_json(rows: usize, columns: Option<Bounds>) -> String {
    let mut stats = Map::new();
    stats.insert("numRecords".into(), Value::from(rows));
    if let Some((min, max, nulls)) = columns {
        stats.insert("minValues".into(), Value::Object(min));
        stats.insert("maxValues".into(), Value::Object(max));
        stats.insert("nullCount".into(), Value::Object(nulls));
    }
    Value::Object(stats).to_string()
}

type Bounds = (Map<String, Value>, Map<String, Value>, Map<String, Value>);

fn columns(table: Table, metadata: &ParquetMetaData) -> Option<Bounds> {
    let file = metadata.file_metadata();
    let schema = parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata()).ok()?;
    let (mut min, mut max, mut nulls) = (Map::new(), Map::new(), Map::new());
    for field in schema.fields().iter().take(INDEXED_COLUMNS) {
        if field.data_type().is_nested() {
            continue;
        }
        let Ok(converter) =
            StatisticsConverter::try_new(field.name(), &schema, file.schema_descr())
        else {
            continue;
        };
        let groups = metadata.row_groups();
        if let Ok(counts) = converter.row_group_null_counts(groups.iter()) {
            if counts.null_count() == 0 {
                let total: u64 = counts.values().iter().sum();
                nulls.insert(field.name().clone(), Value::from(total));
            }
        }
        if table.personal_columns().contains(&field.name().as_str()) {
            continue;
        }
        let (Ok(mins), Ok(maxes)) = (
            converter.row_group_mins(groups.iter()),
            converter.row_group_maxes(groups.iter()),
        ) else {
            continue;
        };
        // A row group without a bound (all nulls, or none written) leaves
        // the file without one.
        if mins.null_count() > 0 || maxes.null_count() > 0 || mins.is_empty() {
            continue;
        }
        if let (Some(low), Some(high)) = (bound(&mins, Edge::Low), bound(&maxes, Edge::High)) {
            min.insert(field.name().clone(), low);
            max.insert(field.name().clone(), high);
        }
    }
    Some((min, max, nulls))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Edge {
    Low,
    High,
}

/// The lowest (or highest) of the row groups' bounds, as Delta's JSON.
fn bound(values: &ArrayRef, edge: Edge) -> Option<Value> {
    fn pick<T: PartialOrd + Copy>(values: impl Iterator<Item = T>, edge: Edge) -> Option<T> {
        values.reduce(|a, b| match edge {
            Edge::Low if b < a => b,
            Edge::High if b > a => b,
            _ => a,
        })
    }
    fn number<T: arrow::datatypes::ArrowPrimitiveType>(
        values: &ArrayRef,
        edge: Edge,
    ) -> Option<T::Native>
    where
        T::Native: PartialOrd,
    {
        pick(values.as_primitive::<T>().values().iter().copied(), edge)
    }
    // A thousandth of `value`, rounded outwards: down for a lower bound, up
    // for an upper one.
    let thousandth = |value: i64| match edge {
        Edge::Low => value.div_euclid(1000),
        Edge::High => value.div_euclid(1000) + i64::from(value.rem_euclid(1000) != 0),
    };
    let micros = |micros: i64| -> Option<Value> {
        let time = chrono::DateTime::from_timestamp_millis(thousandth(micros))?;
        Some(Value::from(
            time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ))
    };
    match values.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let strings: Vec<&str> = match values.data_type() {
                DataType::Utf8 => values.as_string::<i32>().iter().flatten().collect(),
                DataType::LargeUtf8 => values.as_string::<i64>().iter().flatten().collect(),
                _ => values.as_string_view().iter().flatten().collect(),
            };
            let value = pick(strings.into_iter(), edge)?;
            (value.chars().count() <= STRING_PREFIX).then(|| Value::from(value))
        }
        DataType::Int8 => number::<Int8Type>(values, edge).map(Value::from),
        DataType::Int16 => number::<Int16Type>(values, edge).map(Value::from),
        DataType::Int32 => number::<Int32Type>(values, edge).map(Value::from),
        DataType::Int64 => number::<Int64Type>(values, edge).map(Value::from),
        DataType::Float32 => number::<Float32Type>(values, edge)
            .and_then(|v| Number::from_f64(f64::from(v)))
            .map(Value::Number),
        DataType::Float64 => number::<Float64Type>(values, edge)
            .and_then(Number::from_f64)
            .map(Value::Number),
        DataType::Date32 => {
            let days = number::<Date32Type>(values, edge)?;
            let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?
                .checked_add_signed(chrono::Duration::days(i64::from(days)))?;
            Some(Value::from(date.to_string()))
        }
        DataType::Timestamp(unit, _) => {
            let raw = match unit {
                TimeUnit::Second => {
                    number::<TimestampSecondType>(values, edge)?.checked_mul(1_000_000)?
                }
                TimeUnit::Millisecond => {
                    number::<TimestampMillisecondType>(values, edge)?.checked_mul(1000)?
                }
                TimeUnit::Microsecond => number::<TimestampMicrosecondType>(values, edge)?,
                TimeUnit::Nanosecond => {
                    thousandth(number::<TimestampNanosecondType>(values, edge)?)
                }
            };
            micros(raw)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};
    use parquet::arrow::ArrowWriter;

    fn file(batches: &[RecordBatch]) -> Bytes {
        let mut out = Vec::new();
        let mut writer =
            ArrowWriter::try_new(&mut out, batches[0].schema(), None).expect("a writer");
        for batch in batches {
            writer.write(batch).expect("written");
            writer.flush().expect("a row group");
        }
        writer.close().expect("closed");
        Bytes::from(out)
    }

    #[test]
    fn bounds_cover_every_row_group_and_timestamps_round_outwards() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("n", DataType::Int64, true),
            Field::new("long", DataType::Utf8, true),
        ]));
        let long = "x".repeat(40);
        let batch = |ids: Vec<Option<&str>>, at: Vec<i64>, n: Vec<Option<i64>>| {
            let rows = ids.len();
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(ids)),
                    Arc::new(TimestampMicrosecondArray::from(at).with_timezone("UTC")),
                    Arc::new(Int64Array::from(n)),
                    Arc::new(StringArray::from(vec![Some(long.as_str()); rows])),
                ],
            )
            .expect("a batch")
        };
        let bytes = file(&[
            batch(
                vec![Some("m"), None],
                vec![1_000_500, 2_000_000],
                vec![Some(5), None],
            ),
            batch(
                vec![Some("a"), Some("z")],
                vec![999, 3_000_001],
                vec![Some(-2), Some(9)],
            ),
        ]);
        let stats: Value =
            serde_json::from_str(&delta_stats(Table::Events, &bytes, 4)).expect("JSON");
        assert_eq!(stats["numRecords"], 4);
        assert_eq!(stats["minValues"]["id"], "a");
        assert_eq!(stats["maxValues"]["id"], "z");
        assert_eq!(stats["nullCount"]["id"], 1);
        assert_eq!(stats["minValues"]["at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(stats["maxValues"]["at"], "1970-01-01T00:00:03.001Z");
        assert_eq!(stats["minValues"]["n"], -2);
        assert_eq!(stats["maxValues"]["n"], 9);
        assert_eq!(stats["nullCount"]["n"], 1);
        assert!(stats["minValues"].get("long").is_none(), "longer than 32");
        assert_eq!(stats["nullCount"]["long"], 0);
    }

    #[test]
    fn an_unreadable_file_gets_its_row_count_only() {
        let stats: Value =
            serde_json::from_str(&delta_stats(Table::Events, &Bytes::from_static(b"nope"), 3))
                .expect("JSON");
        assert_eq!(stats, serde_json::json!({"numRecords": 3}));
    }
}
