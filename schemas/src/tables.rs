//! The lake's tables: their Arrow schemas and how each column is read from an
//! enriched record.
//!
//! Typed columns are extracted leniently: Mobaro's record shapes are only partly
//! public, so a missing or mistyped field becomes null, never a failure. The full
//! fetched JSON is always kept, as the enricher wrote it, in `record_json`.

use std::sync::{Arc, OnceLock};

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float64Builder, ListBuilder, StringBuilder,
    StructBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::extraction::{Extracted, Scalar, Selector};
use crate::{EnrichedView, Resource};

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
    /// An array in the record: each scalar item as it is, each object item by
    /// the named member.
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
    col("user_groups", Utf8List, RecordList("/userGroups", "name")),
    col("roles", Utf8List, RecordList("/roles", "name")),
    col("location_ids", Utf8List, RecordList("/locations", "id")),
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

/// The per-resource table a record belongs in (besides [`Table::Events`]).
pub fn table_for(resource: Resource) -> Table {
    Table::Records(resource)
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

    fn index(self) -> usize {
        match self {
            Table::Events => 0,
            Table::Records(resource) => {
                1 + Resource::ALL
                    .iter()
                    .position(|r| *r == resource)
                    .expect("every resource is in ALL")
            }
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

    fn layout(self) -> &'static Layout {
        static LAYOUTS: OnceLock<Vec<Layout>> = OnceLock::new();
        &LAYOUTS.get_or_init(|| Table::all().map(Layout::new).collect())[self.index()]
    }

    pub fn schema(self) -> SchemaRef {
        self.layout().schema.clone()
    }

    /// The columns whose values are unique per row, where a dictionary or
    /// min/max statistics only cost time.
    pub fn unique_columns() -> &'static [&'static str] {
        &["event_id", "record_json"]
    }
}

/// A table's columns compiled for reading: which slots of the record's
/// extraction feed each column.
struct Layout {
    schema: SchemaRef,
    columns: Vec<Column>,
    selector: Selector,
    slots: Vec<Slots>,
}

enum Slots {
    None,
    Scalars(Vec<usize>),
    List(usize),
    Values(usize, ValueSlots),
}

/// Where a Result value's fields land in its item's extraction.
#[derive(Clone, Copy)]
struct ValueSlots {
    question_id: usize,
    question: usize,
    answers: usize,
    answered: usize,
}

impl Layout {
    fn new(table: Table) -> Layout {
        let columns = table.columns();
        let mut selector = Selector::default();
        let slots = columns
            .iter()
            .map(|c| match c.source {
                Record(pointers) => {
                    Slots::Scalars(pointers.iter().map(|p| selector.scalar(p)).collect())
                }
                RecordList(array, member) => Slots::List(selector.list(array, member)),
                Source::ResultValues => {
                    let mut item = Selector::default();
                    let value_slots = ValueSlots {
                        question_id: item.scalar("/question/id"),
                        question: item.scalar("/question"),
                        answers: item.list("/answers", "value"),
                        answered: item.scalar("/answered"),
                    };
                    Slots::Values(selector.nested("/values", item), value_slots)
                }
                _ => Slots::None,
            })
            .collect();
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| Field::new(c.name, data_type(c.kind), c.nullable))
            .collect();
        Layout {
            schema: Arc::new(Schema::new(fields)),
            columns,
            selector,
            slots,
        }
    }
}

/// Builds a table's Arrow batches one record at a time, straight from the
/// enriched record's JSON.
pub struct TableBuilder {
    layout: &'static Layout,
    builders: Vec<ColumnBuilder>,
    rows: usize,
}

enum ColumnBuilder {
    Utf8(StringBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Bool(BooleanBuilder),
    Float64(Float64Builder),
    Utf8List(ListBuilder<StringBuilder>),
    Values(ListBuilder<StructBuilder>),
}

impl ColumnBuilder {
    fn new(kind: Kind) -> ColumnBuilder {
        match kind {
            Utf8 => ColumnBuilder::Utf8(StringBuilder::new()),
            Timestamp => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
            Bool => ColumnBuilder::Bool(BooleanBuilder::new()),
            Float64 => ColumnBuilder::Float64(Float64Builder::new()),
            Utf8List => ColumnBuilder::Utf8List(ListBuilder::new(StringBuilder::new())),
            Kind::ResultValues => {
                let fields = result_value_fields();
                let entries = StructBuilder::from_fields(fields.clone(), 0);
                ColumnBuilder::Values(ListBuilder::new(entries).with_field(Arc::new(Field::new(
                    "item",
                    DataType::Struct(fields),
                    true,
                ))))
            }
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Utf8(b) => ArrayBuilder::finish(b),
            ColumnBuilder::Timestamp(b) => ArrayBuilder::finish(b),
            ColumnBuilder::Bool(b) => ArrayBuilder::finish(b),
            ColumnBuilder::Float64(b) => ArrayBuilder::finish(b),
            ColumnBuilder::Utf8List(b) => ArrayBuilder::finish(b),
            ColumnBuilder::Values(b) => ArrayBuilder::finish(b),
        }
    }
}

impl TableBuilder {
    pub fn new(table: Table) -> TableBuilder {
        let layout = table.layout();
        TableBuilder {
            layout,
            builders: layout
                .columns
                .iter()
                .map(|c| ColumnBuilder::new(c.kind))
                .collect(),
            rows: 0,
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.layout.schema.clone()
    }

    /// Rows appended since the last [`TableBuilder::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one row. Reads the record's JSON only for tables with typed columns.
    pub fn append(&mut self, record: &EnrichedView<'_>) {
        let layout = self.layout;
        let json = record.record_json();
        let extracted = match json {
            Some(json) if layout.slots.iter().any(|s| !matches!(s, Slots::None)) => {
                Some(layout.selector.extract(json))
            }
            _ => None,
        };
        let extracted = extracted.as_ref();
        for ((column, slots), builder) in layout
            .columns
            .iter()
            .zip(&layout.slots)
            .zip(&mut self.builders)
        {
            match builder {
                ColumnBuilder::Utf8(b) => match column.source {
                    EventId => b.append_value(&record.event_id),
                    Source::Resource => b.append_value(record.resource.as_str()),
                    Event => b.append_value(record.event.as_str()),
                    ObjectId => b.append_value(&record.object_id),
                    Status => b.append_value(record.status.as_str()),
                    RecordJson => b.append_option(json),
                    _ => b.append_option(first(extracted, slots, |s| Some(s.text()))),
                },
                ColumnBuilder::Timestamp(b) => b.append_option(match column.source {
                    EventTimestamp => Some(record.event_timestamp.timestamp_micros()),
                    ReceivedAt => record.received_at.map(|t| t.timestamp_micros()),
                    FetchedAt => record.fetched_at.map(|t| t.timestamp_micros()),
                    _ => first(extracted, slots, |s| s.timestamp_micros()),
                }),
                ColumnBuilder::Bool(b) => b.append_option(first(extracted, slots, |s| s.boolean())),
                ColumnBuilder::Float64(b) => {
                    b.append_option(first(extracted, slots, |s| s.float()))
                }
                ColumnBuilder::Utf8List(b) => {
                    let items = match (extracted, slots) {
                        (Some(e), Slots::List(slot)) => e.lists[*slot].as_ref(),
                        _ => None,
                    };
                    append_texts(b, items);
                }
                ColumnBuilder::Values(b) => {
                    let values = match (extracted, slots) {
                        (Some(e), Slots::Values(slot, fields)) => {
                            e.nested[*slot].as_ref().map(|v| (v, *fields))
                        }
                        _ => None,
                    };
                    append_values(b, values);
                }
            }
        }
        self.rows += 1;
    }

    /// The rows appended so far, as one batch; the builder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, TableError> {
        let arrays: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect();
        self.rows = 0;
        Ok(RecordBatch::try_new(self.layout.schema.clone(), arrays)?)
    }
}

/// The first slot holding a value convertible to the column's type.
fn first<'e, 'a, T>(
    extracted: Option<&'e Extracted<'a>>,
    slots: &Slots,
    convert: impl Fn(&'e Scalar<'a>) -> Option<T>,
) -> Option<T> {
    let (extracted, Slots::Scalars(slots)) = (extracted?, slots) else {
        return None;
    };
    slots
        .iter()
        .find_map(|slot| extracted.scalars[*slot].as_ref().and_then(&convert))
}

fn append_texts(builder: &mut ListBuilder<StringBuilder>, items: Option<&Vec<Option<Scalar<'_>>>>) {
    match items {
        Some(items) => {
            for item in items {
                builder
                    .values()
                    .append_option(item.as_ref().map(|s| s.text()));
            }
            builder.append(true);
        }
        None => builder.append_null(),
    }
}

fn append_values(
    builder: &mut ListBuilder<StructBuilder>,
    values: Option<(&Vec<Extracted<'_>>, ValueSlots)>,
) {
    let Some((values, slots)) = values else {
        builder.append_null();
        return;
    };
    for value in values {
        let entry = builder.values();
        let question = [slots.question_id, slots.question]
            .iter()
            .find_map(|slot| value.scalars[*slot].as_ref().map(|s| s.text()));
        entry
            .field_builder::<StringBuilder>(0)
            .expect("question is utf8")
            .append_option(question);
        let answers = entry
            .field_builder::<ListBuilder<Box<dyn ArrayBuilder>>>(1)
            .expect("answers is a list");
        match value.lists[slots.answers].as_ref() {
            Some(items) => {
                let strings = answers
                    .values()
                    .as_any_mut()
                    .downcast_mut::<StringBuilder>()
                    .expect("answers hold utf8");
                for item in items {
                    strings.append_option(item.as_ref().map(|s| s.text()));
                }
                answers.append(true);
            }
            None => answers.append_null(),
        }
        entry
            .field_builder::<TimestampMicrosecondBuilder>(2)
            .expect("answered_at is a timestamp")
            .append_option(
                value.scalars[slots.answered]
                    .as_ref()
                    .and_then(Scalar::timestamp_micros),
            );
        entry.append(true);
    }
    builder.append(true);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EnrichedRecord, FetchStatus, WebhookEvent};
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::TimestampMicrosecondType;
    use chrono::Utc;
    use serde_json::{json, Value};

    fn payload(resource: &str, body: Value) -> Vec<u8> {
        let event = WebhookEvent::from_json(
            format!(
                r#"{{"resource":"{resource}","event":"Created","objectId":"x/1-A","timestamp":"2025-01-27T10:12:44Z"}}"#
            )
            .as_bytes(),
        )
        .expect("parses");
        let record =
            EnrichedRecord::new(&event, None, FetchStatus::Found).with_record(body, Utc::now());
        serde_json::to_vec(&record).expect("serializes")
    }

    fn batch(table: Table, payloads: &[Vec<u8>]) -> RecordBatch {
        let mut builder = TableBuilder::new(table);
        for p in payloads {
            builder.append(&EnrichedView::from_json(p).expect("decodes"));
        }
        builder.finish().expect("builds")
    }

    #[test]
    fn every_table_builds_from_an_empty_and_a_mistyped_record() {
        for table in Table::all() {
            let resource = match table {
                Table::Events => "Users",
                Table::Records(r) => r.as_str(),
            };
            let odd = payload(
                resource,
                json!({"id": 7, "values": "nope", "userGroups": {}, "created": 3, "location": [1]}),
            );
            let empty = payload(resource, json!({}));
            let batch = batch(table, &[odd, empty]);
            assert_eq!(batch.num_rows(), 2);
            assert_eq!(batch.schema(), table.schema());
        }
    }

    #[test]
    fn typed_columns_read_their_first_usable_path() {
        let user = payload(
            "Users",
            json!({"id": "users/1-A", "archived": "true", "userName": "ann",
                   "userGroups": [{"name": "Ops"}, "Rides", {"id": 3}, 4.5],
                   "created": "2025-01-01T00:00:00.5Z", "extra": {"deep": [1, 2]}}),
        );
        let batch = batch(Table::Records(Resource::Users), std::slice::from_ref(&user));
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .expect("column")
                .as_string::<i32>()
                .value(0)
                .to_string()
        };
        assert_eq!(text("id"), "users/1-A");
        assert_eq!(text("username"), "ann");
        assert!(batch
            .column_by_name("archived")
            .expect("archived")
            .as_boolean()
            .value(0));
        let groups = batch
            .column_by_name("user_groups")
            .expect("groups")
            .as_list::<i32>()
            .value(0);
        let groups = groups.as_string::<i32>();
        assert_eq!(groups.len(), 4);
        assert_eq!(
            (
                groups.value(0),
                groups.value(1),
                groups.is_null(2),
                groups.value(3)
            ),
            ("Ops", "Rides", true, "4.5")
        );
        let created = batch
            .column_by_name("created_at")
            .expect("created")
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(created.value(0), 1_735_689_600_500_000);
        let view = EnrichedView::from_json(&user).expect("decodes");
        assert_eq!(
            text("record_json"),
            view.record_json().expect("has a record")
        );
    }

    #[test]
    fn result_values_become_a_list_of_structs() {
        let result = payload(
            "Results",
            json!({"id": "results/1-A", "score": 0.5, "location": {"id": "locations/1-A", "name": "Gate"}, "values": [
                {"question": "elements/1-A", "answers": ["Yes", {"value": "No"}], "answered": "2025-01-27T10:00:00Z"},
                {"question": {"id": "elements/2-A"}, "answers": null},
                "odd"
            ]}),
        );
        let batch = batch(Table::Records(Resource::Results), &[result]);
        let values = batch
            .column_by_name("values")
            .expect("has values")
            .as_list::<i32>();
        let entries = values.value(0);
        let entries = entries.as_struct();
        assert_eq!(entries.len(), 3);
        let questions = entries.column(0).as_string::<i32>();
        assert_eq!(
            (questions.value(0), questions.value(1), questions.is_null(2)),
            ("elements/1-A", "elements/2-A", true)
        );
        let answers = entries.column(1).as_list::<i32>();
        let first = answers.value(0);
        let first = first.as_string::<i32>();
        assert_eq!((first.value(0), first.value(1)), ("Yes", "No"));
        assert!(answers.is_null(1));
        let location = batch
            .column_by_name("location_id")
            .expect("location")
            .as_string::<i32>();
        assert_eq!(location.value(0), "locations/1-A");
        let score = batch
            .column_by_name("score")
            .expect("score")
            .as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!(score.value(0), 0.5);
    }

    #[test]
    fn events_and_unfetched_records_have_null_typed_columns() {
        let event = WebhookEvent::from_json(
            br#"{"resource":"Notes","event":"Deleted","objectId":"notes/1-A","timestamp":"2025-01-27T10:12:44Z"}"#,
        )
        .expect("parses");
        let deleted = serde_json::to_vec(&EnrichedRecord::new(&event, None, FetchStatus::Deleted))
            .expect("serializes");
        let notes = batch(
            Table::Records(Resource::Notes),
            std::slice::from_ref(&deleted),
        );
        assert!(notes
            .column_by_name("record_json")
            .expect("json")
            .is_null(0));
        assert!(notes.column_by_name("id").expect("id").is_null(0));
        let events = batch(Table::Events, &[deleted]);
        assert_eq!(events.num_columns(), ENVELOPE.len());
    }
}
