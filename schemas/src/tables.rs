//! The lake's tables: their Arrow schemas and how each column is read from an
//! enriched record.
//!
//! Typed columns are extracted leniently: Mobaro's record shapes are only partly
//! public, so a missing or mistyped field becomes null, never a failure. The full
//! fetched JSON is always kept, as the enricher wrote it, in `record_json`.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

use crate::extraction::Selector;
use crate::Resource;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("building arrow batch: {0}")]
    Arrow(#[from] ArrowError),
}

/// Where a column's value comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
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
pub(crate) enum Kind {
    Utf8,
    Timestamp,
    Bool,
    Float64,
    Utf8List,
    ResultValues,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) nullable: bool,
    pub(crate) source: Source,
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

pub(crate) const ENVELOPE: &[Column] = &[
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

    pub(crate) fn layout(self) -> &'static Layout {
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
pub(crate) struct Layout {
    pub(crate) schema: SchemaRef,
    pub(crate) columns: Vec<Column>,
    pub(crate) selector: Selector,
    pub(crate) slots: Vec<Slots>,
    /// Whether any column reads the fetched record (not so for `events`).
    pub(crate) reads_record: bool,
}

pub(crate) enum Slots {
    None,
    Scalars(Vec<usize>),
    List(usize),
    Values(usize, ValueSlots),
}

/// Where a Result value's fields land in its item's extraction.
#[derive(Clone, Copy)]
pub(crate) struct ValueSlots {
    pub(crate) question_id: usize,
    pub(crate) question: usize,
    pub(crate) answers: usize,
    pub(crate) answered: usize,
}

impl Layout {
    fn new(table: Table) -> Layout {
        let columns = table.columns();
        let mut selector = Selector::default();
        let slots: Vec<Slots> = columns
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
            reads_record: slots.iter().any(|s| !matches!(s, Slots::None)),
            slots,
        }
    }
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn utf8_list_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

pub(crate) fn result_value_fields() -> Fields {
    Fields::from(vec![
        Field::new("question", DataType::Utf8, true),
        Field::new("answers", utf8_list_type(), true),
        Field::new("answered_at", timestamp_type(), true),
    ])
}

pub(crate) fn data_type(kind: Kind) -> DataType {
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
