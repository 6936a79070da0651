//! Why a backfill stops.

use crate::client::FetchError;

/// Why a backfill stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// The list endpoint's answer does not have the configured shape.
    #[error("the list endpoint {url} answered a page the configuration does not read: {problem}; answer starts with {sample}")]
    Envelope {
        /// The request.
        url: String,
        /// What does not match.
        problem: String,
        /// The answer's first characters.
        sample: String,
    },
    /// The endpoint did not do what the request asked (order, filter).
    #[error("the list endpoint {url} did not apply {what}: asked {asked}, got {got}; the scan cannot list every record this way: check {setting}")]
    Ignored {
        /// The request.
        url: String,
        /// What it ignored.
        what: &'static str,
        /// What was asked.
        asked: String,
        /// What came back.
        got: String,
        /// The setting to check.
        setting: &'static str,
    },
    /// The scan listed fewer objects than the endpoint counted.
    #[error("{resource}: listed {listed} objects, but the endpoint counted {total} at the start of the run: records may have been left unlisted (or were deleted while it ran); run it again with the same window")]
    Incomplete {
        /// The resource.
        resource: &'static str,
        /// Objects listed.
        listed: u64,
        /// The endpoint's count.
        total: u64,
    },
    /// Shutdown came before the list was scanned to its end.
    #[error("{resource}: stopped by shutdown before the end of the list")]
    Interrupted {
        /// The resource.
        resource: &'static str,
    },
    /// Items were skipped.
    #[error("the backfill finished, but {items} listed items were skipped (logged as \"skipped an item\" with their page and position): malformed items, or records refused to the key with --fetch-each")]
    Skipped {
        /// How many.
        items: u64,
    },
    /// The API refused or failed the list request for good.
    #[error("listing {resource}: {source}")]
    Api {
        /// The resource listed.
        resource: &'static str,
        /// The API's error.
        source: FetchError,
    },
    /// The broker refused the records or the checkpoint.
    #[error("producing to {topic}: {source}")]
    Produce {
        /// The topic.
        topic: String,
        /// Why.
        source: runtime::Failure<rdkafka::error::KafkaError>,
    },
    /// Kafka configuration or a Kafka call failed.
    #[error(transparent)]
    Kafka(#[from] runtime::KafkaError),
    /// The lake to compare with could not be read.
    #[error("comparing with the lake: {0}")]
    Lake(lake::ReadError),
    /// A list URL could not be built, or would leave the API's origin.
    #[error("list url: {0}")]
    Url(#[from] crate::client::ClientError),
}

impl From<rdkafka::error::KafkaError> for BackfillError {
    fn from(error: rdkafka::error::KafkaError) -> Self {
        BackfillError::Kafka(error.into())
    }
}
