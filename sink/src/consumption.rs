//! The consume → buffer → write → commit loop.
//!
//! Records are buffered per partition. A flush writes every file of every
//! buffered batch with create-only puts, and only then commits each partition's
//! offset past its batch, synchronously. A crash before the commit replays the
//! range; the replay produces the same object names, which already exist.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use std::sync::Arc;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, OwnedHeaders};
use rdkafka::producer::FutureProducer;
use rdkafka::{Message, Offset, TopicPartitionList};
use runtime::{produce_until_acked, with_headers, Outgoing, Readiness};
use schemas::{headers, EnrichedRecord};
use tokio_util::sync::CancellationToken;

use crate::batch::Batch;
use crate::config::Config;
use crate::encoding::encode;
use crate::lake::Lake;

#[derive(Debug, thiserror::Error)]
pub enum ConsumptionError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

pub struct Consumption {
    pub consumer: Arc<StreamConsumer>,
    pub producer: FutureProducer,
    pub lake: Lake,
    pub config: Config,
    pub readiness: Readiness,
}

const COMMIT_DEADLINE: Duration = Duration::from_secs(10);
const SHUTDOWN_FLUSH_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
enum FlushReason {
    Rows,
    Age,
    Shutdown,
}

impl FlushReason {
    fn as_str(self) -> &'static str {
        match self {
            FlushReason::Rows => "rows",
            FlushReason::Age => "age",
            FlushReason::Shutdown => "shutdown",
        }
    }
}

impl Consumption {
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumptionError> {
        self.consumer.subscribe(&[&self.config.enriched_topic])?;
        self.readiness.set("object_store", Ok(()));
        let mut batches: BTreeMap<i32, Batch> = BTreeMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    let oldest = batches.values().map(|b| b.opened_at).min();
                    if oldest.is_some_and(|t| t.elapsed() >= self.config.max_file_age) {
                        self.flush(&mut batches, FlushReason::Age, &shutdown).await?;
                    }
                }
                message = self.consumer.recv() => {
                    let message = match message {
                        Ok(m) => m,
                        Err(error) => {
                            tracing::warn!(%error, "consumer error");
                            continue;
                        }
                    };
                    let record = self.decode(&message, &shutdown).await;
                    let Some(record) = record else { break };
                    batches
                        .entry(message.partition())
                        .or_insert_with(|| Batch::new(message.partition(), message.offset()))
                        .push(message.offset(), record);
                    let rows: usize = batches.values().map(|b| b.records.len()).sum();
                    metrics::gauge!("sink_buffered_rows").set(rows as f64);
                    if rows >= self.config.max_file_rows {
                        self.flush(&mut batches, FlushReason::Rows, &shutdown).await?;
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
        self.flush(&mut batches, FlushReason::Shutdown, &deadline)
            .await
    }

    /// The enriched record in `message`; `Some(None)` when it was dead-lettered,
    /// `None` when shutdown interrupted the dead-lettering.
    async fn decode(
        &self,
        message: &BorrowedMessage<'_>,
        shutdown: &CancellationToken,
    ) -> Option<Option<EnrichedRecord>> {
        let payload = message.payload().unwrap_or_default();
        match serde_json::from_slice::<EnrichedRecord>(payload) {
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

    /// Writes every batch, then commits. Retries writes until they succeed; a
    /// cancelled `shutdown` abandons the flush without committing.
    async fn flush(
        &self,
        batches: &mut BTreeMap<i32, Batch>,
        reason: FlushReason,
        shutdown: &CancellationToken,
    ) -> Result<(), ConsumptionError> {
        if batches.is_empty() {
            return Ok(());
        }
        let mut commits = TopicPartitionList::new();
        for batch in batches.values() {
            if !self.write(batch, reason, shutdown).await {
                return Ok(());
            }
            commits.add_partition_offset(
                &self.config.enriched_topic,
                batch.partition,
                Offset::Offset(batch.last_offset + 1),
            )?;
        }
        batches.clear();
        // Commits are cumulative: if this one fails, the next one covers it; a
        // restart before that replays the range (at-least-once).
        if let Err(error) = runtime::commit(&self.consumer, Some(commits), COMMIT_DEADLINE).await {
            tracing::warn!(%error, "offset commit failed");
        }
        metrics::gauge!("sink_buffered_rows").set(0.0);
        Ok(())
    }

    async fn write(
        &self,
        batch: &Batch,
        reason: FlushReason,
        shutdown: &CancellationToken,
    ) -> bool {
        let topic = &self.config.enriched_topic;
        for plan in batch.files() {
            let name = batch.object_name(topic, &plan);
            let metadata = vec![
                ("mobaro_lake.topic".to_string(), topic.clone()),
                (
                    "mobaro_lake.partition".to_string(),
                    batch.partition.to_string(),
                ),
                (
                    "mobaro_lake.first_offset".to_string(),
                    batch.first_offset.to_string(),
                ),
                (
                    "mobaro_lake.last_offset".to_string(),
                    batch.last_offset.to_string(),
                ),
            ];
            let bytes = match encode(plan.table, &plan.records, self.config.compression, metadata) {
                Ok(bytes) => bytes,
                Err(error) => {
                    // Encoding is lenient by construction; failing here is a bug.
                    tracing::error!(%error, name, "encoding failed");
                    return false;
                }
            };
            let path = self.lake.path(&name);
            let size = bytes.len();
            let mut backoff = Duration::from_millis(500);
            loop {
                let started = Instant::now();
                match self.lake.create(&path, bytes.clone()).await {
                    Ok(created) => {
                        metrics::histogram!("sink_put_seconds")
                            .record(started.elapsed().as_secs_f64());
                        metrics::counter!("sink_files_total", "reason" => reason.as_str())
                            .increment(1);
                        metrics::counter!("sink_file_bytes_total").increment(size as u64);
                        metrics::counter!("sink_rows_total").increment(plan.records.len() as u64);
                        self.readiness.set("object_store", Ok(()));
                        tracing::info!(path = %path, rows = plan.records.len(), bytes = size, created, reason = reason.as_str(), "file written");
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, path = %path, retry_in = ?backoff, "write failed");
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
        true
    }
}
