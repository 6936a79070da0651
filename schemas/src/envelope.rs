//! The enriched record: what `enricher` produces and `sink` writes, one per webhook.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{EventId, EventKind, Resource, WebhookEvent};

/// What the enricher learned about the record behind the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchStatus {
    /// Fetched from the API; `record` holds the full JSON.
    Found,
    /// The API answered 404: the record was deleted after the event was sent.
    NotFound,
    /// A `Deleted` event: nothing to fetch.
    Deleted,
    /// The resource is not configured for enrichment; the event stands alone.
    NotFetched,
}

impl FetchStatus {
    /// Every status, in declaration order.
    pub const ALL: [FetchStatus; 4] = [
        FetchStatus::Found,
        FetchStatus::NotFound,
        FetchStatus::Deleted,
        FetchStatus::NotFetched,
    ];

    /// The status's name in the lake.
    pub fn as_str(self) -> &'static str {
        match self {
            FetchStatus::Found => "found",
            FetchStatus::NotFound => "not_found",
            FetchStatus::Deleted => "deleted",
            FetchStatus::NotFetched => "not_fetched",
        }
    }
}

/// One webhook event with, when fetched, the full record from Mobaro's API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichedRecord {
    /// The event's deterministic id.
    pub event_id: EventId,
    /// The Mobaro account the event came from.
    #[serde(default = "default_account")]
    pub account: String,
    /// The resource.
    pub resource: Resource,
    /// Created, Updated or Deleted.
    pub event: EventKind,
    /// Mobaro's id of the object.
    pub object_id: String,
    /// The webhook's timestamp.
    pub event_timestamp: DateTime<Utc>,
    /// When ingest received the webhook.
    pub received_at: Option<DateTime<Utc>>,
    /// When the record was fetched.
    pub fetched_at: Option<DateTime<Utc>>,
    /// What the fetch found.
    pub status: FetchStatus,
    /// The full JSON the API returned, untouched, so no field Mobaro adds is lost.
    pub record: Option<serde_json::Value>,
}

impl EnrichedRecord {
    /// The record of `event` in the default account, without a fetched
    /// record.
    pub fn new(
        event: &WebhookEvent,
        received_at: Option<DateTime<Utc>>,
        status: FetchStatus,
    ) -> Self {
        EnrichedRecord::in_account(crate::DEFAULT_ACCOUNT, event, received_at, status)
    }

    /// The record of `event` in `account`, without a fetched record.
    pub fn in_account(
        account: &str,
        event: &WebhookEvent,
        received_at: Option<DateTime<Utc>>,
        status: FetchStatus,
    ) -> Self {
        EnrichedRecord {
            event_id: event.event_id_in(account),
            account: account.to_string(),
            resource: event.resource,
            event: event.event,
            object_id: event.object_id.clone(),
            event_timestamp: event.timestamp,
            received_at,
            fetched_at: None,
            status,
            record: None,
        }
    }

    /// Adds the fetched record and when it was fetched.
    pub fn with_record(mut self, record: serde_json::Value, fetched_at: DateTime<Utc>) -> Self {
        self.record = Some(record);
        self.fetched_at = Some(fetched_at);
        self
    }
}

/// An enriched record as the sink reads it: borrowed from the message, with
/// the fetched record left as its JSON text.
#[derive(Debug, Deserialize)]
pub struct EnrichedView<'a> {
    #[serde(borrow)]
    /// The event's deterministic id.
    pub event_id: Cow<'a, str>,
    #[serde(borrow, default = "default_account_view")]
    /// The Mobaro account the event came from (records written before
    /// accounts existed: the default account).
    pub account: Cow<'a, str>,
    /// The resource.
    pub resource: Resource,
    /// Created, Updated or Deleted.
    pub event: EventKind,
    #[serde(borrow)]
    /// Mobaro's id of the object.
    pub object_id: Cow<'a, str>,
    /// The webhook's timestamp.
    pub event_timestamp: DateTime<Utc>,
    /// When ingest received the webhook.
    pub received_at: Option<DateTime<Utc>>,
    /// When the record was fetched.
    pub fetched_at: Option<DateTime<Utc>>,
    /// What the fetch found.
    pub status: FetchStatus,
    #[serde(borrow, default)]
    /// The fetched record's JSON text.
    pub record: Option<&'a RawValue>,
}

impl<'a> EnrichedView<'a> {
    /// Reads an enriched record without copying its strings or the fetched record.
    pub fn from_json(payload: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(payload)
    }

    /// The fetched record's JSON text, exactly as the enricher wrote it.
    pub fn record_json(&self) -> Option<&'a str> {
        self.record.map(RawValue::get)
    }
}
fn default_account() -> String {
    crate::DEFAULT_ACCOUNT.to_string()
}

fn default_account_view<'a>() -> Cow<'a, str> {
    Cow::Borrowed(crate::DEFAULT_ACCOUNT)
}
