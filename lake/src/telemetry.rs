//! Every metric the tables record, one function per thing that happens, so
//! that each name is written once; [`METRICS`] lists them for the check that
//! alert rules and dashboards name only metrics that exist. The sink serves
//! them, hence the `sink_` prefix.

use std::time::Duration;

use schemas::Table;

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
const STORE_REQUESTS: &str = "sink_store_requests_total";
const RECORDED_ROWS: &str = "sink_recorded_rows_total";
const TYPED_NULLS: &str = "sink_typed_nulls_total";
const UNMAPPED_FIELDS: &str = "sink_unmapped_fields_total";
const ERASED_ROWS: &str = "sink_erased_rows_total";
const ERASED_RECORDS: &str = "sink_erased_records_total";

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
    STORE_REQUESTS,
    RECORDED_ROWS,
    TYPED_NULLS,
    UNMAPPED_FIELDS,
    ERASED_ROWS,
    ERASED_RECORDS,
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

/// A day of `table` was compacted: `files` read and written, `rows` read
/// and written.
pub(crate) fn day_compacted(table: Table, files: (usize, usize), rows: (u64, u64)) {
    metrics::counter!(COMPACTIONS, "table" => table.name()).increment(1);
    metrics::counter!(COMPACTION_FILES_IN).increment(files.0 as u64);
    metrics::counter!(COMPACTION_FILES_OUT).increment(files.1 as u64);
    metrics::counter!(COMPACTION_ROWS_DEDUPLICATED).increment(rows.0.saturating_sub(rows.1));
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

/// A call was made to the object store (`list` counts one per listing,
/// however many pages the store answers it in).
pub(crate) fn store_request(operation: &'static str) {
    metrics::counter!(STORE_REQUESTS, "operation" => operation).increment(1);
}

/// `rows` rows of `table` were encoded with a fetched record.
pub(crate) fn recorded_rows(table: Table, rows: usize) {
    metrics::counter!(RECORDED_ROWS, "table" => table.name()).increment(rows as u64);
}

/// Of the rows with a fetched record, `nulls` had no value for the typed
/// column `column` of `table`: its path found nothing in the record.
pub(crate) fn typed_nulls(table: Table, column: &'static str, nulls: usize) {
    metrics::counter!(TYPED_NULLS, "table" => table.name(), "column" => column)
        .increment(nulls as u64);
}

/// A sampled record of `table` held the field `path` that no typed column
/// reads (`other` past the first paths named).
pub(crate) fn unmapped_field(table: Table, path: String) {
    metrics::counter!(UNMAPPED_FIELDS, "table" => table.name(), "path" => path).increment(1);
}

/// An erasure deleted (`action` "deleted") or redacted ("redacted") `rows`
/// rows of `table`.
pub(crate) fn erased_rows(table: Table, action: &'static str, rows: usize) {
    metrics::counter!(ERASED_ROWS, "table" => table.name(), "action" => action)
        .increment(rows as u64);
}

/// A record about to be written named a forgotten person: `outcome`
/// "dropped" (their own User record) or "erased".
pub fn erased_record(outcome: &'static str) {
    metrics::counter!(ERASED_RECORDS, "outcome" => outcome).increment(1);
}
