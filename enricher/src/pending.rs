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
    /// Per partition, the offsets the last committed position says finished
    /// above its offset: skipped when they come again.
    finished_earlier: BTreeMap<i32, Finished>,
    /// Partitions whose progress changed since the last [`Self::take_changed`].
    changed: BTreeSet<i32>,
}

/// Offsets finished above a committed offset: every offset of
/// `from..=to` but those in `unfinished`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Finished {
    from: i64,
    to: i64,
    unfinished: BTreeSet<i64>,
}

/// The prefix of a committed offset's metadata that lists what finished
/// above the offset.
const PROGRESS_PREFIX: &str = "finished-above:1:";

/// Kafka's default limit on offset metadata is 4,096 bytes; the list stops
/// short of it, and what it leaves out is enriched again after a restart.
const PROGRESS_MAX_BYTES: usize = 3_000;

/// A partition's position: the offset to commit, and the metadata that
/// says which offsets above it finished already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Progress {
    pub(crate) next: i64,
    pub(crate) metadata: String,
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
        self.changed.insert(partition);
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

    /// `partition`'s position: the offset to commit, and in its metadata
    /// the offsets above it that finished while an older event was still
    /// in flight (a restart, or the partition's next owner, skips them).
    pub(crate) fn progress(&self, partition: i32) -> Option<Progress> {
        let state = self.partitions.get(&partition)?;
        let next = state.stored?;
        let Some(highest) = state.highest.filter(|h| *h >= next) else {
            return Some(Progress {
                next,
                metadata: String::new(),
            });
        };
        let mut metadata = String::from(PROGRESS_PREFIX);
        let mut to = highest;
        let mut unfinished = Vec::new();
        let mut bytes = metadata.len() + 20;
        for offset in state.pending.range(next..) {
            let entry = (offset - next).to_string();
            if bytes + entry.len() + 1 > PROGRESS_MAX_BYTES {
                to = offset - 1;
                break;
            }
            bytes += entry.len() + 1;
            unfinished.push(entry);
        }
        metadata.push_str(&format!("{}:{}", to - next, unfinished.join(",")));
        Some(Progress { next, metadata })
    }

    /// The partitions whose progress changed since the last call.
    pub(crate) fn take_changed(&mut self) -> BTreeSet<i32> {
        std::mem::take(&mut self.changed)
    }

    /// What `partition`'s committed position says: its offset `next` and
    /// metadata written by [`Self::progress`]. Anything else is ignored.
    pub(crate) fn resume(&mut self, partition: i32, next: i64, metadata: &str) {
        let Some(list) = metadata.strip_prefix(PROGRESS_PREFIX) else {
            return;
        };
        let parsed = (|| {
            let (span, unfinished) = list.split_once(':')?;
            let span: i64 = span.parse().ok()?;
            let unfinished = unfinished
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<i64>().ok().map(|d| next + d))
                .collect::<Option<BTreeSet<i64>>>()?;
            Some(Finished {
                from: next,
                to: next + span,
                unfinished,
            })
        })();
        if let Some(finished) = parsed {
            self.finished_earlier.insert(partition, finished);
        }
    }

    /// Whether the event at `offset` finished before the partition was
    /// last committed: its record is in the enriched or dead-letter topic.
    pub(crate) fn finished_earlier(&self, partition: i32, offset: i64) -> bool {
        self.finished_earlier
            .get(&partition)
            .is_some_and(|f| (f.from..=f.to).contains(&offset) && !f.unfinished.contains(&offset))
    }

    /// Whether the partition's committed position has been read.
    pub(crate) fn knows(&self, partition: i32) -> bool {
        self.partitions.contains_key(&partition) || self.finished_earlier.contains_key(&partition)
    }

    /// Forgets revoked partitions: their events in flight may finish, but
    /// they no longer move an offset. If a partition comes back, it starts
    /// afresh from its committed offset.
    pub(crate) fn revoke(&mut self, partitions: &[i32]) {
        for partition in partitions {
            self.partitions.remove(partition);
            self.finished_earlier.remove(partition);
            self.changed.remove(partition);
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

    #[test]
    fn what_finished_above_the_offset_is_skipped_after_a_restart() {
        let mut tracker = PendingEvents::default();
        for offset in 10..20 {
            tracker.begin(0, offset);
        }
        for offset in [11, 12, 14, 15, 16, 17, 19] {
            assert_eq!(tracker.complete(0, offset), None, "10 is in flight");
        }
        assert_eq!(tracker.take_changed(), BTreeSet::from([0]));
        let progress = tracker.progress(0).expect("known");
        assert_eq!(progress.next, 10);
        assert_eq!(progress.metadata, "finished-above:1:9:0,3,8");
        let mut restarted = PendingEvents::default();
        restarted.resume(0, progress.next, &progress.metadata);
        let skipped: Vec<i64> = (5..25)
            .filter(|o| restarted.finished_earlier(0, *o))
            .collect();
        assert_eq!(skipped, vec![11, 12, 14, 15, 16, 17, 19]);
        restarted.resume(1, 5, "written by someone else");
        assert!(!restarted.finished_earlier(1, 6));
        restarted.revoke(&[0]);
        assert!(!restarted.finished_earlier(0, 11));
    }

    #[test]
    fn a_long_list_stops_below_the_metadata_limit() {
        let mut tracker = PendingEvents::default();
        for offset in 0..10_000 {
            tracker.begin(0, offset);
        }
        for offset in (1..10_000).step_by(2) {
            let _ = tracker.complete(0, offset);
        }
        let progress = tracker.progress(0).expect("known");
        assert!(progress.metadata.len() <= PROGRESS_MAX_BYTES);
        let mut restarted = PendingEvents::default();
        restarted.resume(0, progress.next, &progress.metadata);
        assert!(restarted.finished_earlier(0, 1));
        assert!(!restarted.finished_earlier(0, 2));
        assert!(!restarted.finished_earlier(0, 9_999), "beyond the list");
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
