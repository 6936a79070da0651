//! The consumer loop: takes raw events from Kafka, hands them to the
//! [`Enricher`], and stores each partition's offset once every event below it
//! is durable in the enriched or dead-letter topic.
//!
//! Stored offsets are committed by librdkafka's auto-commit and, at shutdown,
//! synchronously with a deadline. While too many events are in flight, the loop
//! stops taking messages until half of them finished. While the API refuses the
//! key, the partitions are paused (not the poll loop, which could stall longer
//! than `max.poll.interval.ms` and lose the group membership).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::enrichment::{Enricher, Job};
use crate::offsets::OffsetTracker;

const COMMIT_DEADLINE: Duration = Duration::from_secs(10);
const RECHECK: Duration = Duration::from_millis(500);

pub struct Consumption {
    pub consumer: Arc<StreamConsumer>,
    pub enricher: Arc<Enricher>,
    pub done: mpsc::UnboundedReceiver<(i32, i64)>,
    pub stop: CancellationToken,
    pub topic: String,
    pub max_in_flight: usize,
    pub drain_timeout: Duration,
}

impl Consumption {
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), KafkaError> {
        self.consumer.subscribe(&[&self.topic])?;
        let mut tracker = OffsetTracker::default();
        let mut paused = false;
        let mut full = false;
        loop {
            if self.enricher.is_paused() != paused {
                paused = !paused;
                self.set_paused(paused);
            }
            let in_flight = tracker.in_flight();
            full = if full {
                in_flight > self.max_in_flight / 2
            } else {
                in_flight >= self.max_in_flight
            };
            metrics::gauge!("enricher_events_in_flight").set(tracker.in_flight() as f64);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some((partition, offset)) = self.done.recv() => self.complete(&mut tracker, partition, offset),
                message = self.consumer.recv(), if !full => match message {
                    Ok(message) => {
                        tracker.begin(message.partition(), message.offset());
                        self.enricher.enqueue(Job::new(message.detach()));
                    }
                    Err(error) => tracing::warn!(%error, "consumer error"),
                },
                _ = tokio::time::sleep(RECHECK) => {}
            }
        }
        self.drain(&mut tracker).await;
        if let Err(error) = runtime::commit(&self.consumer, None, COMMIT_DEADLINE).await {
            tracing::warn!(%error, "final offset commit failed; the uncommitted events will be enriched again");
        }
        Ok(())
    }

    /// Lets events in flight finish, up to the drain deadline; what is left
    /// stays uncommitted.
    async fn drain(&mut self, tracker: &mut OffsetTracker) {
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        while tracker.in_flight() > 0 {
            tokio::select! {
                Some((partition, offset)) = self.done.recv() => self.complete(tracker, partition, offset),
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(left = tracker.in_flight(), "drain deadline passed; unfinished events stay uncommitted");
                    break;
                }
            }
        }
        self.stop.cancel();
    }

    fn complete(&self, tracker: &mut OffsetTracker, partition: i32, offset: i64) {
        let Some(next) = tracker.complete(partition, offset) else {
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
        match result {
            Ok(()) => tracing::info!(
                paused = pause,
                "consumption {}",
                if pause { "paused" } else { "resumed" }
            ),
            Err(error) => tracing::warn!(%error, "pausing or resuming consumption failed"),
        }
    }
}
