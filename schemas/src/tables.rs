//! The lake's tables: their Arrow schemas and how each column is read from an
//! [`EnrichedRecord`].
//!
//! Typed columns are extracted leniently: Mobaro's record shapes are only partly
//! public, so a missing or mistyped field becomes null, never a failure. The full
//! fetched JSON is always kept in `record_json`.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float64Builder, ListBuilder, StringBuilder,
    StructBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{EnrichedRecord, Resource};

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("building arrow batch: {0}")]
    Arrow(#[from] ArrowError),
}

/// Where a column's value comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    EventId,
    Resource,
    Event,
    ObjectId,
    EventTimestamp,
    ReceivedAt,
    FetchedAt,
    Status,
    RecordJson,
    /// The first JSON pointer into the fetched record that holds a usable value.
    Record(&'static [&'static str]),
    /// An array in the record; each element read at the second pointer (or taken
    /// whole when it is a string).
    RecordList(&'static str, &'static str),
    /// A Result's `values[]`.
    ResultValues,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Utf8,
    Timestamp,
    Bool,
    Float64,
    Utf8List,
    ResultValues,
}

#[derive(Debug, Clone, Copy)]
struct Column {
    name: &'static str,
    kind: Kind,
    nullable: bool,
    source: Source,
}

const fn col(name: &'static str, kind: Kind, source: Source) -> Column {
    Column {
        name,
        kind,
        nullable: true,
        source,
    }
}

const fn required(name: &'static str, kind: Kind, source: Source) -> Column {
    Column {
        name,
        kind,
        nullable: false,
        source,
    }
}

use Kind::*;
use Source::*;

const ENVELOPE: &[Column] = &[
    required("event_id", Utf8, EventId),
    required("resource", Utf8, Resource),
    required("event", Utf8, Event),
    required("object_id", Utf8, ObjectId),
    required("event_timestamp", Timestamp, EventTimestamp),
    col("received_at", Timestamp, ReceivedAt),
    col("fetched_at", Timestamp, FetchedAt),
    required("status", Utf8, Status),
];

const RECORD_JSON: Column = col("record_json", Utf8, RecordJson);

const CREATED: Column = col("created_at", Timestamp, Record(&["/created", "/createdAt"]));
const UPDATED: Column = col("updated_at", Timestamp, Record(&["/updated", "/updatedAt"]));
const ID: Column = col("id", Utf8, Record(&["/id"]));
const LOCATION_ID: Column = col("location_id", Utf8, Record(&["/location/id", "/location"]));

const USERS: &[Column] = &[
    ID,
    col("name", Utf8, Record(&["/name"])),
    col("email", Utf8, Record(&["/email"])),
    col("username", Utf8, Record(&["/username", "/userName"])),
    col("user_groups", Utf8List, RecordList("/userGroups", "/name")),
    col("roles", Utf8List, RecordList("/roles", "/name")),
    col("location_ids", Utf8List, RecordList("/locations", "/id")),
    col("archived", Bool, Record(&["/archived"])),
    CREATED,
    UPDATED,
];

const RESULTS: &[Column] = &[
    ID,
    col(
        "checklist_id",
        Utf8,
        Record(&["/checklist/id", "/checklist"]),
    ),
    col("checklist_name", Utf8, Record(&["/checklist/name"])),
    LOCATION_ID,
    col("location_name", Utf8, Record(&["/location/name"])),
    col("asset_id", Utf8, Record(&["/asset/id", "/asset"])),
    col("asset_name", Utf8, Record(&["/asset/name"])),
    col("user_id", Utf8, Record(&["/user/id", "/user"])),
    col("user_name", Utf8, Record(&["/user/name"])),
    col("status", Utf8, Record(&["/status"])),
    col("score", Float64, Record(&["/score"])),
    col("started_at", Timestamp, Record(&["/started", "/startedAt"])),
    col(
        "answered_at",
        Timestamp,
        Record(&["/answered", "/answeredAt"]),
    ),
    col(
        "submitted_at",
        Timestamp,
        Record(&["/submitted", "/submittedAt"]),
    ),
    col("values", Kind::ResultValues, Source::ResultValues),
];

const LOCATIONS: &[Column] = &[
    ID,
    col("name", Utf8, Record(&["/name"])),
    col("parent_id", Utf8, Record(&["/parent/id", "/parent"])),
    CREATED,
    UPDATED,
];

const ASSIGNMENTS: &[Column] = &[
    ID,
    col("title", Utf8, Record(&["/title", "/name"])),
    LOCATION_ID,
    col("status", Utf8, Record(&["/status"])),
    col("due_at", Timestamp, Record(&["/due", "/dueAt"])),
    CREATED,
    UPDATED,
];

const NOTES: &[Column] = &[
    ID,
    col("title", Utf8, Record(&["/title", "/name"])),
    col("text", Utf8, Record(&["/text", "/body"])),
    LOCATION_ID,
    CREATED,
    UPDATED,
];

const DOWNTIMES: &[Column] = &[
    ID,
    LOCATION_ID,
    col("reason", Utf8, Record(&["/reason/name", "/reason"])),
    col(
        "started_at",
        Timestamp,
        Record(&["/start", "/started", "/startedAt"]),
    ),
    col(
        "ended_at",
        Timestamp,
        Record(&["/end", "/ended", "/endedAt"]),
    ),
    CREATED,
    UPDATED,
];

/// One table of the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Every webhook event, enriched or not: the envelope columns only.
    Events,
    /// The fetched records of one resource.
    Records(Resource),
}

/// The per-resource table an enriched record belongs in (besides [`Table::Events`]).
pub fn table_for(record: &EnrichedRecord) -> Table {
    Table::Records(record.resource)
}

impl Table {
    pub fn all() -> impl Iterator<Item = Table> {
        std::iter::once(Table::Events).chain(Resource::ALL.iter().map(|r| Table::Records(*r)))
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Records(resource) => resource.collection(),
        }
    }

    fn columns(self) -> Vec<Column> {
        let typed: &[Column] = match self {
            Table::Events => return ENVELOPE.to_vec(),
            Table::Records(Resource::Users) => USERS,
            Table::Records(Resource::Results) => RESULTS,
            Table::Records(Resource::Locations) => LOCATIONS,
            Table::Records(Resource::Assignments) => ASSIGNMENTS,
            Table::Records(Resource::Notes) => NOTES,
            Table::Records(Resource::Downtimes) => DOWNTIMES,
        };
        let mut columns = ENVELOPE.to_vec();
        columns.extend(typed.iter().map(|c| Column {
            // A typed `status` would collide with the envelope's fetch status.
            name: if c.name == "status" {
                "record_status"
            } else {
                c.name
            },
            ..*c
        }));
        columns.push(RECORD_JSON);
        columns
    }

    pub fn schema(self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns()
            .iter()
            .map(|c| Field::new(c.name, data_type(c.kind), c.nullable))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// Builds one Arrow batch of this table from enriched records.
    pub fn to_batch(self, records: &[&EnrichedRecord]) -> Result<RecordBatch, TableError> {
        let columns = self.columns();
        let arrays: Vec<ArrayRef> = columns.iter().map(|c| build_column(c, records)).collect();
        Ok(RecordBatch::try_new(self.schema(), arrays)?)
    }
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn utf8_list_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

fn result_value_fields() -> Fields {
    Fields::from(vec![
        Field::new("question", DataType::Utf8, true),
        Field::new("answers", utf8_list_type(), true),
        Field::new("answered_at", timestamp_type(), true),
    ])
}

fn data_type(kind: Kind) -> DataType {
    match kind {
        Utf8 => DataType::Utf8,
        Timestamp => timestamp_type(),
        Bool => DataType::Boolean,
        Float64 => DataType::Float64,
        Utf8List => utf8_list_type(),
        Kind::ResultValues => DataType::List(Arc::new(Field::new(
            "item",
            DataType::Struct(result_value_fields()),
            true,
        ))),
    }
}

fn micros(ts: &DateTime<Utc>) -> i64 {
    ts.timestamp_micros()
}

/// A JSON scalar as text; objects and arrays are not text.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn as_timestamp(value: &Value) -> Option<i64> {
    let text = value.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| micros(&t.with_timezone(&Utc)))
}

fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// `value.pointer(pointer)` without its allocations: the pointers here are
/// constants without escapes, and this runs for every cell.
fn lookup<'a>(value: &'a Value, pointer: &str) -> Option<&'a Value> {
    pointer
        .split('/')
        .skip(1)
        .try_fold(value, |current, token| match current {
            Value::Object(map) => map.get(token),
            Value::Array(items) => items.get(token.parse::<usize>().ok()?),
            _ => None,
        })
}

/// The first pointer that yields a usable value of the wanted kind.
fn first<T>(
    record: Option<&Value>,
    pointers: &[&str],
    convert: impl Fn(&Value) -> Option<T>,
) -> Option<T> {
    let record = record?;
    pointers
        .iter()
        .find_map(|p| lookup(record, p).and_then(&convert))
}

fn list_items(value: Option<&Value>, element: &str) -> Option<Vec<Option<String>>> {
    let items = value?.as_array()?;
    Some(
        items
            .iter()
            .map(|item| as_text(item).or_else(|| lookup(item, element).and_then(as_text)))
            .collect(),
    )
}

fn record(r: &EnrichedRecord) -> Option<&Value> {
    r.record.as_ref()
}

fn build_column(column: &Column, records: &[&EnrichedRecord]) -> ArrayRef {
    match column.kind {
        Utf8 => {
            let mut builder = StringBuilder::new();
            for r in records {
                let value = match column.source {
                    EventId => Some(r.event_id.to_string()),
                    Source::Resource => Some(r.resource.as_str().to_string()),
                    Event => Some(r.event.as_str().to_string()),
                    ObjectId => Some(r.object_id.clone()),
                    Status => Some(r.status.as_str().to_string()),
                    RecordJson => r.record.as_ref().map(|v| v.to_string()),
                    Record(pointers) => first(record(r), pointers, as_text),
                    _ => None,
                };
                builder.append_option(value);
            }
            finish(builder)
        }
        Timestamp => {
            let mut builder = TimestampMicrosecondBuilder::new().with_timezone("UTC");
            for r in records {
                let value = match column.source {
                    EventTimestamp => Some(micros(&r.event_timestamp)),
                    ReceivedAt => r.received_at.as_ref().map(micros),
                    FetchedAt => r.fetched_at.as_ref().map(micros),
                    Record(pointers) => first(record(r), pointers, as_timestamp),
                    _ => None,
                };
                builder.append_option(value);
            }
            finish(builder)
        }
        Bool => {
            let mut builder = BooleanBuilder::new();
            for r in records {
                builder.append_option(match column.source {
                    Record(pointers) => first(record(r), pointers, as_bool),
                    _ => None,
                });
            }
            finish(builder)
        }
        Float64 => {
            let mut builder = Float64Builder::new();
            for r in records {
                builder.append_option(match column.source {
                    Record(pointers) => first(record(r), pointers, as_f64),
                    _ => None,
                });
            }
            finish(builder)
        }
        Utf8List => {
            let mut builder = ListBuilder::new(StringBuilder::new());
            for r in records {
                let items = match column.source {
                    RecordList(array, element) => {
                        list_items(record(r).and_then(|v| lookup(v, array)), element)
                    }
                    _ => None,
                };
                match items {
                    Some(items) => {
                        for item in items {
                            builder.values().append_option(item);
                        }
                        builder.append(true);
                    }
                    None => builder.append_null(),
                }
            }
            finish(builder)
        }
        Kind::ResultValues => build_result_values(records),
    }
}

fn build_result_values(records: &[&EnrichedRecord]) -> ArrayRef {
    let fields = result_value_fields();
    let struct_builder = StructBuilder::from_fields(fields.clone(), 0);
    let mut builder = ListBuilder::new(struct_builder).with_field(Arc::new(Field::new(
        "item",
        DataType::Struct(fields),
        true,
    )));
    for r in records {
        let values = r
            .record
            .as_ref()
            .and_then(|v| v.get("values"))
            .and_then(Value::as_array);
        let Some(values) = values else {
            builder.append_null();
            continue;
        };
        for value in values {
            let entry = builder.values();
            let question = value.get("question").and_then(|q| q.get("id").or(Some(q)));
            entry
                .field_builder::<StringBuilder>(0)
                .expect("question is utf8")
                .append_option(question.and_then(as_text));
            let answers = entry
                .field_builder::<ListBuilder<Box<dyn ArrayBuilder>>>(1)
                .expect("answers is a list");
            match list_items(value.get("answers"), "/value") {
                Some(items) => {
                    let strings = answers
                        .values()
                        .as_any_mut()
                        .downcast_mut::<StringBuilder>()
                        .expect("answers hold utf8");
                    for item in items {
                        strings.append_option(item);
                    }
                    answers.append(true);
                }
                None => answers.append_null(),
            }
            entry
                .field_builder::<TimestampMicrosecondBuilder>(2)
                .expect("answered_at is a timestamp")
                .append_option(value.get("answered").and_then(as_timestamp));
            entry.append(true);
        }
        builder.append(true);
    }
    finish(builder)
}

fn finish(mut builder: impl ArrayBuilder) -> ArrayRef {
    builder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FetchStatus, WebhookEvent};
    use serde_json::json;

    fn record(resource: &str, body: Value) -> EnrichedRecord {
        let event = WebhookEvent::from_json(
            format!(
                r#"{{"resource":"{resource}","event":"Created","objectId":"x/1-A","timestamp":"2025-01-27T10:12:44Z"}}"#
            )
            .as_bytes(),
        )
        .expect("parses");
        EnrichedRecord::new(&event, None, FetchStatus::Found).with_record(body, Utc::now())
    }

    #[test]
    fn every_table_builds_from_an_empty_and_a_mistyped_record() {
        for table in Table::all() {
            let resource = match table {
                Table::Events => "Users",
                Table::Records(r) => r.as_str(),
            };
            let odd = record(
                resource,
                json!({"id": 7, "values": "nope", "userGroups": {}, "created": 3}),
            );
            let empty = record(resource, json!({}));
            let batch = table.to_batch(&[&odd, &empty]).expect("builds");
            assert_eq!(batch.num_rows(), 2);
            assert_eq!(batch.schema(), table.schema());
        }
    }

    #[test]
    fn lookup_agrees_with_json_pointers() {
        let value = json!({"a": {"b": [1, {"c": "x"}], "id": "y"}, "n": null, "s": "t"});
        for pointer in [
            "", "/a", "/a/b", "/a/b/0", "/a/b/1/c", "/a/b/2", "/a/b/x", "/a/id", "/n", "/n/x",
            "/s/x", "/missing",
        ] {
            assert_eq!(lookup(&value, pointer), value.pointer(pointer), "{pointer}");
        }
    }

    #[test]
    fn result_values_become_a_list_of_structs() {
        let result = record(
            "Results",
            json!({"id": "results/1-A", "score": 0.5, "values": [
                {"question": "elements/1-A", "answers": ["Yes", "No"], "answered": "2025-01-27T10:00:00Z"},
                {"question": {"id": "elements/2-A"}, "answers": null}
            ]}),
        );
        let batch = Table::Records(Resource::Results)
            .to_batch(&[&result])
            .expect("builds");
        let values = batch.column_by_name("values").expect("has values");
        assert_eq!(values.len(), 1);
        let list = values
            .as_any()
            .downcast_ref::<arrow::array::ListArray>()
            .expect("list");
        assert_eq!(list.value(0).len(), 2);
    }
}
