//! Every metric the enricher records, one function per thing that happens,
//! so that each name is written once; [`metric_names`] lists them for the
//! check that alert rules and dashboards name only metrics that exist.

use std::time::Duration;

const EVENTS: &str = "enricher_events_total";
const COALESCED_EVENTS: &str = "enricher_coalesced_events_total";
const CACHE_HITS: &str = "enricher_cache_hits_total";
const PAUSED: &str = "enricher_paused_total";
const KEY_REFUSED: &str = "enricher_key_refused";
const API_CALLS: &str = "enricher_api_calls_total";
const API_RETRIES: &str = "enricher_api_retries_total";
const RATE_LIMIT_WAIT_SECONDS: &str = "enricher_rate_limit_wait_seconds";
const BACKPRESSURE_PAUSES: &str = "enricher_backpressure_pauses_total";
const EVENTS_IN_FLIGHT: &str = "enricher_events_in_flight";
const CONSUMPTION_PAUSED: &str = "enricher_consumption_paused";
const BACKFILL_OBJECTS: &str = "enricher_backfill_objects_total";
const BACKFILL_SKIPPED: &str = "enricher_backfill_skipped_total";
const FINISHED_EARLIER: &str = "enricher_finished_earlier_total";
const ERASED_RECORDS: &str = "enricher_erased_records_total";

/// Every metric the enricher serves, with the runtime's readiness and lag
/// gauges.
pub fn metric_names() -> Vec<String> {
    [
        EVENTS,
        COALESCED_EVENTS,
        CACHE_HITS,
        PAUSED,
        KEY_REFUSED,
        API_CALLS,
        API_RETRIES,
        RATE_LIMIT_WAIT_SECONDS,
        BACKPRESSURE_PAUSES,
        EVENTS_IN_FLIGHT,
        CONSUMPTION_PAUSED,
        BACKFILL_OBJECTS,
        BACKFILL_SKIPPED,
        FINISHED_EARLIER,
        ERASED_RECORDS,
    ]
    .iter()
    .map(|name| name.to_string())
    .chain([
        runtime::ready_metric("enricher"),
        runtime::lag_metric("enricher"),
    ])
    .collect()
}

/// An event of `account` was settled with `outcome` (a fetch status, or
/// `dead_letter`). Accounts are configured, so the label's values are
/// bounded.
pub(crate) fn event(account: &str, outcome: &'static str) {
    metrics::counter!(EVENTS, "account" => account.to_string(), "outcome" => outcome).increment(1);
}

/// `events` events shared one fetch with another.
pub(crate) fn coalesced(events: usize) {
    metrics::counter!(COALESCED_EVENTS).increment(events as u64);
}

/// A record came from the cache instead of the API.
pub(crate) fn cache_hit() {
    metrics::counter!(CACHE_HITS).increment(1);
}

/// The API refused `account`'s key: its fetching pauses.
pub(crate) fn paused(account: &str) {
    metrics::counter!(PAUSED, "account" => account.to_string()).increment(1);
}

/// Whether the API refuses `account`'s key now.
pub(crate) fn key_refused(account: &str, refused: bool) {
    metrics::gauge!(KEY_REFUSED, "account" => account.to_string())
        .set(f64::from(u8::from(refused)));
}

/// An API call ended with `status` (an HTTP status, or `error`).
pub(crate) fn api_call(status: String) {
    metrics::counter!(API_CALLS, "status" => status).increment(1);
}

/// An API call is retried.
pub(crate) fn api_retry() {
    metrics::counter!(API_RETRIES).increment(1);
}

/// A call waited `waited` for the rate limit.
pub(crate) fn rate_limit_waited(waited: Duration) {
    metrics::histogram!(RATE_LIMIT_WAIT_SECONDS).record(waited.as_secs_f64());
}

/// Consumption paused because the events in flight filled the window.
pub(crate) fn backpressure_paused() {
    metrics::counter!(BACKPRESSURE_PAUSES).increment(1);
}

/// The events in flight now, and whether consumption is paused.
pub(crate) fn consumption(in_flight: usize, paused: bool) {
    metrics::gauge!(EVENTS_IN_FLIGHT).set(in_flight as f64);
    metrics::gauge!(CONSUMPTION_PAUSED).set(if paused { 1.0 } else { 0.0 });
}

/// A backfill produced `objects` records.
pub(crate) fn backfilled(objects: usize) {
    metrics::counter!(BACKFILL_OBJECTS).increment(objects as u64);
}

/// A backfill skipped a listed item of `resource` (malformed, or refused to
/// the key with `--fetch-each`).
pub(crate) fn backfill_skipped(resource: schemas::Resource) {
    metrics::counter!(BACKFILL_SKIPPED, "resource" => resource.as_str()).increment(1);
}

/// An event came again after a restart or a rebalance, but the committed
/// position said it had finished: it was not enriched again.
pub(crate) fn finished_earlier() {
    metrics::counter!(FINISHED_EARLIER).increment(1);
}

/// A record about to be produced named a forgotten person: `outcome`
/// "dropped" (their own User record) or "erased".
pub(crate) fn erased_record(outcome: &'static str) {
    metrics::counter!(ERASED_RECORDS, "outcome" => outcome).increment(1);
}
