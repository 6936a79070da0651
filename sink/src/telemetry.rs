//! Every metric the sink's Kafka side records, one function per thing that
//! happens, so that each name is written once; [`metric_names`] lists every
//! metric the sink serves, for the check that alert rules and dashboards
//! name only metrics that exist. The tables' own metrics (commits,
//! compaction, vacuum) are `lake`'s.

use std::time::Duration;

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
