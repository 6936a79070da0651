//! Produces verified webhooks to the raw topic and waits for the broker's ack.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureRecord, Producer};
use runtime::KafkaArgs;

#[derive(Debug, thiserror::Error)]
/// Why a record was not stored.
pub enum PublishError {
    #[error("producer queue is full")]
    /// The producer's queue is full: the broker is slower than the webhooks.
    QueueFull,
    #[error("broker did not acknowledge within {0:?}")]
    /// No acknowledgement within the timeout.
    Timeout(Duration),
    #[error("broker rejected the event: {0}")]
    /// The broker refused the record.
    Kafka(#[from] KafkaError),
}

/// A record for the raw topic: key objectId, value the original body.
pub struct RawRecord<'a> {
    pub key: &'a str,
    pub body: &'a [u8],
    pub headers: &'a [(&'a str, &'a str)],
}

#[derive(Clone)]
/// Produces raw records and waits for their acknowledgement.
pub struct Publisher {
    producer: runtime::Producer,
    topic: String,
    ack_timeout: Duration,
}

impl Publisher {
    /// A producer for `topic` with `acks=all`, idempotence and the linger chosen for acknowledged webhooks.
    pub fn new(
        kafka: &KafkaArgs,
        context: runtime::KafkaContext,
        topic: &str,
        ack_timeout: Duration,
    ) -> Result<Self, KafkaError> {
        // Every request waits for its own acknowledgement, so a connection
        // sends at most 1 / (linger + ack latency) webhooks per second and
        // linger is paid on every one. Under load, records batch anyway while
        // the five requests idempotence allows are in flight; half a
        // millisecond only lets requests that arrive together share one.
        // BENCHMARKS.md has the measurements; KAFKA_OPTIONS overrides it.
        let producer = kafka
            .client_config(&[
                ("acks", "all"),
                ("enable.idempotence", "true"),
                ("linger.ms", "0.5"),
                ("message.timeout.ms", "30000"),
            ])
            .map_err(|e| KafkaError::ClientCreation(e.to_string()))?
            .create_with_context(context)?;
        Ok(Publisher {
            producer,
            topic: topic.to_string(),
            ack_timeout,
        })
    }

    /// Resolves once the broker acknowledged the record (`acks=all`).
    pub async fn publish(&self, record: RawRecord<'_>) -> Result<(), PublishError> {
        let headers = runtime::with_headers(
            OwnedHeaders::new_with_capacity(record.headers.len()),
            record.headers,
        );
        let delivery = self
            .producer
            .send_result(
                FutureRecord::to(&self.topic)
                    .key(record.key)
                    .payload(record.body)
                    .headers(headers),
            )
            .map_err(|(error, _)| match error {
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                    PublishError::QueueFull
                }
                other => PublishError::Kafka(other),
            })?;
        match tokio::time::timeout(self.ack_timeout, delivery).await {
            Err(_) => Err(PublishError::Timeout(self.ack_timeout)),
            Ok(Err(_cancelled)) => Err(PublishError::Kafka(KafkaError::Canceled)),
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err((error, _)))) => Err(PublishError::Kafka(error)),
        }
    }

    /// Waits for every queued record to be acknowledged, up to `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}
