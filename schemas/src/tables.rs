//! The lake's tables: their Arrow schemas and where each column's value comes
//! from in an enriched record.
//!
//! Typed columns are read leniently (by the sink): Mobaro's record shapes are
//! only partly public, so a missing or mistyped field becomes null, never a
//! failure. The full fetched JSON is always kept, as the enricher wrote it, in
//! `record_json`.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use crate::Resource;

/// Where a column's value comes from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// The envelope's `event_id`.
    EventId,
    /// The Mobaro account the event came from.
    Account,
    /// The envelope's resource name.
    Resource,
    /// The envelope's event name.
    Event,
    /// The envelope's `objectId`.
    ObjectId,
    /// The webhook's timestamp.
    EventTimestamp,
    /// When ingest received the webhook.
    ReceivedAt,
    /// When the enricher fetched the record.
    FetchedAt,
    /// The fetch status.
    Status,
    /// The fetched record as JSON text.
    RecordJson,
    /// The first JSON pointer into the fetched record that holds a usable value.
    Record(&'static [&'static str]),
    /// An array in the record: each scalar item as it is, each object item by
    /// the named member.
    RecordList(&'static str, &'static str),
    /// A Result's `values[]`.
    ResultValues,
}

/// A column's type.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Text.
    Utf8,
    /// Microseconds in UTC.
    Timestamp,
    /// True or false.
    Bool,
    /// A floating-point number.
    Float64,
    /// A list of text.
    Utf8List,
    /// A list of Result values (question, answers, answered at).
    ResultValues,
}

/// One column of a table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// The column's name in the lake.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Whether it may be null.
    pub nullable: bool,
    /// Where its value comes from.
    pub source: Source,
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

/// The envelope's columns, first in every table.
pub const ENVELOPE: &[Column] = &[
    required("event_id", Utf8, EventId),
    required("resource", Utf8, Resource),
    required("event", Utf8, Event),
    required("object_id", Utf8, ObjectId),
    required("event_timestamp", Timestamp, EventTimestamp),
    col("received_at", Timestamp, ReceivedAt),
    col("fetched_at", Timestamp, FetchedAt),
    required("status", Utf8, Status),
    // Null in rows written before accounts existed: the default account.
    col("account", Utf8, Account),
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
    CREATED,
    UPDATED,
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
    /// Every table: `events` first, then one per resource.
    pub fn all() -> impl Iterator<Item = Table> {
        std::iter::once(Table::Events).chain(Resource::ALL.iter().map(|r| Table::Records(*r)))
    }

    /// The table's name: its folder in the lake.
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

    /// The table's columns, in order: the envelope, the typed columns, and
    /// `record_json` last.
    pub fn columns(self) -> Vec<Column> {
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

    /// The table's Arrow schema.
    pub fn schema(self) -> SchemaRef {
        static SCHEMAS: OnceLock<Vec<SchemaRef>> = OnceLock::new();
        SCHEMAS.get_or_init(|| {
            Table::all()
                .map(|table| {
                    let fields: Vec<Field> = table
                        .columns()
                        .iter()
                        .map(|c| Field::new(c.name, data_type(c.kind), c.nullable))
                        .collect();
                    Arc::new(Schema::new(fields))
                })
                .collect()
        })[self.index()]
        .clone()
    }

    /// The columns whose values are unique per row, where a dictionary only
    /// costs time.
    pub fn unique_columns() -> &'static [&'static str] {
        &["event_id", "record_json"]
    }

    /// The columns that may hold a person's identifying values (a User's
    /// id, name, e-mail, username, or free text naming them): no file
    /// statistics (min/max) are written for them, so the Delta log never
    /// holds a personal value.
    pub fn personal_columns(self) -> &'static [&'static str] {
        match self {
            // A Users event's object is a person.
            Table::Events => &["object_id"],
            Table::Records(Resource::Users) => &[
                "object_id",
                "id",
                "name",
                "email",
                "username",
                "record_json",
            ],
            Table::Records(Resource::Results) => &["user_id", "user_name", "record_json"],
            Table::Records(Resource::Assignments) => &["title", "record_json"],
            Table::Records(Resource::Notes) => &["title", "text", "record_json"],
            Table::Records(Resource::Locations | Resource::Downtimes) => &["record_json"],
        }
    }
}

/// What replaces a forgotten person's identifying values in the records
/// that are kept (a Result is a safety inspection the park must keep).
pub const ERASED: &str = "[erased]";

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn utf8_list_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// The fields of one Result value.
pub fn result_value_fields() -> Fields {
    Fields::from(vec![
        Field::new("question", DataType::Utf8, true),
        Field::new("answers", utf8_list_type(), true),
        Field::new("answered_at", timestamp_type(), true),
    ])
}

/// The Arrow type of a column kind.
pub fn data_type(kind: Kind) -> DataType {
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
