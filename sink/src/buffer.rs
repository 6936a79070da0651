//! What the sink holds in memory per partition between flushes.

use std::collections::BTreeMap;

use lake::Standing;

use crate::batch::Batch;
use crate::deduplication::Deduplication;

/// What the loop holds per partition: the unwritten batch, and what the
/// tables hold of the partition.
#[derive(Default)]
pub(crate) struct Buffer {
    pub(crate) batches: BTreeMap<i32, Batch>,
    pub(crate) standings: BTreeMap<i32, Standing>,
    /// The event ids the tables hold, when deduplication is on.
    pub(crate) dedup: Option<Deduplication>,
}

impl Buffer {
    /// Forgets a partition: its batch, unwritten, and its standing, read
    /// again when it next opens a batch.
    pub(crate) fn forget(&mut self, partition: i32) -> Option<Batch> {
        self.standings.remove(&partition);
        self.batches.remove(&partition)
    }

    /// Drops a partition's unwritten batch when consumption rewound before
    /// its end (a seek or a missed rebalance): the range comes again.
    pub(crate) fn forget_if_rewound(&mut self, partition: i32, offset: i64) {
        if self
            .batches
            .get(&partition)
            .is_some_and(|b| offset <= b.last_offset)
        {
            tracing::info!(
                partition,
                offset,
                "partition rewound; its unwritten batch is dropped"
            );
            self.forget(partition);
        }
    }

    pub(crate) fn buffered_bytes(&self) -> usize {
        self.batches.values().map(Batch::buffered_bytes).sum()
    }

    /// The batches that may end where the loop chooses (not replays).
    pub(crate) fn free(&self) -> impl Iterator<Item = &Batch> {
        self.batches.values().filter(|b| b.bounds.cut_at.is_none())
    }
}
