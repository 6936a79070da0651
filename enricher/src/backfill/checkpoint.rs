//! Where a resource's scan is: the position stored after each page.

use chrono::{DateTime, Utc};
use schemas::Resource;
use serde::{Deserialize, Serialize};

/// Where a resource's scan is, as stored in the checkpoint topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Checkpoint {
    pub(super) resource: Resource,
    pub(super) updated_after: Option<DateTime<Utc>>,
    pub(super) updated_before: Option<DateTime<Utc>>,
    /// The latest update time seen: the next page starts there.
    pub(super) cursor: Option<DateTime<Utc>>,
    /// The page starts exactly at the cursor, without the overlap: a full
    /// page inside the overlap made no progress.
    #[serde(default)]
    pub(super) tight: bool,
    /// Offset among records sharing the cursor's exact update time (only when
    /// more than a page share it).
    pub(super) offset: usize,
    pub(super) pages: u64,
    pub(super) objects: u64,
    pub(super) done: bool,
}

impl Checkpoint {
    /// Moves past a page of `listed` records, the newest updated at
    /// `newest`, `fresh` of them new to this run.
    pub(super) fn advance(
        &mut self,
        listed: usize,
        newest: Option<DateTime<Utc>>,
        fresh: usize,
        limit: usize,
    ) {
        self.pages += 1;
        self.objects += fresh as u64;
        if listed < limit {
            self.done = true;
        } else if newest > self.cursor {
            self.cursor = newest;
            self.tight = false;
            self.offset = 0;
        } else if !self.tight {
            // A full page inside the overlap: start at the cursor itself.
            self.tight = true;
        } else {
            // More than a page share one update time: only an offset moves
            // on among them.
            self.offset += limit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::page::Item;
    use serde_json::Value;

    fn item(id: &str, updated: &str) -> Item {
        Item {
            id: id.into(),
            updated: updated.parse().expect("a time"),
            record: Value::Null,
        }
    }

    /// Advances past `items` as the scan does.
    fn advance(checkpoint: &mut Checkpoint, items: &[Item], fresh: usize, limit: usize) {
        let newest = items.iter().map(|i| i.updated).max();
        checkpoint.advance(items.len(), newest, fresh, limit);
    }

    fn start() -> Checkpoint {
        Checkpoint {
            resource: Resource::Results,
            updated_after: None,
            updated_before: None,
            cursor: None,
            tight: false,
            offset: 0,
            pages: 0,
            objects: 0,
            done: false,
        }
    }

    #[test]
    fn the_cursor_follows_update_times_and_offsets_only_move_among_equal_ones() {
        let mut checkpoint = start();
        let t1 = "2025-01-01T00:00:01Z";
        let t2 = "2025-01-01T00:00:02Z";
        advance(&mut checkpoint, &[item("a", t1), item("b", t2)], 2, 2);
        assert_eq!(checkpoint.cursor, Some(t2.parse().expect("time")));
        assert!(!checkpoint.tight && checkpoint.offset == 0);

        // A full page inside the overlap: start at the cursor itself...
        advance(&mut checkpoint, &[item("b", t2), item("c", t2)], 1, 2);
        assert!(checkpoint.tight && checkpoint.offset == 0);
        // ...and when a page still shares the cursor's exact time, page on.
        advance(&mut checkpoint, &[item("c", t2), item("d", t2)], 1, 2);
        assert_eq!(checkpoint.offset, 2);
        // Progress resets both.
        advance(
            &mut checkpoint,
            &[item("e", "2025-01-01T00:00:03Z"), item("f", t2)],
            2,
            2,
        );
        assert!(!checkpoint.tight && checkpoint.offset == 0);

        // A short page is the end.
        advance(&mut checkpoint, &[item("g", "2025-01-01T00:00:04Z")], 1, 2);
        assert!(checkpoint.done);
        assert_eq!((checkpoint.pages, checkpoint.objects), (5, 7));
    }
}
