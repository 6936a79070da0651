//! Every metric the sink's Kafka side records, one function per thing that
//! happens, so that each name is written once; [`metric_names`] lists every
//! metric the sink serves, for the check that alert rules and dashboards
//! name only metrics that exist. The tables' own metrics (commits,
//! compaction, vacuum) are `lake`'s.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use crate::rotation::FlushReason;

const MESSAGES: &str = "sink_messages_total";
const BUFFERED_BYTES: &str = "sink_buffered_bytes";
const DEAD_LETTERS: &str = "sink_dead_letters_total";
const BATCHES_ABANDONED: &str = "sink_batches_abandoned_total";
const PUT_SECONDS: &str = "sink_put_seconds";
const FILES: &str = "sink_files_total";
const FILE_BYTES_TOTAL: &str = "sink_file_bytes_total";
const ROWS: &str = "sink_rows_total";
const FILE_BYTES: &str = "sink_file_bytes";
const FILE_ROWS: &str = "sink_file_rows";
const UPKEEP_FAILURES: &str = "sink_upkeep_failures_total";
const DUPLICATES: &str = "sink_duplicates_left_out_total";
const TRACKED_IDS: &str = "sink_dedup_tracked_events";
const TRACKED_BYTES: &str = "sink_dedup_tracked_bytes";
const HORIZON_DAYS: &str = "sink_dedup_horizon_days";
const REBUILD_SECONDS: &str = "sink_dedup_rebuild_seconds";
const ARRIVAL_DELAY: &str = "sink_arrival_delay_seconds";
const LATE_ROWS: &str = "sink_late_rows_total";
const LAST_COMMIT: &str = "sink_last_commit_timestamp_seconds";
const OLDEST_PENDING: &str = "sink_oldest_pending_timestamp_seconds";

const METRICS: &[&str] = &[
    MESSAGES,
    BUFFERED_BYTES,
    DEAD_LETTERS,
    BATCHES_ABANDONED,
    PUT_SECONDS,
    FILES,
    FILE_BYTES_TOTAL,
    ROWS,
    FILE_BYTES,
    FILE_ROWS,
    UPKEEP_FAILURES,
    DUPLICATES,
    TRACKED_IDS,
    TRACKED_BYTES,
    HORIZON_DAYS,
    REBUILD_SECONDS,
    ARRIVAL_DELAY,
    LATE_ROWS,
    LAST_COMMIT,
    OLDEST_PENDING,
];

/// Every metric the sink serves: its own, the tables', and the readiness
/// and lag gauges of the runtime.
pub fn metric_names() -> Vec<String> {
    METRICS
        .iter()
        .chain(lake::METRICS)
        .map(|name| name.to_string())
        .chain([runtime::ready_metric("sink"), runtime::lag_metric("sink")])
        .collect()
}

/// Serves every table's counters from zero, so that the first late row or
/// left-out duplicate is an increase Prometheus sees.
pub(crate) fn start_counters() {
    for table in schemas::Table::all() {
        metrics::counter!(LATE_ROWS, "table" => table.name()).increment(0);
        metrics::counter!(DUPLICATES, "table" => table.name()).increment(0);
    }
}

/// A scheduled upkeep run (compaction, vacuum) failed or panicked.
pub(crate) fn upkeep_failed() {
    metrics::counter!(UPKEEP_FAILURES).increment(1);
}

/// A message was taken from the topic.
pub(crate) fn message_taken() {
    metrics::counter!(MESSAGES).increment(1);
}

/// The bytes all batches hold now.
pub(crate) fn buffered(bytes: usize) {
    metrics::gauge!(BUFFERED_BYTES).set(bytes as f64);
}

/// An undecodable record went to the dead-letter topic.
pub(crate) fn dead_lettered() {
    metrics::counter!(DEAD_LETTERS).increment(1);
}

/// A batch was dropped unwritten: its partition is another member's.
pub(crate) fn batch_abandoned() {
    metrics::counter!(BATCHES_ABANDONED).increment(1);
}

/// A data file was written (or found written) in `took`.
pub(crate) fn file_written(reason: FlushReason, bytes: usize, rows: usize, took: Duration) {
    metrics::histogram!(PUT_SECONDS).record(took.as_secs_f64());
    metrics::counter!(FILES, "reason" => reason.as_str()).increment(1);
    metrics::counter!(FILE_BYTES_TOTAL).increment(bytes as u64);
    metrics::counter!(ROWS).increment(rows as u64);
    metrics::histogram!(FILE_BYTES).record(bytes as f64);
    metrics::histogram!(FILE_ROWS).record(rows as f64);
}

/// A record's row was left out of `table`: the table holds its event id.
pub(crate) fn duplicate_left_out(table: schemas::Table) {
    metrics::counter!(DUPLICATES, "table" => table.name()).increment(1);
}

/// The event ids tracked for deduplication, their memory, and the days of
/// the horizon in force (fewer than configured when the memory ran short).
pub(crate) fn dedup_tracked(ids: usize, bytes: usize, horizon_days: u32) {
    metrics::gauge!(TRACKED_IDS).set(ids as f64);
    metrics::gauge!(TRACKED_BYTES).set(bytes as f64);
    metrics::gauge!(HORIZON_DAYS).set(f64::from(horizon_days));
}

/// What a read of tracked event ids covered.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IdsRead {
    /// Every day of the horizon, after partitions were assigned.
    Horizon,
    /// One day before the horizon, for a record of that day.
    Day,
}

/// Event ids were read from the tables in `took`; served per `scope`
/// (`horizon` or `day`), the two costing very differently.
pub(crate) fn dedup_rebuilt(read: IdsRead, took: Duration) {
    let scope = match read {
        IdsRead::Horizon => "horizon",
        IdsRead::Day => "day",
    };
    metrics::histogram!(REBUILD_SECONDS, "scope" => scope).record(took.as_secs_f64());
}

/// A record of `resource` reached the sink: the webhook's timestamp was
/// `event_timestamp`, ingest received it at `received_at`. Served as a
/// histogram with buckets from a second to a week (`runtime`'s delay
/// buckets).
pub(crate) fn arrived(
    resource: schemas::Resource,
    event_timestamp: DateTime<Utc>,
    received_at: DateTime<Utc>,
) {
    let delay = (received_at - event_timestamp).num_milliseconds().max(0) as f64 / 1000.0;
    metrics::histogram!(ARRIVAL_DELAY, "resource" => resource.collection()).record(delay);
}

/// `files` were committed to their tables; rows of days compaction has
/// closed (days before `closed_before`) are late: the day is compacted
/// again for them.
pub(crate) fn committed(files: &[lake::DataFile], closed_before: chrono::NaiveDate) {
    let now = unix_seconds(SystemTime::now());
    for file in files {
        let table = file.path.table.name();
        metrics::gauge!(LAST_COMMIT, "table" => table).set(now);
        if file.path.date < closed_before {
            metrics::counter!(LATE_ROWS, "table" => table).increment(file.rows as u64);
        }
    }
}

/// The oldest record waiting uncommitted in a batch arrived at `since`
/// (None: no record waits).
pub(crate) fn oldest_pending(since: Option<SystemTime>) {
    metrics::gauge!(OLDEST_PENDING).set(since.map_or(0.0, unix_seconds));
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}
