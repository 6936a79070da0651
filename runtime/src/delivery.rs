//! Producing records that must not be lost: retried until the broker
//! acknowledges them, until the broker refuses them for good, or until
//! shutdown.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use crate::Producer;
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

use crate::retry::{Failure, Retry, Verdict};

const PRODUCE_RETRY: Retry = Retry::forever(Duration::from_millis(200), Duration::from_secs(10));
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// Appends text headers to `headers`.
pub fn with_headers<V: AsRef<str>>(mut headers: OwnedHeaders, pairs: &[(&str, V)]) -> OwnedHeaders {
    for (key, value) in pairs {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_ref()),
        });
    }
    headers
}

/// A record to produce; `key` and `headers` are optional.
pub struct Outgoing<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The record's key.
    pub key: Option<&'a [u8]>,
    /// The record's value.
    pub payload: &'a [u8],
    /// The record's headers.
    pub headers: OwnedHeaders,
}

/// True for the errors that producing the same record again cannot cure:
/// the record is too large or malformed for the broker. Everything else
/// (a broker down, a leader moving, a full queue, a timeout) is transient.
pub fn is_permanent(error: &KafkaError) -> bool {
    let code = match error {
        KafkaError::MessageProduction(code) => *code,
        _ => return false,
    };
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidRequiredAcks
    )
}

/// True for the errors an operator must cure by granting access: the
/// broker refuses this client the topic, the cluster or its credentials.
pub fn is_refused_access(error: &KafkaError) -> bool {
    let code = match error {
        KafkaError::MessageProduction(code) => *code,
        _ => return false,
    };
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
    )
}

/// Produces `record` like [`produce`], for a one-off command's bookkeeping:
/// retried for at most `budget` whatever shutdown does, and given up at
/// once when the broker refuses access too (see [`is_refused_access`]), so
/// that the command ends with the error instead of waiting for an operator.
pub async fn produce_within(
    producer: &Producer,
    record: &Outgoing<'_>,
    budget: Duration,
) -> Result<(), Failure<KafkaError>> {
    let policy = PRODUCE_RETRY.with_budget(budget);
    send_until(
        policy,
        producer,
        record,
        &CancellationToken::new(),
        |error| is_permanent(error) || is_refused_access(error),
    )
    .await
}

/// Produces `record` until the broker acknowledges it, backing off between
/// attempts. [`Failure::Permanent`] when the broker refuses the record for
/// good (see [`is_permanent`]), [`Failure::Stopped`] when `shutdown` came
/// first: either way the record is not delivered.
pub async fn produce(
    producer: &Producer,
    record: &Outgoing<'_>,
    shutdown: &CancellationToken,
) -> Result<(), Failure<KafkaError>> {
    send_until(PRODUCE_RETRY, producer, record, shutdown, is_permanent).await
}

/// Produces `record` under `policy` until acknowledged, until `permanent`
/// says an error is, or until shutdown.
async fn send_until(
    policy: Retry,
    producer: &Producer,
    record: &Outgoing<'_>,
    shutdown: &CancellationToken,
    permanent: impl Fn(&KafkaError) -> bool,
) -> Result<(), Failure<KafkaError>> {
    policy
        .run(
            shutdown,
            |_| {
                let mut future = FutureRecord::to(record.topic)
                    .payload(record.payload)
                    .headers(record.headers.clone());
                if let Some(key) = record.key {
                    future = future.key(key);
                }
                let sent = producer.send(future, QUEUE_TIMEOUT);
                async move { sent.await.map(|_| ()).map_err(|(error, _)| error) }
            },
            |error, attempt| {
                if permanent(error) {
                    tracing::warn!(%error, topic = record.topic, "the broker refused the record for good");
                    Verdict::GiveUp
                } else {
                    tracing::warn!(%error, topic = record.topic, attempt, "produce failed; retrying");
                    Verdict::Retry
                }
            },
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_format_refusals_are_permanent_and_outages_transient() {
        let produce = KafkaError::MessageProduction;
        assert!(is_permanent(&produce(
            RDKafkaErrorCode::MessageSizeTooLarge
        )));
        assert!(is_permanent(&produce(
            RDKafkaErrorCode::MessageBatchTooLarge
        )));
        assert!(is_permanent(&produce(RDKafkaErrorCode::InvalidRecord)));
        assert!(!is_permanent(&produce(RDKafkaErrorCode::QueueFull)));
        assert!(!is_permanent(&produce(RDKafkaErrorCode::MessageTimedOut)));
        assert!(!is_permanent(&produce(
            RDKafkaErrorCode::BrokerTransportFailure
        )));
        assert!(!is_permanent(&produce(
            RDKafkaErrorCode::NotLeaderForPartition
        )));
        assert!(!is_permanent(&produce(
            RDKafkaErrorCode::TopicAuthorizationFailed
        )));
        assert!(!is_permanent(&KafkaError::Canceled));
    }
}
