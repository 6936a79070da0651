//! A table's columns compiled for reading an enriched record: which slots of
//! the record's one-pass extraction feed each column.

use std::sync::OnceLock;

use arrow::datatypes::SchemaRef;
use schemas::{Column, Source, Table};

use crate::encoding::extraction::Selector;

/// A table's columns compiled for reading: which slots of the record's
/// extraction feed each column.
pub(crate) struct Layout {
    pub(crate) schema: SchemaRef,
    pub(crate) columns: Vec<Column>,
    pub(crate) selector: Selector,
    pub(crate) slots: Vec<Slots>,
    /// Whether any column reads the fetched record (not so for `events`).
    pub(crate) reads_record: bool,
    /// The JSON pointers the columns read.
    pub(crate) mapped: Vec<String>,
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
                Source::Record(pointers) => {
                    Slots::Scalars(pointers.iter().map(|p| selector.scalar(p)).collect())
                }
                Source::RecordList(array, member) => Slots::List(selector.list(array, member)),
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
        Layout {
            schema: table.schema(),
            columns,
            selector,
            reads_record: slots.iter().any(|s| !matches!(s, Slots::None)),
            slots,
            mapped: crate::encoding::unmapped_fields::mapped_paths(table),
        }
    }
}

/// The layout of `table`, compiled once per process.
pub(crate) fn layout(table: Table) -> &'static Layout {
    static LAYOUTS: OnceLock<Vec<(Table, Layout)>> = OnceLock::new();
    let layouts = LAYOUTS.get_or_init(|| Table::all().map(|t| (t, Layout::new(t))).collect());
    &layouts
        .iter()
        .find(|(t, _)| *t == table)
        .expect("every table has a layout")
        .1
}
