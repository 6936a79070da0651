//! Every metric ingest records, one function per thing that happens, so
//! that each name is written once; [`metric_names`] lists them for the
//! check that alert rules and dashboards name only metrics that exist.

use std::time::Duration;

const REQUESTS_IN_FLIGHT: &str = "ingest_requests_in_flight";
const REQUESTS: &str = "ingest_requests_total";
const SIGNATURE_MATCHES: &str = "ingest_signature_matches_total";
const ACK_SECONDS: &str = "ingest_ack_seconds";
const QUARANTINE: &str = "ingest_quarantine_total";

/// Every metric ingest serves, with the runtime's readiness gauge.
pub fn metric_names() -> Vec<String> {
    [
        REQUESTS_IN_FLIGHT,
        REQUESTS,
        SIGNATURE_MATCHES,
        ACK_SECONDS,
        QUARANTINE,
    ]
    .iter()
    .map(|name| name.to_string())
    .chain([runtime::ready_metric("ingest")])
    .collect()
}

/// A request started (`1.0`) or ended (`-1.0`).
pub(crate) fn requests_in_flight(change: f64) {
    metrics::gauge!(REQUESTS_IN_FLIGHT).increment(change);
}

/// A request was answered with `outcome`.
pub(crate) fn request(outcome: &'static str) {
    metrics::counter!(REQUESTS, "outcome" => outcome).increment(1);
}

/// A signature matched in `form`.
pub(crate) fn signature_matched(form: &'static str) {
    metrics::counter!(SIGNATURE_MATCHES, "form" => form).increment(1);
}

/// The broker acknowledged a webhook after `took`.
pub(crate) fn acknowledged(took: Duration) {
    metrics::histogram!(ACK_SECONDS).record(took.as_secs_f64());
}

/// A rejected request's quarantine write ended with `outcome`.
pub(crate) fn quarantined(outcome: &'static str) {
    metrics::counter!(QUARANTINE, "outcome" => outcome).increment(1);
}
