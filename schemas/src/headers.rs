//! Kafka record headers used across stages: every name, and the one codec
//! of the headers of raw and enriched records.

use chrono::{DateTime, SecondsFormat, Utc};

/// Deterministic id of the webhook event (see [`crate::EventId`]).
pub const EVENT_ID: &str = "event_id";
/// The Mobaro account the event came from (absent: the default account).
pub const ACCOUNT: &str = "account";
/// When `ingest` received the webhook, RFC 3339 UTC.
pub const RECEIVED_AT: &str = "received_at";
/// Which signature encoding matched (`hex`, `HEX`, `base64`, ...).
pub const SIGNATURE_FORM: &str = "signature_form";
/// On a record put back on the raw topic by a replay: where it came from
/// (`dead_letter`).
pub const REPLAYED_FROM: &str = "replayed_from";
/// On a quarantined request published by `ingest replay`: when, RFC 3339
/// UTC.
pub const REPLAYED_AT: &str = "replayed_at";

/// The prefix every dead-letter header starts with (see
/// [`crate::DeadLetter`]).
pub const DLQ_PREFIX: &str = "dlq_";
/// The stage that gave up (`enricher`, `sink`).
pub const DLQ_STAGE: &str = "dlq_stage";
/// Why, as a [`crate::DeadLetterClass`] name.
pub const DLQ_ERROR_CLASS: &str = "dlq_error_class";
/// The error, for people.
pub const DLQ_ERROR: &str = "dlq_error";
/// The API's HTTP status, when one answered; empty otherwise.
pub const DLQ_HTTP_STATUS: &str = "dlq_http_status";
/// Attempts made before giving up.
pub const DLQ_ATTEMPTS: &str = "dlq_attempts";
/// The topic the record was read from.
pub const DLQ_ORIGINAL_TOPIC: &str = "dlq_original_topic";
/// Its partition.
pub const DLQ_ORIGINAL_PARTITION: &str = "dlq_original_partition";
/// Its offset.
pub const DLQ_ORIGINAL_OFFSET: &str = "dlq_original_offset";

/// The headers of a raw record: a verified webhook on the raw topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHeaders {
    /// The event's id (see [`crate::EventId`]).
    pub event_id: String,
    /// The account the webhook was posted to; None for the default one.
    pub account: Option<String>,
    /// When ingest received the webhook.
    pub received_at: Option<DateTime<Utc>>,
    /// Which signature encoding matched.
    pub signature_form: Option<String>,
    /// When `ingest replay` published it from the quarantine.
    pub replayed_at: Option<DateTime<Utc>>,
}

impl RawHeaders {
    /// The account the event belongs to.
    pub fn account(&self) -> &str {
        self.account.as_deref().unwrap_or(crate::DEFAULT_ACCOUNT)
    }
}

impl RawHeaders {
    /// The headers as (name, value) pairs, times in RFC 3339 UTC with
    /// microseconds.
    pub fn encode(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![(EVENT_ID, self.event_id.clone())];
        pairs.extend(self.account.as_ref().map(|a| (ACCOUNT, a.clone())));
        pairs.extend(self.received_at.map(|at| (RECEIVED_AT, time(at))));
        pairs.extend(
            self.signature_form
                .as_ref()
                .map(|form| (SIGNATURE_FORM, form.clone())),
        );
        pairs.extend(self.replayed_at.map(|at| (REPLAYED_AT, time(at))));
        pairs
    }

    /// The headers `get` finds by name; a missing or unreadable one is None
    /// (the event id empty).
    pub fn decode<'a>(get: impl Fn(&str) -> Option<&'a str>) -> RawHeaders {
        let at = |name| {
            DateTime::parse_from_rfc3339(get(name)?)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        RawHeaders {
            event_id: get(EVENT_ID).unwrap_or_default().to_string(),
            account: get(ACCOUNT).map(str::to_string),
            received_at: at(RECEIVED_AT),
            signature_form: get(SIGNATURE_FORM).map(str::to_string),
            replayed_at: at(REPLAYED_AT),
        }
    }
}

/// The headers of an enriched record.
pub fn enriched(event_id: &crate::EventId) -> [(&'static str, &str); 1] {
    [(EVENT_ID, event_id.as_str())]
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_headers_read_back_as_written() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().ok();
        let written = RawHeaders {
            event_id: "0123".into(),
            account: Some("park-a".into()),
            received_at: at("2025-03-01T08:00:00.123456Z"),
            signature_form: Some("hex".into()),
            replayed_at: at("2025-03-02T08:00:00Z"),
        };
        let pairs = written.encode();
        let read = RawHeaders::decode(|name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.as_str())
        });
        assert_eq!(read, written);
        let bare = RawHeaders::decode(|_| None);
        assert_eq!(bare.received_at, None);
        assert_eq!(bare.event_id, "");
    }
}
