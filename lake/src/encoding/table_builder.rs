//! Builds a table's Arrow batches one record at a time, straight from the
//! enriched record's JSON.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, BooleanBuilder, Float64Builder, ListBuilder, StringBuilder,
    StructBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::record_batch::RecordBatch;

use schemas::Kind::*;
use schemas::Source::*;
use schemas::{result_value_fields, EnrichedView, Kind, Source, Table};

use crate::encoding::extraction::{Extracted, Scalar};
use crate::encoding::layout::{layout, Layout, Slots, ValueSlots};
use crate::encoding::unmapped_fields;
use crate::telemetry;

/// A batch could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// Arrow refused the columns.
    #[error("building arrow batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

pub(crate) struct TableBuilder {
    /// Whether what the columns hold is counted.
    monitors: bool,
    table: Table,
    layout: &'static Layout,
    builders: Vec<ColumnBuilder>,
    rows: usize,
    /// Rows appended with a fetched record.
    recorded: usize,
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
    /// `monitors`: whether the builder counts what the columns hold (typed
    /// columns' nulls, fields no column reads).
    pub(crate) fn new(table: Table, monitors: bool) -> TableBuilder {
        let layout = layout(table);
        TableBuilder {
            table,
            layout,
            monitors,
            builders: layout
                .columns
                .iter()
                .map(|c| ColumnBuilder::new(c.kind))
                .collect(),
            rows: 0,
            recorded: 0,
        }
    }

    pub(crate) fn schema(&self) -> SchemaRef {
        self.layout.schema.clone()
    }

    /// Rows appended since the last [`TableBuilder::finish`].
    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one row. Reads the record's JSON only for tables with typed columns.
    pub(crate) fn append(&mut self, record: &EnrichedView<'_>) {
        let layout = self.layout;
        let json = record.record_json();
        self.recorded += usize::from(json.is_some());
        if let (Some(json), true) = (json, layout.reads_record && self.monitors) {
            unmapped_fields::observe(self.table, &layout.mapped, json);
        }
        let extracted = match json {
            Some(json) if layout.reads_record => Some(layout.selector.extract(json)),
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
                    Account => b.append_value(&record.account),
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
    pub(crate) fn finish(&mut self) -> Result<RecordBatch, TableError> {
        let arrays: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect();
        self.count_typed_nulls(&arrays);
        self.rows = 0;
        self.recorded = 0;
        Ok(RecordBatch::try_new(self.layout.schema.clone(), arrays)?)
    }
}

impl TableBuilder {
    /// Counts, per column read from the record, the rows that have a record
    /// but no value in the column: a path that finds nothing (renamed by
    /// the API, or guessed wrong) shows as a null share near 100 %.
    fn count_typed_nulls(&self, arrays: &[ArrayRef]) {
        if !self.layout.reads_record || self.recorded == 0 || !self.monitors {
            return;
        }
        telemetry::recorded_rows(self.table, self.recorded);
        let without_record = self.rows - self.recorded;
        for (column, array) in self.layout.columns.iter().zip(arrays) {
            if matches!(
                column.source,
                Source::Record(_) | Source::RecordList(..) | Source::ResultValues
            ) {
                let nulls = array.null_count().saturating_sub(without_record);
                telemetry::typed_nulls(self.table, column.name, nulls);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::TimestampMicrosecondType;
    use chrono::Utc;
    use schemas::{EnrichedRecord, FetchStatus, Resource, WebhookEvent, ENVELOPE};
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
        let mut builder = TableBuilder::new(table, true);
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
