//! The names of the readiness checks, as `/readyz` lists them and the
//! `{stage}_ready{check}` gauges label them (the alert rules and dashboards
//! use the same names).

/// The Kafka broker answers metadata requests.
pub const BROKER: &str = "broker";
/// The dead-letter topic takes records.
pub const DEAD_LETTER_TOPIC: &str = "dead_letter_topic";
/// The Mobaro API accepts the key (enricher).
pub const MOBARO_API: &str = "mobaro_api";
/// The object store takes writes (sink).
pub const OBJECT_STORE: &str = "object_store";
