//! Records buffered for one topic partition, already encoding into the files
//! they will be written as.

use std::collections::HashMap;
use std::time::Instant;

use chrono::NaiveDate;
use lake::{
    Bounds, Compression, EncodedFile, EncodingError, EventIds, FileSet, IdDigest, Naming,
    OffsetRange, Origin,
};
use schemas::{table_for, EnrichedView, FetchStatus, Table};

use crate::deduplication::BatchIds;
use crate::telemetry;

/// A contiguous offset range of one partition, waiting to be written.
pub(crate) struct Batch {
    /// The partition.
    pub(crate) partition: i32,
    /// Its first offset.
    pub(crate) first_offset: i64,
    /// Its last offset so far.
    pub(crate) last_offset: i64,
    /// When its first record arrived.
    pub(crate) opened_at: Instant,
    /// Where it must end, and what the tables hold already.
    pub(crate) bounds: Bounds,
    /// Whether what the records hold is monitored (arrival delay, and in
    /// the files, columns' nulls and fields no column reads).
    monitors: bool,
    files: FileSet,
    /// The event ids of its rows, on the days deduplication tracks.
    ids: BatchIds,
    /// Records whose fetch found nothing, held back unencoded (their ids in
    /// `ids`) until the batch closes: a later copy of the event whose fetch
    /// found the record replaces them, as compaction would keep it.
    not_found: HashMap<(NaiveDate, IdDigest), HeldBack>,
}

/// A record held back: its offset and payload.
struct HeldBack {
    offset: i64,
    payload: Vec<u8>,
}

/// How a batch encodes its files.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Encoding {
    /// The files' compression.
    pub(crate) compression: Compression,
    /// Input bytes a file takes before its rows go to the Parquet writer.
    pub(crate) chunk_bytes: usize,
    /// Whether what the records hold is monitored.
    pub(crate) monitors: bool,
}

/// The offsets a flushed batch covers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub(crate) partition: i32,
    /// The first offset consumed: where the partition rewinds to when the
    /// batch is dropped.
    pub(crate) first_offset: i64,
    /// The range the files are named after.
    pub(crate) range: OffsetRange,
    /// Whether the range is an announced one, replayed.
    pub(crate) replays: bool,
}

impl Batch {
    /// `chunk_bytes`: input bytes a file takes before its rows are handed to
    /// the Parquet writer.
    pub(crate) fn new(partition: i32, offset: i64, bounds: Bounds, encoding: Encoding) -> Self {
        Batch {
            partition,
            first_offset: offset,
            last_offset: offset,
            opened_at: Instant::now(),
            bounds,
            files: FileSet::new(encoding.compression, encoding.chunk_bytes)
                .with_column_monitors(encoding.monitors),
            monitors: encoding.monitors,
            ids: BatchIds::new(),
            not_found: HashMap::new(),
        }
    }

    /// Extends the range to `offset`; `record` is None for an offset whose
    /// message went to the dead-letter topic instead. `payload` is the
    /// message's. Tables holding the offset already do not get it again,
    /// nor tables that `held` says hold its event id on its day, nor tables
    /// this batch gave a row of the event already, unless that row's fetch
    /// found nothing and this one's found the record.
    pub(crate) fn push(
        &mut self,
        offset: i64,
        record: Option<&EnrichedView<'_>>,
        payload: &[u8],
        held: Option<&EventIds>,
    ) -> Result<(), EncodingError> {
        self.last_offset = offset;
        let Some(record) = record else {
            return Ok(());
        };
        if let Some(received_at) = record.received_at.filter(|_| self.monitors) {
            telemetry::arrived(record.resource, record.event_timestamp, received_at);
        }
        let day = record.event_timestamp.date_naive();
        let tracked = held
            .filter(|held| held.tracks(day))
            .map(|held| (held, lake::digest(&record.event_id)));
        if let Some((held, id)) = tracked {
            let key = (day, id);
            match record.status {
                FetchStatus::NotFound if !self.is_written(held, day, id) => {
                    // Held back: its ids are the batch's from now on.
                    for table in [table_for(record.resource), Table::Events] {
                        self.ids.insert((table, day, id));
                    }
                    self.not_found.insert(
                        key,
                        HeldBack {
                            offset,
                            payload: payload.to_vec(),
                        },
                    );
                    return Ok(());
                }
                FetchStatus::Found if self.not_found.remove(&key).is_some() => {
                    // The found copy takes the held-back one's place.
                    for table in [table_for(record.resource), Table::Events] {
                        self.ids.remove(&(table, day, id));
                        telemetry::duplicate_left_out(table);
                    }
                }
                _ => {}
            }
        }
        self.encode(offset, record, payload.len(), tracked)
    }

    /// Whether a row of event `id` of `day` is in the tables (as `held`
    /// says) or in this batch already.
    fn is_written(&self, held: &EventIds, day: NaiveDate, id: IdDigest) -> bool {
        // Every record has a row in `events`: it answers for the event.
        held.holds(Table::Events, day, id) || self.ids.contains(&(Table::Events, day, id))
    }

    /// Encodes `record`'s rows into the batch's files, leaving out the
    /// tables that hold it (see [`Batch::push`]); `tracked`: the ids held
    /// and the record's id digest, when deduplication tracks its day.
    fn encode(
        &mut self,
        offset: i64,
        record: &EnrichedView<'_>,
        size: usize,
        tracked: Option<(&EventIds, IdDigest)>,
    ) -> Result<(), EncodingError> {
        let day = record.event_timestamp.date_naive();
        let bounds = &self.bounds;
        let ids = &mut self.ids;
        self.files.push(record, size, |table| {
            if bounds.holds(table, offset) {
                return true;
            }
            let Some((held, id)) = tracked else {
                return false;
            };
            let repeat = held.holds(table, day, id) || !ids.insert((table, day, id));
            if repeat {
                telemetry::duplicate_left_out(table);
            }
            repeat
        })
    }

    /// Encodes the records held back for a found copy that never came.
    fn encode_held_back(&mut self) -> Result<(), EncodingError> {
        let held_back = std::mem::take(&mut self.not_found);
        let bounds = &self.bounds;
        for HeldBack { offset, payload } in held_back.into_values() {
            let record =
                EnrichedView::from_json(&payload).expect("a held-back record decoded before");
            self.files
                .push(&record, payload.len(), |table| bounds.holds(table, offset))?;
        }
        Ok(())
    }

    /// The event ids of the batch's rows, for the deduplication to hold once
    /// the batch is committed.
    pub(crate) fn take_ids(&mut self) -> BatchIds {
        std::mem::take(&mut self.ids)
    }

    /// Rows of the batch's largest file.
    pub(crate) fn most_rows(&self) -> usize {
        self.files.most_rows()
    }

    /// Encoded size of the batch's largest file.
    pub(crate) fn most_encoded_bytes(&self) -> usize {
        self.files.most_encoded_bytes()
    }

    /// Memory held by the batch's files and held-back records.
    pub(crate) fn buffered_bytes(&self) -> usize {
        let held_back: usize = self.not_found.values().map(|h| h.payload.len()).sum();
        self.files.buffered_bytes() + held_back
    }

    /// The offsets the batch covers.
    pub(crate) fn span(&self) -> Span {
        Span {
            partition: self.partition,
            first_offset: self.first_offset,
            range: self
                .bounds
                .replays
                .unwrap_or(OffsetRange::new(self.first_offset, self.last_offset)),
            replays: self.bounds.replays.is_some(),
        }
    }

    /// Closes every file of the batch, named after the topic, partition and
    /// range as `naming` says.
    pub(crate) fn finish(
        mut self,
        topic: &str,
        naming: Naming,
    ) -> Result<Vec<EncodedFile>, EncodingError> {
        self.encode_held_back()?;
        let Span {
            partition, range, ..
        } = self.span();
        let origin = Origin {
            topic,
            partition,
            first: range.first,
            last: range.last,
        };
        self.files.finish(&origin, naming)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Encoding = Encoding {
        compression: Compression::Zstd,
        chunk_bytes: 1 << 20,
        monitors: true,
    };

    #[test]
    fn a_dead_lettered_offset_extends_the_range() {
        let text = r#"{"event_id":"0000000000000000000000000000000a","resource":"Users","event":"Updated","object_id":"x/10-A","event_timestamp":"2025-03-01T23:59:59Z","received_at":null,"fetched_at":null,"status":"found","record":{"id":"x/10-A"}}"#;
        let mut batch = Batch::new(3, 10, Bounds::default(), QUICK);
        let view = EnrichedView::from_json(text.as_bytes()).expect("decodes");
        batch
            .push(10, Some(&view), text.as_bytes(), None)
            .expect("encodes");
        batch
            .push(13, None, &[], None)
            .expect("a dead-lettered offset");
        assert_eq!(batch.span().range, (10, 13));
        let files = batch
            .finish("mobaro.enriched", Naming::Range)
            .expect("closes");
        let suffix = "mobaro.enriched+3+00000000000000000010+00000000000000000013.parquet";
        assert_eq!(
            files[0].path.in_lake(),
            format!("events/dt=2025-03-01/{suffix}")
        );
    }

    fn record(status: &str, record: &str) -> String {
        format!(
            r#"{{"event_id":"0000000000000000000000000000000b","resource":"Results","event":"Created","object_id":"results/11-A","event_timestamp":"2025-03-01T10:00:00Z","received_at":null,"fetched_at":"2025-03-01T10:00:01Z","status":"{status}","record":{record}}}"#
        )
    }

    /// The `status` of the one row of a Parquet file.
    fn status_of(bytes: &bytes::Bytes) -> String {
        use arrow::array::{Array, AsArray};
        let mut reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes.clone(), 1024)
                .expect("a parquet file");
        let batch = reader.next().expect("a batch").expect("reads");
        let column = batch.column_by_name("status").expect("a status column");
        let column =
            arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8).expect("casts");
        assert_eq!(column.len(), 1);
        column.as_string::<i32>().value(0).to_string()
    }

    /// Rows of each file of `batch`, by table name.
    fn rows(batch: Batch) -> Vec<(String, usize)> {
        let files = batch.finish("t", Naming::Range).expect("closes");
        files.iter().map(|f| (f.path.in_lake(), f.rows)).collect()
    }

    #[test]
    fn a_found_copy_replaces_a_not_found_one_in_the_batch() {
        let day = chrono::NaiveDate::from_ymd_opt(2025, 3, 1).expect("a date");
        let held = EventIds::new(day);
        let missing = record("not_found", "null");
        let found = record("found", r#"{"id":"results/11-A"}"#);
        let mut batch = Batch::new(0, 1, Bounds::default(), QUICK);
        for (offset, text) in [(1, &missing), (2, &found), (3, &missing)] {
            let view = EnrichedView::from_json(text.as_bytes()).expect("decodes");
            batch
                .push(offset, Some(&view), text.as_bytes(), Some(&held))
                .expect("encodes");
        }
        let files = batch.finish("t", Naming::Range).expect("closes");
        assert_eq!(files.len(), 2, "one file per table");
        assert!(files.iter().all(|f| f.rows == 1), "one row per table");
        for file in &files {
            assert_eq!(status_of(&file.bytes), "found", "{}", file.path.in_lake());
        }
        // Alone, the not-found copy is written when the batch closes.
        let mut alone = Batch::new(0, 1, Bounds::default(), QUICK);
        let view = EnrichedView::from_json(missing.as_bytes()).expect("decodes");
        alone
            .push(1, Some(&view), missing.as_bytes(), Some(&held))
            .expect("encodes");
        assert_eq!(alone.most_rows(), 0, "held back until the batch closes");
        assert!(rows(alone).iter().all(|(_, rows)| *rows == 1));
    }
}
