//! Where a resource's scan is: the position stored after each page.

use chrono::{DateTime, Utc};
use schemas::Resource;
use serde::{Deserialize, Serialize};

/// Where a resource's scan is, as stored in the checkpoint topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Checkpoint {
    pub(super) resource: Resource,
    /// The run's parameters, digested: only a run with the same ones
    /// resumes this checkpoint (see [`run_key`]).
    #[serde(default)]
    pub(super) run: String,
    pub(super) updated_after: Option<DateTime<Utc>>,
    pub(super) updated_before: Option<DateTime<Utc>>,
    /// The latest update time seen: the next page starts an overlap before.
    pub(super) cursor: Option<DateTime<Utc>>,
    /// Offset from the page's start time: only while full pages make no
    /// progress (more than a page of records within the overlap).
    pub(super) offset: usize,
    /// The page size in force: the one asked for, or the endpoint's cap
    /// once seen.
    #[serde(default)]
    pub(super) limit: usize,
    /// The endpoint answered a full page at `limit`: a shorter page is the
    /// end of the list.
    #[serde(default)]
    pub(super) confirmed: bool,
    /// The length of a page shorter than the limit that made progress
    /// before any full page: the end of the list, or the endpoint's cap
    /// (when the next page is exactly as long).
    #[serde(default)]
    pub(super) short: Option<usize>,
    pub(super) pages: u64,
    pub(super) objects: u64,
    /// Items skipped: malformed, or refused with `--fetch-each`.
    #[serde(default)]
    pub(super) skipped: u64,
    /// Pages paged by offset within the overlap.
    #[serde(default)]
    pub(super) offset_pages: u64,
    /// The endpoint's total at the run's first page, when it gives one.
    #[serde(default)]
    pub(super) total: Option<u64>,
    pub(super) done: bool,
}

/// What one page changed of the scan, worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    /// The cursor moved, or the scan ended.
    Plain,
    /// A page shorter than asked was followed by one as long: the endpoint
    /// caps its pages there, and the scan now asks for that many.
    CapAdopted(usize),
    /// A full page made no progress: the next is asked by offset.
    ByOffset,
}

impl Checkpoint {
    /// A new run's first position.
    pub(super) fn start(
        resource: Resource,
        run: String,
        updated_after: Option<DateTime<Utc>>,
        updated_before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Checkpoint {
        Checkpoint {
            resource,
            run,
            updated_after,
            updated_before,
            cursor: None,
            offset: 0,
            limit: limit.max(1),
            confirmed: false,
            short: None,
            pages: 0,
            objects: 0,
            skipped: 0,
            offset_pages: 0,
            total: None,
            done: false,
        }
    }

    /// Moves past a page of `listed` items, the newest updated at
    /// `newest`, `fresh` of them new to this run.
    ///
    /// The scan ends at a page shorter than the page size in force once the
    /// endpoint has answered a full page at that size, or at a short page
    /// that brings nothing past the cursor: every page starts an overlap
    /// before the cursor, so under any reading of the filter such a page
    /// has listed everything there was. A short page with progress before
    /// any full page could be the endpoint's cap: one more request decides.
    /// If that page is exactly as long, it was the cap, which is adopted;
    /// otherwise the short page was the end (and the extra page lists what
    /// was edited since).
    pub(super) fn advance(
        &mut self,
        listed: usize,
        newest: Option<DateTime<Utc>>,
        fresh: usize,
    ) -> Turn {
        self.pages += 1;
        self.objects += fresh as u64;
        self.limit = self.limit.max(1);
        let mut turn = Turn::Plain;
        if let Some(short) = self.short.take() {
            if listed == short {
                self.limit = short;
                turn = Turn::CapAdopted(short);
            } else {
                self.cursor = self.cursor.max(newest);
                self.done = true;
                return turn;
            }
        }
        let progress = newest.is_some() && newest > self.cursor;
        let full = listed >= self.limit;
        self.confirmed |= full;
        if progress {
            self.cursor = newest;
            self.offset = 0;
            if !full {
                if self.confirmed {
                    self.done = true;
                } else {
                    self.short = Some(listed);
                }
            }
        } else if full {
            self.offset += listed;
            self.offset_pages += 1;
            if turn == Turn::Plain {
                turn = Turn::ByOffset;
            }
        } else {
            self.done = true;
        }
        turn
    }
}

/// The key of a run: the resource and what it was asked to list (the
/// window as given, `--since` as a duration, and the list endpoint: the
/// API's base URL and the list path), so that a different command, or the
/// same one against another account's API, starts its own run.
pub(super) fn run_key(
    resource: Resource,
    updated_after: Option<DateTime<Utc>>,
    since: Option<std::time::Duration>,
    updated_before: Option<DateTime<Utc>>,
    list_path: &str,
) -> String {
    use sha2::{Digest, Sha256};
    let parameters =
        format!("{resource}|{updated_after:?}|{since:?}|{updated_before:?}|{list_path}");
    let digest = Sha256::digest(parameters.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
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
    fn advance(checkpoint: &mut Checkpoint, items: &[Item], fresh: usize) -> Turn {
        let newest = items.iter().map(|i| i.updated).max();
        checkpoint.advance(items.len(), newest, fresh)
    }

    fn start() -> Checkpoint {
        Checkpoint::start(Resource::Results, "run".into(), None, None, 2)
    }

    #[test]
    fn the_cursor_follows_update_times_and_offsets_only_move_without_progress() {
        let mut checkpoint = start();
        let t1 = "2025-01-01T00:00:01Z";
        let t2 = "2025-01-01T00:00:02Z";
        advance(&mut checkpoint, &[item("a", t1), item("b", t2)], 2);
        assert_eq!(checkpoint.cursor, Some(t2.parse().expect("time")));
        assert_eq!(checkpoint.offset, 0);

        // A full page inside the overlap: page on by offset from the same start.
        let turn = advance(&mut checkpoint, &[item("b", t2), item("c", t2)], 1);
        assert_eq!((turn, checkpoint.offset), (Turn::ByOffset, 2));
        let turn = advance(&mut checkpoint, &[item("d", t2), item("e", t2)], 2);
        assert_eq!((turn, checkpoint.offset), (Turn::ByOffset, 4));
        // Progress resets the offset.
        advance(
            &mut checkpoint,
            &[item("f", t2), item("g", "2025-01-01T00:00:03Z")],
            2,
        );
        assert_eq!(checkpoint.offset, 0);

        // After full pages, a short page is the end, even if records were
        // edited meanwhile.
        advance(&mut checkpoint, &[item("h", "2025-01-01T00:00:04Z")], 1);
        assert!(checkpoint.done);
        assert_eq!((checkpoint.pages, checkpoint.objects), (5, 8));
    }

    #[test]
    fn a_short_page_followed_by_one_as_long_is_the_endpoints_cap() {
        let mut checkpoint = Checkpoint::start(Resource::Results, "run".into(), None, None, 128);
        let page = |second: u32| -> Vec<Item> {
            (0..20)
                .map(|i| {
                    item(
                        &format!("{second}-{i}"),
                        &format!("2025-01-01T00:00:{second:02}Z"),
                    )
                })
                .collect()
        };
        assert_eq!(advance(&mut checkpoint, &page(1), 20), Turn::Plain);
        // Exactly as long, even without progress: the cap. Twenty records
        // within the overlap are then paged by offset, not taken for the end.
        assert_eq!(advance(&mut checkpoint, &page(1), 0), Turn::CapAdopted(20));
        assert_eq!((checkpoint.limit, checkpoint.offset), (20, 20));
        assert!(!checkpoint.done);
        // Capped pages are full; a shorter one is the end.
        assert_eq!(advance(&mut checkpoint, &page(2), 20), Turn::Plain);
        advance(&mut checkpoint, &page(3)[..5], 5);
        assert!(checkpoint.done);
    }

    #[test]
    fn a_short_first_page_is_the_end_when_the_next_is_not_as_long() {
        let mut checkpoint = Checkpoint::start(Resource::Results, "run".into(), None, None, 128);
        let t1 = "2025-01-01T00:00:01Z";
        advance(
            &mut checkpoint,
            &[item("a", t1), item("b", t1), item("c", t1)],
            3,
        );
        assert!(!checkpoint.done);
        // The overlap again, and one record edited since.
        advance(
            &mut checkpoint,
            &[item("c", t1), item("d", "2025-01-01T00:00:02Z")],
            1,
        );
        assert!(checkpoint.done);
        assert_eq!(checkpoint.objects, 4);
    }

    #[test]
    fn a_run_is_keyed_by_what_it_was_asked_to_list() {
        let after = Some("2025-01-01T00:00:00Z".parse().expect("a time"));
        let day = Some(std::time::Duration::from_secs(86_400));
        let full = run_key(Resource::Results, None, None, None, "{collection}");
        assert_eq!(
            full,
            run_key(Resource::Results, None, None, None, "{collection}")
        );
        for other in [
            run_key(Resource::Users, None, None, None, "{collection}"),
            run_key(Resource::Results, after, None, None, "{collection}"),
            run_key(Resource::Results, None, day, None, "{collection}"),
            run_key(Resource::Results, None, None, after, "{collection}"),
            run_key(Resource::Results, None, None, None, "v2/{collection}"),
            run_key(
                Resource::Results,
                None,
                None,
                None,
                "https://other.example/api/|{collection}",
            ),
        ] {
            assert_ne!(full, other);
        }
    }
}
