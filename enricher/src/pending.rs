//! Events taken but not yet finished, and which offsets may be committed
//! while they finish out of order.
//!
//! Events of different objects complete in any order; an offset may only be
//! committed once every event below it has been produced and acknowledged.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
struct PartitionState {
    pending: BTreeSet<i64>,
    highest: Option<i64>,
    /// Where consumption started, then the last offset handed out to be
    /// stored: what is handed out never moves backwards.
    stored: Option<i64>,
}

#[derive(Debug, Default)]
pub(crate) struct PendingEvents {
    partitions: BTreeMap<i32, PartitionState>,
}

impl PendingEvents {
    /// An event at `offset` was taken from `partition`.
    pub(crate) fn begin(&mut self, partition: i32, offset: i64) {
        let state = self.partitions.entry(partition).or_default();
        // Where consumption started: offsets below it were committed.
        state.stored.get_or_insert(offset);
        state.pending.insert(offset);
        state.highest = state.highest.max(Some(offset));
    }

    /// The event at `offset` is durable downstream. Returns the offset to
    /// commit for `partition` (the next one to consume), which covers every
    /// completed event below the oldest pending one.
    /// `None` when there is nothing new to store: the partition is not
    /// assigned (a completion left over from before a revoke), or the offset
    /// would not move forwards.
    pub(crate) fn complete(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let state = self.partitions.get_mut(&partition)?;
        if !state.pending.remove(&offset) {
            return None;
        }
        let next = match state.pending.first() {
            Some(oldest) => *oldest,
            None => state.highest? + 1,
        };
        if state.stored.is_some_and(|stored| next <= stored) {
            return None;
        }
        state.stored = Some(next);
        Some(next)
    }

    /// Forgets revoked partitions: their events in flight may finish, but
    /// they no longer move an offset. If a partition comes back, it starts
    /// afresh from its committed offset.
    pub(crate) fn revoke(&mut self, partitions: &[i32]) {
        for partition in partitions {
            self.partitions.remove(partition);
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commits_stop_below_the_oldest_pending_event() {
        let mut tracker = PendingEvents::default();
        for offset in 10..15 {
            tracker.begin(0, offset);
        }
        assert_eq!(tracker.complete(0, 12), None, "10 still pending: no move");
        assert_eq!(tracker.complete(0, 10), Some(11));
        assert_eq!(tracker.complete(0, 11), Some(13));
        assert_eq!(tracker.complete(0, 14), None, "13 still pending: no move");
        assert_eq!(tracker.complete(0, 13), Some(15));
        assert_eq!(tracker.in_flight(), 0);
        assert_eq!(tracker.complete(7, 1), None);
    }

    #[test]
    fn a_revoked_partition_forgets_its_events_and_starts_afresh() {
        let mut tracker = PendingEvents::default();
        for offset in 100..110 {
            tracker.begin(1, offset);
        }
        assert_eq!(tracker.complete(1, 100), Some(101));
        tracker.revoke(&[1]);
        assert_eq!(tracker.in_flight(), 0);
        // A completion left over from before the revoke stores nothing.
        assert_eq!(tracker.complete(1, 105), None);
        // Back from the committed offset 101: the old highest (109) is gone,
        // so finishing 101 does not jump past the events still to come.
        tracker.begin(1, 101);
        tracker.begin(1, 102);
        assert_eq!(tracker.complete(1, 101), Some(102));
        assert_eq!(
            tracker.complete(1, 109),
            None,
            "never begun in this assignment"
        );
        assert_eq!(tracker.complete(1, 102), Some(103));
    }

    proptest! {
        #[test]
        fn a_committed_offset_never_passes_an_unfinished_event(
            order in Just((0i64..40).collect::<Vec<_>>()).prop_shuffle()
        ) {
            let mut tracker = PendingEvents::default();
            for offset in 0..40 {
                tracker.begin(3, offset);
            }
            let mut done = BTreeSet::new();
            let mut last = 0;
            for offset in order {
                done.insert(offset);
                if let Some(commit) = tracker.complete(3, offset) {
                    prop_assert!(commit > last, "offsets only move forwards");
                    prop_assert!((0..commit).all(|o| done.contains(&o)));
                    last = commit;
                }
            }
            prop_assert_eq!(last, 40);
            prop_assert_eq!(tracker.in_flight(), 0);
        }
    }
}
