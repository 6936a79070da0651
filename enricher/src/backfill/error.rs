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
    /// The API refused or failed the list request for good.
    #[error("listing {resource}: {source}")]
    Api {
        /// The resource listed.
        resource: &'static str,
        /// The API's error.
        source: FetchError,
    },
    /// The broker refused the records or the checkpoint.
    #[error("producing to {topic}: {message}")]
    Produce {
        /// The topic.
        topic: String,
        /// Why.
        message: String,
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
