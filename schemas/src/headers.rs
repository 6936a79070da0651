//! Kafka record header names used across stages.

/// Deterministic id of the webhook event (see [`crate::EventId`]).
pub const EVENT_ID: &str = "event_id";
/// When `ingest` received the webhook, RFC 3339 UTC.
pub const RECEIVED_AT: &str = "received_at";
/// Which signature encoding matched (`hex`, `HEX`, `base64`, ...).
pub const SIGNATURE_FORM: &str = "signature_form";
/// On a record put back on the raw topic by a replay: where it came from
/// (`dead_letter`).
pub const REPLAYED_FROM: &str = "replayed_from";

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
