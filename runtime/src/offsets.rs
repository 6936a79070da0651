//! Offset commits that cannot hang a stage.
//!
//! librdkafka's synchronous commit blocks its thread until the group
//! coordinator answers, which never happens while the broker is down. Commits
//! therefore run on a thread of their own, awaited with a deadline.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;

#[derive(Debug, thiserror::Error)]
/// Why an offset commit failed.
pub enum CommitError {
    #[error("offset commit failed: {0}")]
    /// The broker refused it.
    Kafka(#[from] KafkaError),
    #[error("offset commit not confirmed within {0:?}")]
    /// No answer within the deadline.
    Timeout(Duration),
}

/// Commits `offsets` (or, when `None`, the consumer's stored offsets)
/// synchronously, giving up after `deadline`. Nothing to commit is success.
pub async fn commit<C, X>(
    consumer: &Arc<C>,
    offsets: Option<TopicPartitionList>,
    deadline: Duration,
) -> Result<(), CommitError>
where
    C: Consumer<X> + Send + Sync + 'static,
    X: ConsumerContext + 'static,
{
    let consumer = Arc::clone(consumer);
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let outcome = match offsets {
            Some(offsets) => consumer.commit(&offsets, CommitMode::Sync),
            None => consumer.commit_consumer_state(CommitMode::Sync),
        };
        let _ = done.send(outcome);
    });
    match tokio::time::timeout(deadline, result).await {
        Err(_) | Ok(Err(_)) => Err(CommitError::Timeout(deadline)),
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)))) => Ok(()),
        Ok(Ok(Err(error))) => Err(error.into()),
    }
}
