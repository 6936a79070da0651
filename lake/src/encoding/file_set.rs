//! The files a run of records is encoding into: every record lands in its
//! resource's table and in `events`, in a file per UTC date of the event.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::NaiveDate;
use schemas::{table_for, EnrichedView, Table};

use crate::data_file::DataFile;
use crate::encoding::parquet_file::{Compression, EncodingError, ParquetFile};
use crate::path::{stems, DataPath};

/// Open files, one per (table, day).
pub struct FileSet {
    files: BTreeMap<(Table, NaiveDate), ParquetFile>,
    compression: Compression,
    chunk_bytes: usize,
    /// Whether the files count what their columns hold.
    monitors: bool,
}

/// Where a set of files' rows came from: a partition's offset range of a
/// topic. It names the files and goes into their key-value metadata.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The first offset of the range.
    pub first: i64,
    /// The last offset of the range.
    pub last: i64,
}

/// How a set's files are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// After the offset range only: a replay of the range writes the same
    /// names (plain Parquet, where the names are the only record).
    Range,
    /// After the partition, the range and a random suffix, short (Delta
    /// tables, where the log says which files count and holds the topic).
    Unique,
}

impl Origin<'_> {
    /// The file name stem; plain Parquet's is
    /// `{topic}+{partition}+{first}+{last}`, offsets zero-padded so names
    /// sort by offset.
    fn stem(&self, naming: Naming) -> String {
        let Origin {
            topic,
            partition,
            first,
            last,
        } = self;
        match naming {
            Naming::Range => format!("{topic}+{partition}+{first:020}+{last:020}"),
            Naming::Unique => stems::batch(*partition, *first, *last),
        }
    }

    fn metadata(&self) -> Vec<(String, String)> {
        vec![
            ("mobaro_lake.topic".to_string(), self.topic.to_string()),
            (
                "mobaro_lake.partition".to_string(),
                self.partition.to_string(),
            ),
            (
                "mobaro_lake.first_offset".to_string(),
                self.first.to_string(),
            ),
            ("mobaro_lake.last_offset".to_string(), self.last.to_string()),
        ]
    }
}

/// A closed file, ready to be written.
pub struct EncodedFile {
    /// Where it goes.
    pub path: DataPath,
    /// The Parquet bytes.
    pub bytes: Bytes,
    /// Rows in it.
    pub rows: usize,
    /// Where the rows came from, as written into the file's key-value
    /// metadata: topic, partition, offset range and content digest.
    pub identity: Vec<(String, String)>,
}

impl EncodedFile {
    /// The file as its table will hold it, once written.
    pub fn data_file(&self) -> DataFile {
        DataFile {
            path: self.path.clone(),
            size: self.bytes.len(),
            rows: self.rows,
            stats: Some(crate::statistics::delta_stats(
                self.path.table,
                &self.bytes,
                self.rows,
            )),
        }
    }
}

impl FileSet {
    /// `chunk_bytes`: input bytes a file takes before its rows are handed to
    /// the Parquet writer (see [`ParquetFile::new`]).
    pub fn new(compression: Compression, chunk_bytes: usize) -> Self {
        FileSet {
            files: BTreeMap::new(),
            compression,
            chunk_bytes,
            monitors: true,
        }
    }

    /// Whether the files count what their columns hold (typed columns'
    /// nulls, fields no column reads): on unless turned off here. File
    /// statistics are written either way.
    pub fn with_column_monitors(mut self, on: bool) -> Self {
        self.monitors = on;
        self
    }

    /// Appends `record`, `size` bytes of input, to its tables except those
    /// `holds` says hold it already.
    pub fn push(
        &mut self,
        record: &EnrichedView<'_>,
        size: usize,
        mut holds: impl FnMut(Table) -> bool,
    ) -> Result<(), EncodingError> {
        let date = record.event_timestamp.date_naive();
        for table in [table_for(record.resource), Table::Events] {
            if holds(table) {
                continue;
            }
            let file = match self.files.entry((table, date)) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => entry.insert(ParquetFile::new(
                    table,
                    self.compression,
                    self.chunk_bytes,
                    self.monitors,
                )?),
            };
            file.append(record, size)?;
        }
        Ok(())
    }

    /// Rows of the largest file.
    pub fn most_rows(&self) -> usize {
        self.files
            .values()
            .map(ParquetFile::rows)
            .max()
            .unwrap_or(0)
    }

    /// Encoded size of the largest file, as its writer measures it.
    pub fn most_encoded_bytes(&self) -> usize {
        self.files
            .values()
            .map(ParquetFile::encoded_bytes)
            .max()
            .unwrap_or(0)
    }

    /// Memory held by the files.
    pub fn buffered_bytes(&self) -> usize {
        self.files.values().map(ParquetFile::buffered_bytes).sum()
    }

    /// Closes every file, named after `origin` as `naming` says, so that
    /// with [`Naming::Range`] a replay of the same range writes the same
    /// names.
    pub fn finish(
        self,
        origin: &Origin<'_>,
        naming: Naming,
    ) -> Result<Vec<EncodedFile>, EncodingError> {
        let stem = origin.stem(naming);
        let metadata = origin.metadata();
        self.files
            .into_iter()
            .map(|((table, date), file)| {
                let rows = file.rows();
                let (bytes, identity) = file.finish(metadata.clone())?;
                Ok(EncodedFile {
                    path: DataPath {
                        table,
                        date,
                        stem: stem.clone(),
                    },
                    bytes,
                    rows,
                    identity,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(offset: i64, resource: &str, day: u32) -> String {
        format!(
            r#"{{"event_id":"{offset:032x}","resource":"{resource}","event":"Updated","object_id":"x/{offset}-A","event_timestamp":"2025-03-{day:02}T23:59:59Z","received_at":null,"fetched_at":null,"status":"found","record":{{"id":"x/{offset}-A"}}}}"#
        )
    }

    #[test]
    fn records_split_by_table_and_date_under_range_names() {
        let mut files = FileSet::new(Compression::Zstd, 1 << 20);
        for (offset, resource, day) in [(10, "Users", 1), (11, "Results", 1), (12, "Users", 2)] {
            let text = payload(offset, resource, day);
            let view = EnrichedView::from_json(text.as_bytes()).expect("decodes");
            files.push(&view, text.len(), |_| false).expect("encodes");
        }
        assert_eq!(files.most_rows(), 2);
        let origin = Origin {
            topic: "mobaro.enriched",
            partition: 3,
            first: 10,
            last: 13,
        };
        let files = files.finish(&origin, Naming::Range).expect("closes");
        let names: Vec<(String, usize)> =
            files.iter().map(|f| (f.path.in_lake(), f.rows)).collect();
        let suffix = "mobaro.enriched+3+00000000000000000010+00000000000000000013.parquet";
        assert_eq!(
            names,
            vec![
                (format!("events/dt=2025-03-01/{suffix}"), 2),
                (format!("events/dt=2025-03-02/{suffix}"), 1),
                (format!("users/dt=2025-03-01/{suffix}"), 1),
                (format!("users/dt=2025-03-02/{suffix}"), 1),
                (format!("results/dt=2025-03-01/{suffix}"), 1),
            ]
        );
    }

    #[test]
    fn tables_that_hold_a_record_are_left_out() {
        let mut files = FileSet::new(Compression::Zstd, 1 << 20);
        let text = payload(10, "Users", 1);
        let view = EnrichedView::from_json(text.as_bytes()).expect("decodes");
        files
            .push(&view, text.len(), |table| table == Table::Events)
            .expect("encodes");
        let origin = Origin {
            topic: "t",
            partition: 0,
            first: 10,
            last: 10,
        };
        let files = files.finish(&origin, Naming::Unique).expect("closes");
        let tables: Vec<Table> = files.iter().map(|f| f.path.table).collect();
        assert_eq!(tables, vec![Table::Records(schemas::Resource::Users)]);
    }
}
