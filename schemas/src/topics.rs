//! Default Kafka topic names. Every stage lets operators override them.

/// Verified webhooks exactly as Mobaro sent them, keyed by objectId.
pub const RAW: &str = "mobaro.webhooks.raw";
/// One enriched record per webhook event, keyed by objectId.
pub const ENRICHED: &str = "mobaro.records.enriched";
/// Inputs a stage could not process, with the reason in the headers.
pub const DEAD_LETTER: &str = "mobaro.deadletter";
/// Webhooks `ingest` rejected, kept for inspection and replay.
pub const QUARANTINE: &str = "mobaro.webhooks.quarantine";
/// Where `enricher backfill` keeps its position per resource (compacted).
pub const BACKFILL_CHECKPOINTS: &str = "mobaro.backfill.checkpoints";
