//! The consume → buffer → write → commit loop.
//!
//! Records are buffered per partition as a contiguous offset range. A flush of
//! a partition's batch first records a flush intent for its range, then writes
//! every file of the batch with create-only puts, and only then commits the
//! partition's offset past the range, synchronously. A crash before the commit
//! replays the range: the intent makes the replayed batch end at the same
//! offset, so its files have the same names and already exist.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedMessage, OwnedHeaders};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use runtime::{produce_until_acked, with_headers, Outgoing, Readiness};
use schemas::{headers, EnrichedView};
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, EncodedFile};
use crate::config::Config;
use crate::encoding::EncodingError;
use crate::intents::Intents;
use crate::lake::Lake;
use crate::rotation::{FlushReason, Rotation};

#[derive(Debug, thiserror::Error)]
pub enum ConsumptionError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Encoding(#[from] EncodingError),
}

/// Notes the partitions a rebalance takes away, for the loop to drop their
/// unwritten batches: the new owner consumes them again from the last commit.
#[derive(Debug, Clone, Default)]
pub struct SinkContext {
    revoked: Arc<Mutex<Vec<i32>>>,
}

impl ClientContext for SinkContext {}

impl ConsumerContext for SinkContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
            revoked.extend(partitions.elements().iter().map(|e| e.partition()));
        }
    }
}

impl SinkContext {
    fn take_revoked(&self) -> Vec<i32> {
        std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

pub type SinkConsumer = StreamConsumer<SinkContext>;

pub struct Consumption {
    pub consumer: Arc<SinkConsumer>,
    pub producer: FutureProducer,
    pub lake: Lake,
    pub config: Config,
    pub readiness: Readiness,
}

const COMMIT_DEADLINE: Duration = Duration::from_secs(10);
const SHUTDOWN_FLUSH_DEADLINE: Duration = Duration::from_secs(30);

/// What the loop holds: unwritten batches and the announced ranges still to
/// replay, per partition.
#[derive(Default)]
struct Buffer {
    batches: BTreeMap<i32, Batch>,
    announced: BTreeMap<i32, VecDeque<(i64, i64)>>,
}

impl Buffer {
    fn buffered_bytes(&self) -> usize {
        self.batches.values().map(Batch::buffered_bytes).sum()
    }

    /// The batches that may end where the loop chooses (not replays).
    fn free(&self) -> impl Iterator<Item = &Batch> {
        self.batches.values().filter(|b| b.cut_at.is_none())
    }
}

/// Where a batch starting at `offset` must end so that its range matches the
/// announced ranges: at the end of the range holding `offset`, or just before
/// the next announced range. Ranges already passed are dropped.
fn cut_for(announced: &mut VecDeque<(i64, i64)>, offset: i64) -> Option<i64> {
    while announced.front().is_some_and(|(_, last)| *last < offset) {
        announced.pop_front();
    }
    let (first, last) = *announced.front()?;
    Some(if first <= offset { last } else { first - 1 })
}

impl Consumption {
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumptionError> {
        self.consumer.subscribe(&[&self.config.enriched_topic])?;
        self.readiness.set("object_store", Ok(()));
        let intents = Intents::new(self.lake.clone(), &self.config.enriched_topic);
        let mut buffer = Buffer::default();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let rotation = Rotation {
            max_rows: self.config.max_file_rows,
            max_bytes: self.config.max_file_bytes,
            max_age: self.config.max_file_age,
            memory_budget: self.config.memory_budget,
        };
        loop {
            self.drop_revoked(&mut buffer);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    let due: Vec<(i32, FlushReason)> = buffer
                        .free()
                        .filter_map(|b| Some((b.partition, rotation.due(b.most_rows(), b.most_encoded_bytes(), b.opened_at.elapsed())?)))
                        .collect();
                    for (partition, reason) in due {
                        self.flush(&mut buffer, &intents, partition, reason, &shutdown).await?;
                    }
                    // Once a second: summing the buffers per message is not free.
                    metrics::gauge!("sink_buffered_bytes").set(buffer.buffered_bytes() as f64);
                }
                message = self.consumer.recv() => {
                    let message = match message {
                        Ok(m) => m,
                        Err(error) => {
                            tracing::warn!(%error, "consumer error");
                            continue;
                        }
                    };
                    // A rebalance inside `recv` may have revoked partitions, and
                    // handed one back from its last commit, before this message.
                    self.drop_revoked(&mut buffer);
                    let (partition, offset) = (message.partition(), message.offset());
                    metrics::counter!("sink_messages_total").increment(1);
                    if buffer.batches.get(&partition).is_some_and(|b| offset <= b.last_offset) {
                        // Consumption rewound (a seek or a missed rebalance): the
                        // buffered range will be delivered again.
                        tracing::info!(partition, offset, "partition rewound; its unwritten batch is dropped");
                        buffer.batches.remove(&partition);
                        buffer.announced.remove(&partition);
                    }
                    let Some(record) = self.decode(&message, &shutdown).await else { break };
                    if !buffer.batches.contains_key(&partition) {
                        let mut batch = Batch::new(partition, offset, self.config.compression, rotation.chunk_bytes());
                        batch.cut_at = self.replay_cut(&mut buffer, &intents, partition, offset, &shutdown).await;
                        buffer.batches.insert(partition, batch);
                    }
                    let batch = buffer.batches.get_mut(&partition).expect("inserted above");
                    let size = message.payload_len();
                    batch.push(offset, record.as_ref(), size)?;
                    let reason = match batch.cut_at {
                        Some(cut) if cut == offset => Some(FlushReason::Replay),
                        Some(_) => None,
                        None => rotation.due(batch.most_rows(), batch.most_encoded_bytes(), batch.opened_at.elapsed()),
                    };
                    drop(record);
                    drop(message);
                    if let Some(reason) = reason {
                        self.flush(&mut buffer, &intents, partition, reason, &shutdown).await?;
                    }
                    if buffer.buffered_bytes() >= rotation.buffer_limit() {
                        let largest = buffer.free().max_by_key(|b| b.buffered_bytes()).map(|b| b.partition);
                        if let Some(largest) = largest {
                            self.flush(&mut buffer, &intents, largest, FlushReason::Memory, &shutdown).await?;
                        }
                    }
                }
            }
        }
        // Give the last flush a bounded time: with the store down it would
        // otherwise retry forever. What it cannot write stays uncommitted.
        let deadline = CancellationToken::new();
        let expire = deadline.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SHUTDOWN_FLUSH_DEADLINE).await;
            expire.cancel();
        });
        self.flush_all(&mut buffer, &intents, FlushReason::Shutdown, &deadline)
            .await
    }

    /// Drops the unwritten batches of revoked partitions: their offsets were
    /// not committed, so the next owner consumes them again.
    fn drop_revoked(&self, buffer: &mut Buffer) {
        for partition in self.consumer.context().take_revoked() {
            if let Some(batch) = buffer.batches.remove(&partition) {
                tracing::info!(
                    partition,
                    first_offset = batch.first_offset,
                    last_offset = batch.last_offset,
                    "partition revoked; its unwritten batch is left to the next owner"
                );
            }
            buffer.announced.remove(&partition);
        }
    }

    /// Where a batch starting at `offset` must end to repeat an announced
    /// range, loading the partition's intents on its first batch.
    async fn replay_cut(
        &self,
        buffer: &mut Buffer,
        intents: &Intents,
        partition: i32,
        offset: i64,
        shutdown: &CancellationToken,
    ) -> Option<i64> {
        if let Entry::Vacant(vacant) = buffer.announced.entry(partition) {
            let mut backoff = Duration::from_millis(500);
            let ranges = loop {
                match intents.from(partition, offset).await {
                    Ok(ranges) => break ranges,
                    Err(error) => {
                        tracing::warn!(%error, partition, retry_in = ?backoff, "reading flush intents failed");
                        tokio::select! {
                            _ = shutdown.cancelled() => break vec![],
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            };
            if !ranges.is_empty() {
                tracing::info!(
                    partition,
                    ?ranges,
                    "replaying announced ranges with their original boundaries"
                );
            }
            vacant.insert(ranges.into());
        }
        cut_for(buffer.announced.get_mut(&partition)?, offset)
    }

    /// The enriched record in `message`; `Some(None)` when it was dead-lettered,
    /// `None` when shutdown interrupted the dead-lettering.
    async fn decode<'m>(
        &self,
        message: &'m BorrowedMessage<'_>,
        shutdown: &CancellationToken,
    ) -> Option<Option<EnrichedView<'m>>> {
        let payload = message.payload().unwrap_or_default();
        match EnrichedView::from_json(payload) {
            Ok(record) => Some(Some(record)),
            Err(error) => {
                tracing::warn!(%error, partition = message.partition(), offset = message.offset(), "undecodable record dead-lettered");
                metrics::counter!("sink_dead_letters_total").increment(1);
                self.dead_letter(message, &error.to_string(), shutdown)
                    .await
                    .then_some(None)
            }
        }
    }

    async fn dead_letter(
        &self,
        message: &BorrowedMessage<'_>,
        error: &str,
        shutdown: &CancellationToken,
    ) -> bool {
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let headers = with_headers(
            OwnedHeaders::new(),
            &[
                (headers::DLQ_STAGE, "sink"),
                (headers::DLQ_ERROR_CLASS, "undecodable"),
                (headers::DLQ_ERROR, error),
                (headers::DLQ_ORIGINAL_TOPIC, message.topic()),
                (headers::DLQ_ORIGINAL_PARTITION, partition.as_str()),
                (headers::DLQ_ORIGINAL_OFFSET, offset.as_str()),
            ],
        );
        let outgoing = Outgoing {
            topic: &self.config.dead_letter_topic,
            key: message.key(),
            payload: message.payload().unwrap_or_default(),
            headers,
        };
        produce_until_acked(&self.producer, outgoing, shutdown).await
    }

    /// Flushes every batch that is not bound to an announced range.
    async fn flush_all(
        &self,
        buffer: &mut Buffer,
        intents: &Intents,
        reason: FlushReason,
        shutdown: &CancellationToken,
    ) -> Result<(), ConsumptionError> {
        let partitions: Vec<i32> = buffer.free().map(|b| b.partition).collect();
        for partition in partitions {
            if !self
                .flush(buffer, intents, partition, reason, shutdown)
                .await?
            {
                break;
            }
        }
        Ok(())
    }

    /// Announces, writes and commits one partition's batch. Retries writes
    /// until they succeed; a cancelled `shutdown` abandons the flush without
    /// committing (false), leaving the range to be consumed again.
    async fn flush(
        &self,
        buffer: &mut Buffer,
        intents: &Intents,
        partition: i32,
        reason: FlushReason,
        shutdown: &CancellationToken,
    ) -> Result<bool, ConsumptionError> {
        let Some(batch) = buffer.batches.remove(&partition) else {
            return Ok(true);
        };
        let (first, last) = (batch.first_offset, batch.last_offset);
        let files = batch.finish(&self.config.enriched_topic)?;
        if !self
            .retry("recording flush intent", shutdown, || {
                intents.record(partition, first, last)
            })
            .await
        {
            return Ok(false);
        }
        if !self.write(files, reason, shutdown).await {
            return Ok(false);
        }
        if let Some(announced) = buffer.announced.get_mut(&partition) {
            announced.retain(|(_, end)| *end > last);
        }
        let mut commit = TopicPartitionList::new();
        commit.add_partition_offset(
            &self.config.enriched_topic,
            partition,
            Offset::Offset(last + 1),
        )?;
        // Commits are cumulative: if this one fails, the next one covers it; a
        // restart before that replays the range into the same file names.
        match runtime::commit(&self.consumer, Some(commit), COMMIT_DEADLINE).await {
            Ok(()) => {
                let intents = intents.clone();
                tokio::spawn(async move { intents.forget_below(partition, last + 1).await });
            }
            Err(error) => tracing::warn!(%error, partition, "offset commit failed"),
        }
        Ok(true)
    }

    /// Runs `attempt` until it succeeds (false if `shutdown` came first).
    async fn retry<F, Fut>(&self, what: &str, shutdown: &CancellationToken, attempt: F) -> bool
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), crate::lake::LakeError>>,
    {
        let mut backoff = Duration::from_millis(500);
        loop {
            match attempt().await {
                Ok(()) => {
                    self.readiness.set("object_store", Ok(()));
                    return true;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "{what} failed");
                    self.readiness.set("object_store", Err(error.to_string()));
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    async fn write(
        &self,
        files: Vec<EncodedFile>,
        reason: FlushReason,
        shutdown: &CancellationToken,
    ) -> bool {
        for file in files {
            let path = self.lake.path(&file.name);
            let (size, rows) = (file.bytes.len(), file.rows);
            let multipart = size >= self.config.multipart_threshold;
            let put = || async {
                let started = Instant::now();
                let created = if multipart {
                    self.lake
                        .create_multipart(
                            &path,
                            file.bytes.clone(),
                            self.config.multipart_part_size,
                        )
                        .await?
                } else {
                    self.lake.create(&path, file.bytes.clone()).await?
                };
                metrics::histogram!("sink_put_seconds").record(started.elapsed().as_secs_f64());
                metrics::counter!("sink_files_total", "reason" => reason.as_str()).increment(1);
                metrics::counter!("sink_file_bytes_total").increment(size as u64);
                metrics::counter!("sink_rows_total").increment(rows as u64);
                metrics::histogram!("sink_file_bytes").record(size as f64);
                metrics::histogram!("sink_file_rows").record(rows as f64);
                tracing::info!(path = %path, rows, bytes = size, created, multipart, reason = reason.as_str(), "file written");
                Ok(())
            };
            if !self.retry("writing a file", shutdown, put).await {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replayed_batches_end_where_the_announced_ranges_end() {
        let mut announced = VecDeque::from([(10, 19), (20, 34)]);
        assert_eq!(cut_for(&mut announced, 10), Some(19));
        assert_eq!(cut_for(&mut announced, 20), Some(34));
        assert_eq!(cut_for(&mut announced, 35), None);
        assert!(announced.is_empty());
        // A batch starting before an announced range stops just short of it.
        let mut announced = VecDeque::from([(50, 60)]);
        assert_eq!(cut_for(&mut announced, 40), Some(49));
    }
}
