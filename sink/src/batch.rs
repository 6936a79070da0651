//! Records buffered for one topic partition, already encoding into the files
//! they will be written as.

use std::time::Instant;

use lake::{Bounds, Compression, EncodedFile, EncodingError, EventIds, FileSet, Naming, Origin};
use schemas::EnrichedView;

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
    files: FileSet,
    /// The event ids of its rows, on the days deduplication tracks.
    ids: BatchIds,
}

/// The offsets a flushed batch covers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub(crate) partition: i32,
    /// The first offset consumed: where the partition rewinds to when the
    /// batch is dropped.
    pub(crate) first_offset: i64,
    /// The range the files are named after.
    pub(crate) range: (i64, i64),
    /// Whether the range is an announced one, replayed.
    pub(crate) replays: bool,
}

impl Batch {
    /// `chunk_bytes`: input bytes a file takes before its rows are handed to
    /// the Parquet writer.
    pub(crate) fn new(
        partition: i32,
        offset: i64,
        bounds: Bounds,
        compression: Compression,
        chunk_bytes: usize,
    ) -> Self {
        Batch {
            partition,
            first_offset: offset,
            last_offset: offset,
            opened_at: Instant::now(),
            bounds,
            files: FileSet::new(compression, chunk_bytes),
            ids: BatchIds::new(),
        }
    }

    /// Extends the range to `offset`; `record` is None for an offset whose
    /// message went to the dead-letter topic instead. `size` is the message's
    /// payload size. Tables holding the offset already do not get it again,
    /// nor tables that `held` says hold its event id on its day, nor tables
    /// this batch gave a row of the event already.
    pub(crate) fn push(
        &mut self,
        offset: i64,
        record: Option<&EnrichedView<'_>>,
        size: usize,
        held: Option<&EventIds>,
    ) -> Result<(), EncodingError> {
        self.last_offset = offset;
        let Some(record) = record else {
            return Ok(());
        };
        if let Some(received_at) = record.received_at.filter(|_| lake::column_monitors()) {
            telemetry::arrived(record.resource, record.event_timestamp, received_at);
        }
        let day = record.event_timestamp.date_naive();
        let tracked = held
            .filter(|held| held.tracks(day))
            .map(|held| (held, lake::digest(&record.event_id)));
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

    /// Memory held by the batch's files.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.files.buffered_bytes()
    }

    /// The offsets the batch covers.
    pub(crate) fn span(&self) -> Span {
        Span {
            partition: self.partition,
            first_offset: self.first_offset,
            range: self
                .bounds
                .replays
                .unwrap_or((self.first_offset, self.last_offset)),
            replays: self.bounds.replays.is_some(),
        }
    }

    /// Closes every file of the batch, named after the topic, partition and
    /// range as `naming` says.
    pub(crate) fn finish(
        self,
        topic: &str,
        naming: Naming,
    ) -> Result<Vec<EncodedFile>, EncodingError> {
        let Span {
            partition, range, ..
        } = self.span();
        let origin = Origin {
            topic,
            partition,
            first: range.0,
            last: range.1,
        };
        self.files.finish(&origin, naming)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_lettered_offset_extends_the_range() {
        let text = r#"{"event_id":"0000000000000000000000000000000a","resource":"Users","event":"Updated","object_id":"x/10-A","event_timestamp":"2025-03-01T23:59:59Z","received_at":null,"fetched_at":null,"status":"found","record":{"id":"x/10-A"}}"#;
        let mut batch = Batch::new(3, 10, Bounds::default(), Compression::Zstd, 1 << 20);
        let view = EnrichedView::from_json(text.as_bytes()).expect("decodes");
        batch
            .push(10, Some(&view), text.len(), None)
            .expect("encodes");
        batch
            .push(13, None, 0, None)
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
}
