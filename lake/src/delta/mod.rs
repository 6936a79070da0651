//! The tables as Delta Lake tables, by role: `error` (what failed, and
//! whether retrying helps), `actions` (what the sink writes to a log and
//! reads from others'), `schema` (the columns, creation and evolution),
//! `state` (what a writer knows of a table between reads), `log` (the
//! tables and their blind-append protocol), then conversion, compaction and
//! vacuum.

pub(crate) mod actions;
pub(crate) mod checkpoint;
pub(crate) mod compaction;
pub(crate) mod conversion;
pub(crate) mod error;
pub(crate) mod log;
pub(crate) mod schema;
pub(crate) mod state;
pub(crate) mod vacuum;

pub(crate) use conversion::{is_unfinished as conversion_unfinished, marker as conversion_marker};
