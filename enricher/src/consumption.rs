//! The consumer loop: takes raw events from Kafka, hands them to the
//! [`Enricher`], and stores each partition's offset once every event below it
//! is durable in the enriched or dead-letter topic.
//!
//! Stored offsets are committed by librdkafka's auto-commit and, at shutdown,
//! synchronously with a deadline. Each position carries in its metadata the
//! offsets above it that finished while an older event was still in flight
//! (retried, say), committed four times a second even when the offset stood
//! still: after a kill -9, or at the partition's next owner, only the events
//! in flight are enriched again, not everything after the oldest of them.
//!
//! The loop never stops polling: polling is what keeps the member in its
//! group (`max.poll.interval.ms`). When too many
//! events are in flight, or while the API refuses the key, it pauses the
//! assigned partitions instead, and resumes them when half of the events in
//! flight finished (or the key works again).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use runtime::{RebalanceContext, Revoked};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::enrichment::{Enricher, Job};
use crate::pending::PendingEvents;

const COMMIT_DEADLINE: Duration = Duration::from_secs(10);
const COMMITTED_DEADLINE: Duration = Duration::from_secs(10);
/// How often positions are committed with what finished above them.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

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
        let mut progress_tick = tokio::time::interval(PROGRESS_EVERY);
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
                _ = progress_tick.tick() => self.commit_progress(&mut pending),
                message = self.consumer.recv() => match message {
                    Ok(message) => {
                        // A rebalance inside `recv` may have revoked partitions.
                        self.forget_revoked(&mut pending);
                        let (partition, offset) = (message.partition(), message.offset());
                        if !pending.knows(partition) {
                            self.read_progress(&mut pending, partition);
                        }
                        pending.begin(partition, offset);
                        if pending.finished_earlier(partition, offset) {
                            crate::telemetry::finished_earlier();
                            self.complete(&mut pending, partition, offset);
                        } else {
                            self.enricher.enqueue(Job::new(message.detach()));
                        }
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
        if pending.complete(partition, offset).is_none() {
            return;
        }
        let Some(offsets) = self.positions(pending, [partition]) else {
            return;
        };
        let stored = self.consumer.store_offsets(&offsets);
        if let Err(error) = stored {
            // The partition moved to another instance; it replays from its
            // last commit, and the duplicates carry the same event_id.
            tracing::debug!(%error, partition, "offset not stored");
        }
    }

    /// The positions of `partitions`, with what finished above each.
    fn positions(
        &self,
        pending: &PendingEvents,
        partitions: impl IntoIterator<Item = i32>,
    ) -> Option<TopicPartitionList> {
        let mut offsets = TopicPartitionList::new();
        for partition in partitions {
            let Some(progress) = pending.progress(partition) else {
                continue;
            };
            let mut position = offsets.add_partition(&self.topic, partition);
            if position.set_offset(Offset::Offset(progress.next)).is_err() {
                return None;
            }
            position.set_metadata(&progress.metadata);
        }
        (offsets.count() > 0).then_some(offsets)
    }

    /// Commits the positions that changed since the last tick, what
    /// finished above them included, even where the offset stood still
    /// behind an event in flight (auto-commit sends only moved offsets).
    fn commit_progress(&self, pending: &mut PendingEvents) {
        let changed = pending.take_changed();
        let Some(offsets) = self.positions(pending, changed) else {
            return;
        };
        if let Err(error) = self.consumer.commit(&offsets, CommitMode::Async) {
            tracing::debug!(%error, "committing the positions failed; the next tick tries again");
        }
    }

    /// Reads what `partition`'s committed position says finished above it.
    /// Without it (the broker does not answer in time), the events after
    /// the committed offset are enriched again: duplicates, not losses.
    fn read_progress(&self, pending: &mut PendingEvents, partition: i32) {
        let mut asked = TopicPartitionList::new();
        asked.add_partition(&self.topic, partition);
        let committed = tokio::task::block_in_place(|| {
            self.consumer.committed_offsets(asked, COMMITTED_DEADLINE)
        });
        match committed {
            Ok(committed) => {
                for position in committed.elements() {
                    tracing::debug!(partition, offset = ?position.offset(), metadata = position.metadata(), "committed position read");
                    if let Offset::Offset(next) = position.offset() {
                        pending.resume(partition, next, position.metadata());
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, partition, "reading the committed position failed; events after its offset are enriched again")
            }
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
