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
    /// Whether this member still owns each partition of `batches`
    /// (partition, the batch's first offset): librdkafka has not lost the
    /// assignment (a missed `max.poll.interval.ms` or session), each
    /// partition is assigned, and the group coordinator accepts one commit
    /// of every batch's first offset under the member's current generation
    /// (where the broker checks generations, as Kafka does). The commit
    /// does not move the offsets: each batch starts at its committed
    /// offset.
    pub(crate) async fn prove_ownership(
        &self,
        batches: &[(i32, i64)],
        shutdown: &CancellationToken,
    ) -> Result<(), Unflushed> {
        let lost = self.consumer.assignment_lost();
        let assignment = self.consumer.assignment().ok();
        for (partition, _) in batches {
            let assigned = !lost
                && assignment
                    .as_ref()
                    .is_some_and(|a| a.find_partition(&self.topic, *partition).is_some());
            if !assigned {
                tracing::warn!(
                    partition,
                    "the partition is no longer assigned to this member"
                );
                return Err(Unflushed::Lost);
            }
        }
        let mut offsets = rdkafka::TopicPartitionList::new();
        for (partition, first_offset) in batches {
            offsets
                .add_partition_offset(
                    &self.topic,
                    *partition,
                    rdkafka::Offset::Offset(*first_offset),
                )
                .map_err(|_| Unflushed::Lost)?;
        }
        let partitions: Vec<i32> = batches.iter().map(|(p, _)| *p).collect();
        OWNERSHIP_RETRY
            .run(
                shutdown,
                |_| runtime::commit(&self.consumer, Some(offsets.clone()), COMMIT_DEADLINE),
                |error, attempt| {
                    if lost_membership(error) {
                        tracing::warn!(%error, ?partitions, "the group coordinator says the partitions are no longer this member's");
                        Verdict::GiveUp
                    } else {
                        tracing::warn!(%error, ?partitions, attempt, "proving ownership failed; retrying");
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
