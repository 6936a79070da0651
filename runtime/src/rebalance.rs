//! The consumer context both consuming stages use: it notes which partitions
//! a rebalance takes away (for the stage's loop to forget their unfinished
//! work before it stores or commits anything more) and that partitions were
//! assigned. Also the one error for a consumer that failed for good.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::client::OAuthToken;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use crate::KafkaContext;

/// The consumer failed for good (librdkafka's fatal error): typically a
/// second live instance under the same `group.instance.id` fenced this one.
#[derive(Debug, thiserror::Error)]
#[error("the consumer failed for good ({code:?}): {reason}; if another instance uses the same INSTANCE_NAME, give each instance its own")]
pub struct ConsumerFailed {
    /// librdkafka's error code.
    pub code: RDKafkaErrorCode,
    /// Its reason.
    pub reason: String,
}

/// After a consumer error: the fatal one, if the consumer cannot go on.
pub fn fatal_error(consumer: &StreamConsumer<RebalanceContext>) -> Option<ConsumerFailed> {
    use rdkafka::consumer::Consumer;
    let (code, reason) = consumer.client().fatal_error()?;
    Some(ConsumerFailed { code, reason })
}

/// What rebalances did since the loop last looked.
#[derive(Debug, Clone, Default)]
pub struct RebalanceContext {
    revoked: Arc<Mutex<Revoked>>,
    assigned: Arc<AtomicBool>,
    kafka: KafkaContext,
}

/// Partitions taken away since the loop last looked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub enum Revoked {
    #[default]
    /// No partition was revoked.
    Nothing,
    /// These partitions were revoked.
    Some(Vec<i32>),
    /// A rebalance failed: no partition can be counted as still owned.
    All,
}

impl ClientContext for RebalanceContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.kafka.generate_oauth_token(config)
    }
}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        match rebalance {
            Rebalance::Revoke(partitions) => {
                let taken: Vec<i32> = partitions
                    .elements()
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                match &mut *revoked {
                    Revoked::All => {}
                    Revoked::Some(list) => list.extend(taken),
                    nothing => *nothing = Revoked::Some(taken),
                }
            }
            Rebalance::Error(error) => {
                tracing::warn!(%error, "rebalance failed; every partition counts as revoked");
                *revoked = Revoked::All;
            }
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            let partitions: Vec<i32> = partitions
                .elements()
                .iter()
                .map(|e| e.partition())
                .collect();
            tracing::info!(?partitions, "partitions assigned");
            self.assigned.store(true, Ordering::Relaxed);
        }
    }
}

impl RebalanceContext {
    /// A context whose client signs in as `kafka`'s do.
    pub fn new(kafka: KafkaContext) -> Self {
        Self {
            kafka,
            ..Self::default()
        }
    }

    /// The partitions revoked since the last call.
    pub fn take_revoked(&self) -> Revoked {
        std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether partitions were assigned since the last call.
    pub fn take_assigned(&self) -> bool {
        self.assigned.swap(false, Ordering::Relaxed)
    }
}
