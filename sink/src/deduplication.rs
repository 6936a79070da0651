//! One row per event: the event ids the Delta tables hold on the days of
//! the horizon (and on earlier days records came for), so that a batch
//! leaves out every record its table holds already, and the batch's own
//! repeats.
//!
//! The ids are read from the tables themselves (never from the offsets
//! alone) when the sink first opens a batch and after every rebalance that
//! assigned it partitions, and kept up to date by its own commits. Copies
//! of one event carry one key, so they arrive on one partition, which one
//! member owns: its commits and the tables it read are the whole story.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use lake::{EventIds, IdDigest};
use schemas::Table;

use crate::telemetry::{self, IdsRead};

/// The share of `SINK_MEMORY_BUDGET` the tracked ids may take.
const BUDGET_SHARE: usize = 4;

/// A batch's ids: (table, day, id) of every row it holds.
pub(crate) type BatchIds = HashSet<(Table, NaiveDate, IdDigest)>;

/// The ids held, the horizon and the memory they may take.
pub(crate) struct Deduplication {
    /// Days before today tracked, as configured.
    horizon_days: u32,
    /// Days tracked now: fewer when the memory ran short.
    in_force: u32,
    /// Bytes the ids may take.
    budget: usize,
    /// The ids; `None` until read from the tables.
    held: Option<EventIds>,
    /// The day the horizon was last shortened: from the next day on, while
    /// the ids take at most half their budget, the whole horizon is read
    /// again (and shortened again if it still does not fit).
    shortened_on: Option<NaiveDate>,
}

impl Deduplication {
    /// `None` when the horizon is zero.
    pub(crate) fn new(horizon: Duration, memory_budget: usize) -> Option<Self> {
        let horizon_days = u32::try_from(horizon.as_secs().div_ceil(86_400)).unwrap_or(u32::MAX);
        (horizon_days > 0).then_some(Deduplication {
            horizon_days,
            in_force: horizon_days,
            budget: memory_budget / BUDGET_SHARE,
            held: None,
            shortened_on: None,
        })
    }

    /// The first day tracked, as of now.
    pub(crate) fn since(&self) -> NaiveDate {
        first_day(Utc::now().date_naive(), self.in_force)
    }

    /// Bytes the ids may take: a read of them stops there.
    pub(crate) fn budget(&self) -> usize {
        self.budget
    }

    /// The ids held, once read.
    pub(crate) fn held(&self) -> Option<&EventIds> {
        self.held.as_ref()
    }

    /// Forgets the ids: they are read from the tables again before the
    /// next batch opens, over the whole horizon.
    pub(crate) fn forget(&mut self) {
        self.held = None;
        self.in_force = self.horizon_days;
    }

    /// The ids the tables hold, read in `took`; when the read stopped at
    /// the budget, they begin on a later day than asked, and the horizon
    /// shortens to it.
    pub(crate) fn read(&mut self, held: EventIds, took: Duration) {
        telemetry::dedup_rebuilt(IdsRead::Horizon, took);
        let today = Utc::now().date_naive();
        if let Some(since) = held.since().filter(|since| *since > self.since()) {
            self.in_force = u32::try_from((today - since).num_days().max(0)).unwrap_or(0);
            self.shortened_on = Some(today);
            tracing::warn!(
                configured_days = self.horizon_days,
                days = self.in_force,
                bytes = held.bytes(),
                budget = self.budget,
                "the event ids of the deduplication horizon outgrew a quarter of SINK_MEMORY_BUDGET while read back: the horizon is shortened, and duplicates of older days are left to compaction; raise SINK_MEMORY_BUDGET or lower SINK_DEDUP_HORIZON"
            );
        }
        tracing::info!(
            ids = held.len(),
            bytes = held.bytes(),
            since = %held.since().map_or_else(String::new, |d| d.to_string()),
            seconds = took.as_secs_f64(),
            "event ids read from the tables"
        );
        self.held = Some(held);
        self.settle();
    }

    /// Whether a record of `day` needs the day's ids read first: the ids
    /// are known, and the day is before the horizon and not read yet.
    pub(crate) fn needs_day(&mut self, day: NaiveDate) -> bool {
        match &mut self.held {
            Some(held) if held.tracks(day) => {
                held.touch(day);
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    /// The ids the tables hold on `day`, a day before the horizon, read on
    /// their own in `took` (a backfill, or a late delivery).
    pub(crate) fn read_day(&mut self, day: NaiveDate, ids: EventIds, took: Duration) {
        telemetry::dedup_rebuilt(IdsRead::Day, took);
        if let Some(held) = &mut self.held {
            // Room is made by the earlier days least recently used, never
            // by the horizon, and never by this day: it is noted as read
            // even when it does not fit, with no ids, so that its records
            // are not read again one by one. They are then written, and
            // compaction removes what they repeat.
            let needed = ids.bytes();
            while held.bytes() + needed > self.budget && held.forget_least_used_day().is_some() {}
            if ids.tracks(day) && held.bytes() + needed <= self.budget {
                tracing::debug!(%day, ids = ids.len(), seconds = took.as_secs_f64(), "event ids of an earlier day read");
                held.absorb_day(day, ids);
            } else {
                tracing::warn!(%day, budget = self.budget, "the event ids of an earlier day do not fit in a quarter of SINK_MEMORY_BUDGET beside the horizon's: duplicates of its records are left to compaction; raise SINK_MEMORY_BUDGET or lower SINK_DEDUP_HORIZON");
                held.absorb_day(day, EventIds::new(day));
            }
        }
        self.settle();
    }

    /// A batch's rows are in the tables.
    pub(crate) fn committed(&mut self, ids: BatchIds) {
        if let Some(held) = &mut self.held {
            held.extend(ids);
            self.settle();
        }
    }

    /// Moves the horizon's first day with the calendar, and shortens the
    /// horizon while the ids take more than their share of the budget.
    fn settle(&mut self) {
        self.settle_on(Utc::now().date_naive());
    }

    /// [`Deduplication::settle`] as of `today`.
    fn settle_on(&mut self, today: NaiveDate) {
        let roomy = self
            .held
            .as_ref()
            .is_some_and(|held| held.bytes() <= self.budget / 2);
        if roomy && self.shortened_on.is_some_and(|day| day < today) {
            // A squeeze a day ago need not last: the whole horizon is read
            // again before the next batch.
            tracing::info!(
                configured_days = self.horizon_days,
                days = self.in_force,
                "reading the whole deduplication horizon again"
            );
            self.shortened_on = None;
            self.forget();
            return;
        }
        let Some(held) = &mut self.held else {
            return;
        };
        held.forget_before(first_day(today, self.in_force));
        // Earlier days read on their own leave first, least recently used
        // first; they are read again if their records come back.
        while held.bytes() > self.budget && held.forget_least_used_day().is_some() {}
        while held.bytes() > self.budget && self.in_force > 0 {
            self.in_force -= 1;
            self.shortened_on = Some(today);
            held.forget_before(first_day(today, self.in_force));
            tracing::warn!(
                configured_days = self.horizon_days,
                days = self.in_force,
                bytes = held.bytes(),
                budget = self.budget,
                "the event ids of the deduplication horizon outgrew a quarter of SINK_MEMORY_BUDGET: the horizon is shortened, and duplicates of older days are left to compaction; raise SINK_MEMORY_BUDGET or lower SINK_DEDUP_HORIZON"
            );
        }
        telemetry::dedup_tracked(held.len(), held.bytes(), self.in_force);
    }
}

/// The first day of a horizon of `days` days before `today`.
fn first_day(today: NaiveDate, days: u32) -> NaiveDate {
    today - chrono::Days::new(u64::from(days))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_horizon_is_whole_days_and_zero_turns_it_off() {
        assert!(Deduplication::new(Duration::ZERO, 1 << 20).is_none());
        let dedup = Deduplication::new(Duration::from_secs(7 * 86_400), 1 << 20).expect("on");
        assert_eq!(dedup.horizon_days, 7);
        let today = Utc::now().date_naive();
        assert_eq!(dedup.since(), first_day(today, 7));
        let hours = Deduplication::new(Duration::from_secs(3600), 1 << 20).expect("on");
        assert_eq!(hours.horizon_days, 1);
    }

    #[test]
    fn ids_beyond_the_budget_shorten_the_horizon() {
        let today = Utc::now().date_naive();
        let mut dedup =
            Deduplication::new(Duration::from_secs(3 * 86_400), 4 * 64 * 1024).expect("on");
        let mut held = EventIds::new(dedup.since());
        for id in 0..4000u128 {
            held.insert(Table::Events, first_day(today, 3), id << 64 | id);
        }
        held.insert(Table::Events, today, 1);
        dedup.read(held, Duration::ZERO);
        let held = dedup.held().expect("read");
        assert!(dedup.in_force < 3, "{} days", dedup.in_force);
        assert!(held.holds(Table::Events, today, 1));
        assert!(held.bytes() <= 64 * 1024);
    }

    #[test]
    fn an_earlier_day_too_large_is_noted_without_ids_and_not_read_again() {
        let today = Utc::now().date_naive();
        let mut dedup = Deduplication::new(Duration::from_secs(86_400), 4 * 64 * 1024).expect("on");
        let mut held = EventIds::new(dedup.since());
        held.insert(Table::Events, today, 1);
        dedup.read(held, Duration::ZERO);
        let (small, large) = (first_day(today, 30), first_day(today, 40));
        let mut ids = EventIds::new(small);
        ids.insert(Table::Events, small, 2);
        dedup.read_day(small, ids, Duration::ZERO);
        assert!(!dedup.needs_day(small));
        assert!(dedup.held().expect("read").holds(Table::Events, small, 2));
        let mut ids = EventIds::new(large);
        for id in 0..4000u128 {
            ids.insert(Table::Events, large, id << 64 | id);
        }
        dedup.read_day(large, ids, Duration::ZERO);
        let held = dedup.held().expect("read");
        assert!(!held.holds(Table::Events, large, 1 << 64 | 1));
        assert!(held.holds(Table::Events, today, 1));
        assert!(held.bytes() <= 64 * 1024);
        assert!(!dedup.needs_day(large));
        assert_eq!(dedup.in_force, 1);
    }

    #[test]
    fn ids_read_back_from_a_later_day_than_asked_shorten_the_horizon() {
        let today = Utc::now().date_naive();
        let mut dedup = Deduplication::new(Duration::from_secs(7 * 86_400), 1 << 20).expect("on");
        dedup.read(EventIds::new(first_day(today, 2)), Duration::ZERO);
        assert_eq!(dedup.in_force, 2);
        assert_eq!(dedup.since(), first_day(today, 2));
    }

    #[test]
    fn a_shortened_horizon_is_tried_whole_again_a_day_later() {
        let today = Utc::now().date_naive();
        let mut dedup =
            Deduplication::new(Duration::from_secs(3 * 86_400), 4 * 64 * 1024).expect("on");
        let mut held = EventIds::new(dedup.since());
        for id in 0..4000u128 {
            held.insert(Table::Events, first_day(today, 3), id << 64 | id);
        }
        dedup.read(held, Duration::ZERO);
        assert!(dedup.in_force < 3);
        // The same day: the horizon stays short.
        dedup.settle_on(today);
        assert!(dedup.held().is_some() && dedup.in_force < 3);
        // A day later, with room: read again, whole.
        dedup.settle_on(today + chrono::Days::new(1));
        assert!(dedup.held().is_none());
        assert_eq!(dedup.in_force, 3);
        assert_eq!(dedup.since(), first_day(today, 3));
    }
}
