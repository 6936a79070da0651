//! Kafka record header names used across stages.

/// Deterministic id of the webhook event (see [`crate::EventId`]).
pub const EVENT_ID: &str = "event_id";
/// When `ingest` received the webhook, RFC 3339 UTC.
pub const RECEIVED_AT: &str = "received_at";
/// Which signature encoding matched (`hex`, `HEX`, `base64`, ...).
pub const SIGNATURE_FORM: &str = "signature_form";
/// Dead-letter headers: the stage that gave up and why.
pub const DLQ_STAGE: &str = "dlq_stage";
pub const DLQ_ERROR_CLASS: &str = "dlq_error_class";
pub const DLQ_ERROR: &str = "dlq_error";
pub const DLQ_HTTP_STATUS: &str = "dlq_http_status";
pub const DLQ_ATTEMPTS: &str = "dlq_attempts";
pub const DLQ_ORIGINAL_TOPIC: &str = "dlq_original_topic";
pub const DLQ_ORIGINAL_PARTITION: &str = "dlq_original_partition";
pub const DLQ_ORIGINAL_OFFSET: &str = "dlq_original_offset";
