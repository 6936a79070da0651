//! The data contract between `ingest`, `enricher` and `sink`.
//!
//! Stages share nothing but this crate: the webhook event as Mobaro documents it,
//! the enriched-record envelope, the Kafka topic and header names, and the Arrow
//! schemas of the lake's tables.

mod account;
mod dead_letter;
mod envelope;
mod event;
pub mod headers;
mod quarantine;
mod tables;
pub mod topics;

pub use account::{is_account_id, object_key, DEFAULT_ACCOUNT};
pub use dead_letter::{DeadLetter, DeadLetterClass, DeadLetterHeaderError, Position, Stage};
pub use envelope::{EnrichedRecord, EnrichedView, FetchStatus};
pub use event::{EventId, EventKind, EventParseError, Resource, WebhookEvent};
pub use quarantine::QuarantineReason;
pub use tables::{
    data_type, result_value_fields, table_for, Column, Kind, Source, Table, ENVELOPE, ERASED,
};
