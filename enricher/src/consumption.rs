//! The consumer loop: takes raw events from Kafka, hands them to the
//! [`Enricher`], and stores each partition's offset once every event below it
//! is durable in the enriched or dead-letter topic.
//!
//! Stored offsets are committed by librdkafka's auto-commit and, at shutdown,
//! synchronously with a deadline. The loop never stops polling: polling is
//! what keeps the member in its group (`max.poll.interval.ms`). When too many
//! events are in flight, or while the API refuses the key, it pauses the
//! assigned partitions instead, and resumes them when half of the events in
//! flight finished (or the key works again).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use runtime::{RebalanceContext, Revoked};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::enrichment::{Enricher, Job};
use crate::pending::PendingEvents;

const COMMIT_DEADLINE: Duration = Duration::from_secs(10);

pub(crate) type EnricherConsumer = StreamConsumer<RebalanceContext>;

#[derive(Debug, thiserror::Error)]
pub enum ConsumptionError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Fatal(#[from] runtime::ConsumerFailed),
}

pub(crate) struct Consumption {
    pub consumer: Arc<EnricherConsumer>,
    pub enricher: Arc<Enricher>,
    pub done: mpsc::UnboundedReceiver<(i32, i64)>,
    pub stop: CancellationToken,
    pub topic: String,
    pub max_in_flight: usize,
    pub drain_timeout: Duration,
    /// Whether the API refuses the key (see [`Enricher::key_refused`]).
    pub key_refused: tokio::sync::watch::Receiver<bool>,
}

impl Consumption {
    pub(crate) async fn run(mut self, shutdown: CancellationToken) -> Result<(), ConsumptionError> {
        self.consumer.subscribe(&[&self.topic])?;
        let mut pending = PendingEvents::default();
        let mut paused = false;
        let mut full = false;
        let mut outcome = Ok(());
        loop {
            self.forget_revoked(&mut pending);
            let in_flight = pending.in_flight();
            full = if full {
                in_flight > self.max_in_flight / 2
            } else {
                in_flight >= self.max_in_flight
            };
            let pause = full || *self.key_refused.borrow_and_update();
            // Partitions assigned since the last pause come unpaused. The
            // refused key is logged where it is detected (enrichment), so a
            // transition here is routine: a debug line, and a counter for
            // backpressure.
            let assigned = self.consumer.context().take_assigned();
            if pause != paused {
                tracing::debug!(
                    in_flight,
                    full,
                    "consumption {}",
                    if pause { "paused" } else { "resumed" }
                );
                if full {
                    crate::telemetry::backpressure_paused();
                }
            }
            if pause != paused || (pause && assigned) {
                paused = pause;
                self.set_paused(paused);
            }
            crate::telemetry::consumption(in_flight, paused);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some((partition, offset)) = self.done.recv() => self.complete(&mut pending, partition, offset),
                message = self.consumer.recv() => match message {
                    Ok(message) => {
                        // A rebalance inside `recv` may have revoked partitions.
                        self.forget_revoked(&mut pending);
                        pending.begin(message.partition(), message.offset());
                        self.enricher.enqueue(Job::new(message.detach()));
                    }
                    Err(error) => {
                        if let Some(fatal) = runtime::fatal_error(&self.consumer) {
                            outcome = Err(fatal.into());
                            break;
                        }
                        tracing::warn!(%error, "consumer error");
                    }
                },
                Ok(()) = self.key_refused.changed() => {}
            }
        }
        self.drain(&mut pending).await;
        if let Err(error) = runtime::commit(&self.consumer, None, COMMIT_DEADLINE).await {
            tracing::warn!(%error, "final offset commit failed; the uncommitted events will be enriched again");
        }
        outcome
    }

    /// Drops the pending events of revoked partitions from the pending.
    fn forget_revoked(&self, pending: &mut PendingEvents) {
        match self.consumer.context().take_revoked() {
            Revoked::Nothing => {}
            Revoked::Some(partitions) => pending.revoke(&partitions),
            Revoked::All => *pending = PendingEvents::default(),
        }
    }

    /// Lets events in flight finish, up to the drain deadline; what is left
    /// stays uncommitted.
    async fn drain(&mut self, pending: &mut PendingEvents) {
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        while pending.in_flight() > 0 {
            tokio::select! {
                Some((partition, offset)) = self.done.recv() => self.complete(pending, partition, offset),
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(left = pending.in_flight(), "drain deadline passed; unfinished events stay uncommitted");
                    break;
                }
            }
        }
        self.stop.cancel();
    }

    fn complete(&self, pending: &mut PendingEvents, partition: i32, offset: i64) {
        let Some(next) = pending.complete(partition, offset) else {
            return;
        };
        let mut offsets = TopicPartitionList::new();
        let stored = offsets
            .add_partition_offset(&self.topic, partition, Offset::Offset(next))
            .and_then(|()| self.consumer.store_offsets(&offsets));
        if let Err(error) = stored {
            // The partition moved to another instance; it replays from its
            // last commit, and the duplicates carry the same event_id.
            tracing::debug!(%error, partition, "offset not stored");
        }
    }

    fn set_paused(&self, pause: bool) {
        let result = self.consumer.assignment().and_then(|assignment| {
            if pause {
                self.consumer.pause(&assignment)
            } else {
                self.consumer.resume(&assignment)
            }
        });
        if let Err(error) = result {
            tracing::warn!(%error, "pausing or resuming consumption failed");
        }
    }
}
