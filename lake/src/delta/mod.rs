//! The tables as Delta Lake tables: the log, compaction and vacuum.

pub(crate) mod compaction;
pub(crate) mod conversion;
pub(crate) mod log;
pub(crate) mod vacuum;

pub(crate) use conversion::UNFINISHED as UNFINISHED_CONVERSION;
