//! The `event_id`s a table holds, per day, for the days of a horizon: what a
//! writer needs to leave out a record the table already holds.
//!
//! An id is kept as its 16 bytes (a pipeline id is 32 hex digits, the first
//! half of a SHA-256; any other text is reduced to the first 16 bytes of its
//! SHA-256), in one hash set per (table, day). The ids are uniformly random,
//! so the set hashes them by their low 64 bits without mixing: a slot costs
//! 17 bytes, and with the set's load between 44 % and 87 % a tracked id
//! costs 20 to 39 bytes.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use chrono::NaiveDate;
use schemas::Table;
use sha2::{Digest, Sha256};

/// An event id reduced to 16 bytes.
pub type IdDigest = u128;

/// The digest of an `event_id`: the id itself when it is 32 hex digits.
pub fn digest(event_id: &str) -> IdDigest {
    if event_id.len() == 32 {
        if let Ok(id) = u128::from_str_radix(event_id, 16) {
            return id;
        }
    }
    let hash = Sha256::digest(event_id.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash[..16]);
    u128::from_be_bytes(first)
}

/// Hashes a digest by its low 64 bits: they are random already.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u128(&mut self, id: u128) {
        self.0 = id as u64;
    }
}

type IdSet = HashSet<IdDigest, BuildHasherDefault<IdHasher>>;

/// Bytes a slot of an id set takes: the digest and a control byte.
const SLOT_BYTES: usize = std::mem::size_of::<IdDigest>() + 1;

/// The ids each table holds, per day, from a first day on, and on earlier
/// days read one by one.
#[derive(Default)]
pub struct EventIds {
    days: BTreeMap<(Table, NaiveDate), IdSet>,
    /// Days before this one are not tracked, but for `earlier`.
    since: Option<NaiveDate>,
    /// Days before `since` that are tracked, with the last time a record
    /// of them came (a counter): the least recently used leaves first.
    earlier: BTreeMap<NaiveDate, u64>,
    uses: u64,
}

impl EventIds {
    /// Tracks the days from `since` on; ids of earlier days are forgotten.
    pub fn new(since: NaiveDate) -> Self {
        EventIds {
            since: Some(since),
            ..EventIds::default()
        }
    }

    /// The first day tracked.
    pub fn since(&self) -> Option<NaiveDate> {
        self.since
    }

    /// Whether `day` is tracked: a record of an earlier day cannot be told
    /// apart from one the table holds.
    pub fn tracks(&self, day: NaiveDate) -> bool {
        self.since.is_some_and(|since| day >= since) || self.earlier.contains_key(&day)
    }

    /// Notes that a record of `day` came: an earlier day read on its own
    /// stays the longer for it.
    pub fn touch(&mut self, day: NaiveDate) {
        if let Some(used) = self.earlier.get_mut(&day) {
            self.uses += 1;
            *used = self.uses;
        }
    }

    /// Adds the ids `day` holds, read on their own (`ids`, which tracks
    /// that day): the day is tracked from now on, until forgotten.
    pub fn absorb_day(&mut self, day: NaiveDate, ids: EventIds) {
        for ((table, other_day), set) in ids.days {
            if other_day == day {
                self.days.insert((table, day), set);
            }
        }
        if self.since.is_none_or(|since| day < since) {
            self.uses += 1;
            self.earlier.insert(day, self.uses);
        }
    }

    /// Forgets the earlier day least recently used, if any; returns it.
    pub fn forget_least_used_day(&mut self) -> Option<NaiveDate> {
        let (&day, _) = self.earlier.iter().min_by_key(|(_, used)| **used)?;
        self.earlier.remove(&day);
        self.days.retain(|(_, d), _| *d != day);
        Some(day)
    }

    /// Whether `table` holds the id on `day`.
    pub fn holds(&self, table: Table, day: NaiveDate, id: IdDigest) -> bool {
        self.days
            .get(&(table, day))
            .is_some_and(|ids| ids.contains(&id))
    }

    /// Notes that `table` holds `id` on `day`, if the day is tracked.
    pub fn insert(&mut self, table: Table, day: NaiveDate, id: IdDigest) {
        if self.tracks(day) {
            self.days.entry((table, day)).or_default().insert(id);
        }
    }

    /// Notes every id of `ids`.
    pub fn extend(&mut self, ids: impl IntoIterator<Item = (Table, NaiveDate, IdDigest)>) {
        for (table, day, id) in ids {
            self.insert(table, day, id);
        }
    }

    /// Stops tracking the days before `since`.
    pub fn forget_before(&mut self, since: NaiveDate) {
        if self.since.is_some_and(|known| known >= since) {
            return;
        }
        self.since = Some(since);
        let earlier = &self.earlier;
        self.days
            .retain(|(_, day), _| *day >= since || earlier.contains_key(day));
    }

    /// Earlier days tracked on their own.
    pub fn earlier_days(&self) -> usize {
        self.earlier.len()
    }

    /// Ids tracked.
    pub fn len(&self) -> usize {
        self.days.values().map(HashSet::len).sum()
    }

    /// Whether no id is tracked.
    pub fn is_empty(&self) -> bool {
        self.days.values().all(HashSet::is_empty)
    }

    /// Memory the ids take, counted by slots.
    pub fn bytes(&self) -> usize {
        self.days
            .values()
            // A set of capacity c has c * 8 / 7 slots.
            .map(|ids| ids.capacity() * 8 / 7 * SLOT_BYTES)
            .sum()
    }

    /// The earliest day any table holds ids of.
    pub fn oldest_day(&self) -> Option<NaiveDate> {
        self.days.keys().map(|(_, day)| *day).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 3, d).expect("a date")
    }

    #[test]
    fn a_pipeline_id_is_its_own_digest_and_other_text_is_hashed() {
        assert_eq!(digest("0000000000000000000000000000000a"), 10);
        assert_eq!(digest("ffffffffffffffffffffffffffffffff"), u128::MAX);
        assert_ne!(digest("not hex"), digest("not hex either"));
        assert_eq!(digest("not hex"), digest("not hex"));
    }

    #[test]
    fn ids_are_held_per_table_and_day_from_the_first_tracked_day() {
        let mut ids = EventIds::new(day(2));
        ids.insert(Table::Events, day(2), 7);
        ids.insert(Table::Events, day(1), 8);
        assert!(ids.holds(Table::Events, day(2), 7));
        assert!(!ids.holds(Table::Records(schemas::Resource::Results), day(2), 7));
        assert!(!ids.holds(Table::Events, day(3), 7));
        assert!(!ids.holds(Table::Events, day(1), 8), "before the horizon");
        assert!(!ids.tracks(day(1)));
        ids.insert(Table::Events, day(3), 9);
        ids.forget_before(day(3));
        assert!(!ids.holds(Table::Events, day(2), 7));
        assert!(ids.holds(Table::Events, day(3), 9));
        assert_eq!(ids.len(), 1);
    }

    #[test]
    fn an_earlier_day_read_on_its_own_is_tracked_until_forgotten() {
        let mut ids = EventIds::new(day(10));
        let mut one = EventIds::new(day(2));
        one.insert(Table::Events, day(2), 5);
        one.insert(Table::Events, day(3), 6);
        ids.absorb_day(day(2), one);
        let mut other = EventIds::new(day(4));
        other.insert(Table::Events, day(4), 7);
        ids.absorb_day(day(4), other);
        assert!(ids.tracks(day(2)) && ids.tracks(day(4)) && !ids.tracks(day(3)));
        assert!(ids.holds(Table::Events, day(2), 5));
        assert!(!ids.holds(Table::Events, day(3), 6), "not the day asked");
        ids.forget_before(day(11));
        assert!(ids.holds(Table::Events, day(2), 5), "earlier days stay");
        ids.touch(day(2));
        assert_eq!(ids.forget_least_used_day(), Some(day(4)));
        assert_eq!(ids.forget_least_used_day(), Some(day(2)));
        assert!(!ids.holds(Table::Events, day(2), 5));
        assert_eq!(ids.forget_least_used_day(), None);
    }

    #[test]
    fn a_tracked_id_costs_at_most_48_bytes() {
        let mut ids = EventIds::new(day(1));
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..1_000_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let id = (u128::from(state) << 64) | u128::from(state.rotate_left(29));
            ids.insert(Table::Events, day(1), id);
        }
        let per_id = ids.bytes() as f64 / ids.len() as f64;
        eprintln!("{per_id:.1} bytes per tracked id");
        assert!(per_id <= 48.0, "{per_id:.1} bytes per id");
    }
}
