//! Records buffered for one topic partition, already encoding into the files
//! they will be written as.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use chrono::NaiveDate;
use schemas::{table_for, EnrichedView, Table};

use lake::{Compression, EncodingError, ParquetFile};

/// A contiguous offset range of one partition, waiting to be written. Every
/// record lands in its resource's table and in `events`, in a file per UTC
/// date of the event.
pub struct Batch {
    /// The partition.
    pub partition: i32,
    /// Its first offset.
    pub first_offset: i64,
    /// Its last offset so far.
    pub last_offset: i64,
    /// When its first record arrived.
    pub opened_at: Instant,
    /// Replaying a range a crashed flush announced: the batch must end exactly
    /// here, whatever the size and age limits say.
    pub cut_at: Option<i64>,
    /// The announced range this batch replays: its files take the range's
    /// name even when offsets at its edges are missing from the topic.
    pub announced: Option<(i64, i64)>,
    /// Per table, the last offset of this partition the table already holds
    /// (Delta tables): records at or below it are left out of that table.
    pub held: BTreeMap<Table, i64>,
    files: BTreeMap<(Table, NaiveDate), ParquetFile>,
    compression: Compression,
    chunk_bytes: usize,
}

/// A closed file of a batch, ready to be written.
pub struct EncodedFile {
    /// The file's path in the lake.
    pub name: String,
    /// Its table.
    pub table: Table,
    /// The event date of its rows (its `dt` partition).
    pub date: NaiveDate,
    /// The Parquet bytes.
    pub bytes: Bytes,
    /// Rows in it.
    pub rows: usize,
    /// Where the rows came from, as written into the file's key-value
    /// metadata: topic, partition, offset range and content digest.
    pub identity: Vec<(String, String)>,
}

impl Batch {
    /// `chunk_bytes`: input bytes a file takes before its rows are handed to
    /// the Parquet writer (see [`ParquetFile::new`]).
    pub fn new(partition: i32, offset: i64, compression: Compression, chunk_bytes: usize) -> Self {
        Batch {
            partition,
            first_offset: offset,
            last_offset: offset,
            opened_at: Instant::now(),
            cut_at: None,
            announced: None,
            held: BTreeMap::new(),
            files: BTreeMap::new(),
            compression,
            chunk_bytes,
        }
    }

    /// Extends the range to `offset`; `record` is None for an offset whose
    /// message went to the dead-letter topic instead. `size` is the message's
    /// payload size.
    pub fn push(
        &mut self,
        offset: i64,
        record: Option<&EnrichedView<'_>>,
        size: usize,
    ) -> Result<(), EncodingError> {
        self.last_offset = offset;
        let Some(record) = record else {
            return Ok(());
        };
        let date = record.event_timestamp.date_naive();
        for table in [table_for(record.resource), Table::Events] {
            if self.held.get(&table).is_some_and(|held| offset <= *held) {
                continue;
            }
            let file = match self.files.entry((table, date)) {
                std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(ParquetFile::new(table, self.compression, self.chunk_bytes)?)
                }
            };
            file.append(record, size)?;
        }
        Ok(())
    }

    /// Rows of the batch's largest file.
    pub fn most_rows(&self) -> usize {
        self.files
            .values()
            .map(ParquetFile::rows)
            .max()
            .unwrap_or(0)
    }

    /// Encoded size of the batch's largest file, as its writer measures it.
    pub fn most_encoded_bytes(&self) -> usize {
        self.files
            .values()
            .map(ParquetFile::encoded_bytes)
            .max()
            .unwrap_or(0)
    }

    /// Memory held by the batch's files.
    pub fn buffered_bytes(&self) -> usize {
        self.files.values().map(ParquetFile::buffered_bytes).sum()
    }

    /// The offset range the batch's files are named after.
    pub fn range(&self) -> (i64, i64) {
        self.announced
            .unwrap_or((self.first_offset, self.last_offset))
    }

    /// Closes every file of the batch, named after the topic, partition and
    /// offset range, so a replay of the same range writes the same names;
    /// with [`Naming::Unique`], a random suffix follows the range.
    pub fn finish(self, topic: &str, naming: Naming) -> Result<Vec<EncodedFile>, EncodingError> {
        let (first, last) = self.range();
        let metadata = vec![
            ("mobaro_lake.topic".to_string(), topic.to_string()),
            (
                "mobaro_lake.partition".to_string(),
                self.partition.to_string(),
            ),
            ("mobaro_lake.first_offset".to_string(), first.to_string()),
            ("mobaro_lake.last_offset".to_string(), last.to_string()),
        ];
        let partition = self.partition;
        let stem = match naming {
            Naming::Range => format!("{topic}+{partition}+{first:020}+{last:020}"),
            Naming::Unique => format!("{partition}-{first}-{last}-{:08x}", rand::random::<u32>()),
        };
        self.files
            .into_iter()
            .map(|((table, date), file)| {
                let rows = file.rows();
                let (bytes, identity) = file.finish(metadata.clone())?;
                Ok(EncodedFile {
                    name: object_name(&stem, table, date),
                    table,
                    date,
                    bytes,
                    rows,
                    identity,
                })
            })
            .collect()
    }
}

/// How a batch's files are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// After the offset range only: a replay of the range writes the same
    /// names (plain Parquet, where the names are the only record).
    Range,
    /// After the partition, the range and a random suffix, short (Delta
    /// tables, where the log says which files count and holds the topic).
    Unique,
}

/// `{table}/dt={date}/{stem}.parquet`; plain Parquet's stem is
/// `{topic}+{partition}+{first}+{last}`, offsets zero-padded so names sort by
/// offset.
fn object_name(stem: &str, table: Table, date: NaiveDate) -> String {
    format!(
        "{}/dt={}/{stem}.parquet",
        table.name(),
        date.format("%Y-%m-%d"),
    )
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
        let mut batch = Batch::new(3, 10, Compression::Zstd, 1 << 20);
        for (offset, resource, day) in [(10, "Users", 1), (11, "Results", 1), (12, "Users", 2)] {
            let text = payload(offset, resource, day);
            let view = EnrichedView::from_json(text.as_bytes()).expect("decodes");
            batch
                .push(offset, Some(&view), text.len())
                .expect("encodes");
        }
        batch.push(13, None, 0).expect("a dead-lettered offset");
        assert_eq!(batch.most_rows(), 2);
        let files = batch
            .finish("mobaro.enriched", Naming::Range)
            .expect("closes");
        let names: Vec<(&str, usize)> = files.iter().map(|f| (f.name.as_str(), f.rows)).collect();
        let suffix = "mobaro.enriched+3+00000000000000000010+00000000000000000013.parquet";
        assert_eq!(
            names,
            vec![
                (format!("events/dt=2025-03-01/{suffix}").as_str(), 2),
                (format!("events/dt=2025-03-02/{suffix}").as_str(), 1),
                (format!("users/dt=2025-03-01/{suffix}").as_str(), 1),
                (format!("users/dt=2025-03-02/{suffix}").as_str(), 1),
                (format!("results/dt=2025-03-01/{suffix}").as_str(), 1),
            ]
        );
    }
}
