//! The hand-over between writing data files and committing them to a table.

use crate::path::DataPath;

/// A data file in the store, to be added to its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// Where it is.
    pub path: DataPath,
    /// Its size in bytes.
    pub size: usize,
    /// Rows in it.
    pub rows: usize,
    /// Its statistics as a Delta `add` carries them (JSON), when read.
    pub stats: Option<String>,
}
