//! Which offsets may be committed while events finish out of order.
//!
//! Events of different objects complete in any order; an offset may only be
//! committed once every event below it has been produced and acknowledged.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
struct PartitionState {
    pending: BTreeSet<i64>,
    highest: Option<i64>,
}

#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: BTreeMap<i32, PartitionState>,
}

impl OffsetTracker {
    /// An event at `offset` was taken from `partition`.
    pub fn begin(&mut self, partition: i32, offset: i64) {
        let state = self.partitions.entry(partition).or_default();
        state.pending.insert(offset);
        state.highest = state.highest.max(Some(offset));
    }

    /// The event at `offset` is durable downstream. Returns the offset to
    /// commit for `partition` (the next one to consume), which covers every
    /// completed event below the oldest pending one.
    pub fn complete(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let state = self.partitions.get_mut(&partition)?;
        state.pending.remove(&offset);
        match state.pending.first() {
            Some(oldest) => Some(*oldest),
            None => state.highest.map(|h| h + 1),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commits_stop_below_the_oldest_pending_event() {
        let mut tracker = OffsetTracker::default();
        for offset in 10..15 {
            tracker.begin(0, offset);
        }
        assert_eq!(tracker.complete(0, 12), Some(10));
        assert_eq!(tracker.complete(0, 10), Some(11));
        assert_eq!(tracker.complete(0, 11), Some(13));
        assert_eq!(tracker.complete(0, 14), Some(13));
        assert_eq!(tracker.complete(0, 13), Some(15));
        assert_eq!(tracker.in_flight(), 0);
        assert_eq!(tracker.complete(7, 1), None);
    }

    proptest! {
        #[test]
        fn a_committed_offset_never_passes_an_unfinished_event(
            order in Just((0i64..40).collect::<Vec<_>>()).prop_shuffle()
        ) {
            let mut tracker = OffsetTracker::default();
            for offset in 0..40 {
                tracker.begin(3, offset);
            }
            let mut done = BTreeSet::new();
            for offset in order {
                done.insert(offset);
                let commit = tracker.complete(3, offset).expect("known partition");
                prop_assert!((0..commit).all(|o| done.contains(&o)));
            }
            prop_assert_eq!(tracker.in_flight(), 0);
        }
    }
}
