//! Every metric the tables record, one function per thing that happens, so
//! that each name is written once; [`METRICS`] lists them for the check that
//! alert rules and dashboards name only metrics that exist. The sink serves
//! them, hence the `sink_` prefix.

use std::time::Duration;

use schemas::Table;

use crate::delta::compaction::DayCompacted;

const DELTA_COMMITS: &str = "sink_delta_commits_total";
const DELTA_CONFLICTS: &str = "sink_delta_conflicts_total";
const DELTA_COMMIT_SECONDS: &str = "sink_delta_commit_seconds";
const COMPACTIONS: &str = "sink_compactions_total";
const COMPACTION_FILES_IN: &str = "sink_compaction_files_in_total";
const COMPACTION_FILES_OUT: &str = "sink_compaction_files_out_total";
const COMPACTION_ROWS_DEDUPLICATED: &str = "sink_compaction_rows_deduplicated_total";
const COMPACTION_CONFLICTS: &str = "sink_compaction_conflicts_total";
const COMPACTION_FAILURES: &str = "sink_compaction_failures_total";
const VACUUMS: &str = "sink_vacuums_total";
const VACUUM_FILES_DELETED: &str = "sink_vacuum_files_deleted_total";

/// The names of the metrics above.
pub const METRICS: &[&str] = &[
    DELTA_COMMITS,
    DELTA_CONFLICTS,
    DELTA_COMMIT_SECONDS,
    COMPACTIONS,
    COMPACTION_FILES_IN,
    COMPACTION_FILES_OUT,
    COMPACTION_ROWS_DEDUPLICATED,
    COMPACTION_CONFLICTS,
    COMPACTION_FAILURES,
    VACUUMS,
    VACUUM_FILES_DELETED,
];

/// A batch's files were committed to `table`, the commit taking `took`.
pub(crate) fn delta_committed(table: Table, took: Duration) {
    metrics::counter!(DELTA_COMMITS, "table" => table.name()).increment(1);
    metrics::histogram!(DELTA_COMMIT_SECONDS).record(took.as_secs_f64());
}

/// An append to `table` collided with another writer's commit.
pub(crate) fn delta_conflict(table: Table) {
    metrics::counter!(DELTA_CONFLICTS, "table" => table.name()).increment(1);
}

/// A day was compacted.
pub(crate) fn day_compacted(done: &DayCompacted) {
    metrics::counter!(COMPACTIONS, "table" => done.table.name()).increment(1);
    metrics::counter!(COMPACTION_FILES_IN).increment(done.files_in as u64);
    metrics::counter!(COMPACTION_FILES_OUT).increment(done.files_out as u64);
    metrics::counter!(COMPACTION_ROWS_DEDUPLICATED).increment(done.rows_in - done.rows_out);
}

/// A day's rewrite was dropped: another writer changed the day.
pub(crate) fn compaction_conflict() {
    metrics::counter!(COMPACTION_CONFLICTS).increment(1);
}

/// A day of `table` could not be compacted and was left alone.
pub(crate) fn compaction_failed(table: Table) {
    metrics::counter!(COMPACTION_FAILURES, "table" => table.name()).increment(1);
}

/// A table was vacuumed.
pub(crate) fn vacuumed(files_deleted: usize) {
    metrics::counter!(VACUUM_FILES_DELETED).increment(files_deleted as u64);
    metrics::counter!(VACUUMS).increment(1);
}
