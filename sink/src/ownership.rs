//! Proof that this member still owns a partition, before its batch is
//! written: the assignment is intact and the group coordinator accepts a
//! commit under the member's current generation.

use std::time::Duration;

use rdkafka::consumer::Consumer;
use runtime::{Retried, Retry, Verdict};
use tokio_util::sync::CancellationToken;

use crate::flush::{Flusher, Unflushed, COMMIT_DEADLINE};

const OWNERSHIP_RETRY: Retry = Retry::forever(Duration::from_millis(500), Duration::from_secs(10));

impl Flusher {
    /// Whether this member still owns `partition`: librdkafka has not lost
    /// the assignment (a missed `max.poll.interval.ms` or session), the
    /// partition is assigned, and the group coordinator accepts a commit of
    /// the batch's first offset under the member's current generation (where
    /// the broker checks generations, as Kafka does). The commit does not
    /// move the offset: the batch starts at the committed offset.
    pub(crate) async fn prove_ownership(
        &self,
        partition: i32,
        first_offset: i64,
        shutdown: &CancellationToken,
    ) -> Result<(), Unflushed> {
        let assigned = !self.consumer.assignment_lost()
            && self.consumer.assignment().is_ok_and(|assignment| {
                assignment.find_partition(&self.topic, partition).is_some()
            });
        if !assigned {
            tracing::warn!(
                partition,
                "the partition is no longer assigned to this member"
            );
            return Err(Unflushed::Lost);
        }
        let offsets = self
            .offsets(partition, first_offset)
            .map_err(|_| Unflushed::Lost)?;
        OWNERSHIP_RETRY
            .run(
                shutdown,
                |_| runtime::commit(&self.consumer, Some(offsets.clone()), COMMIT_DEADLINE),
                |error, attempt| {
                    if lost_membership(error) {
                        tracing::warn!(%error, partition, "the group coordinator says the partition is no longer this member's");
                        Verdict::GiveUp
                    } else {
                        tracing::warn!(%error, partition, attempt, "proving ownership failed; retrying");
                        Verdict::Retry
                    }
                },
            )
            .await
            .or_stopped()?
            .map_err(|_| Unflushed::Lost)
    }
}

/// Commit errors that mean the member is no longer in the group, or in an
/// older generation of it: its partitions may belong to another member.
fn lost_membership(error: &runtime::CommitError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    let runtime::CommitError::Kafka(rdkafka::error::KafkaError::ConsumerCommit(code)) = error
    else {
        return false;
    };
    matches!(
        code,
        Code::IllegalGeneration
            | Code::UnknownMemberId
            | Code::FencedInstanceId
            | Code::RebalanceInProgress
            | Code::AssignmentLost
            | Code::State
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lost_generation_counts_as_lost_ownership() {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode as Code;
        let commit = |code| runtime::CommitError::Kafka(KafkaError::ConsumerCommit(code));
        assert!(lost_membership(&commit(Code::IllegalGeneration)));
        assert!(lost_membership(&commit(Code::UnknownMemberId)));
        assert!(lost_membership(&commit(Code::FencedInstanceId)));
        assert!(!lost_membership(&commit(Code::NotCoordinator)));
        assert!(!lost_membership(&commit(Code::BrokerTransportFailure)));
        assert!(!lost_membership(&runtime::CommitError::Timeout(
            Duration::from_secs(1)
        )));
    }
}
