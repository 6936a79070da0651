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
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, OwnedHeaders};
use rdkafka::producer::FutureProducer;
use rdkafka::{Message, Offset, TopicPartitionList};
use runtime::checks;
use runtime::{
    produce, with_headers, Failure, Outgoing, Readiness, RebalanceContext, Retry, Revoked, Verdict,
};
use schemas::{DeadLetter, DeadLetterClass, EnrichedView, Position, Stage, Table};
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, EncodedFile, Naming};
use crate::config::Config;
use crate::rotation::{FlushReason, Rotation};
use lake::{
    app_id, Appended, DataFile, DeltaError, DeltaTables, EncodingError, Intents, Lake, LakeError,
    Put, CONTENT_DIGEST_KEY,
};

#[derive(Debug, thiserror::Error)]
pub enum ConsumptionError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Encoding(#[from] EncodingError),
    #[error("the object store refused {what} for good: {source}; nothing past it was committed")]
    Store { what: String, source: LakeError },
    #[error("{path} exists but holds other rows than the batch named after it (found {found:?}, expected {expected:?}): was the topic deleted and recreated, or does another deployment write a topic of the same name into this prefix? Nothing past it was committed; give this deployment its own LAKE_URL prefix or topic name")]
    ForeignFile {
        path: String,
        found: BTreeMap<String, String>,
        expected: BTreeMap<String, String>,
    },
    #[error("the dead-letter topic refused the record at partition {partition} offset {offset}: {error}")]
    DeadLetter {
        partition: i32,
        offset: i64,
        error: rdkafka::error::KafkaError,
    },
    #[error("{0}; nothing past it was committed")]
    Delta(#[from] DeltaError),
    #[error(transparent)]
    Fatal(#[from] runtime::ConsumerFailed),
}

pub(crate) type SinkConsumer = StreamConsumer<RebalanceContext>;

pub(crate) struct Consumption {
    pub consumer: Arc<SinkConsumer>,
    pub producer: FutureProducer,
    pub lake: Lake,
    /// The Delta tables, unless the lake is plain Parquet.
    pub tables: Option<Arc<DeltaTables>>,
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
    /// Per partition, the last offset each Delta table holds.
    held: BTreeMap<i32, BTreeMap<Table, i64>>,
}

impl Buffer {
    /// Drops a partition's unwritten batch when consumption rewound before
    /// its end (a seek or a missed rebalance): the range comes again.
    fn forget_if_rewound(&mut self, partition: i32, offset: i64) {
        if self
            .batches
            .get(&partition)
            .is_some_and(|b| offset <= b.last_offset)
        {
            tracing::info!(
                partition,
                offset,
                "partition rewound; its unwritten batch is dropped"
            );
            self.batches.remove(&partition);
            self.announced.remove(&partition);
            self.held.remove(&partition);
        }
    }

    fn buffered_bytes(&self) -> usize {
        self.batches.values().map(Batch::buffered_bytes).sum()
    }

    /// The batches that may end where the loop chooses (not replays).
    fn free(&self) -> impl Iterator<Item = &Batch> {
        self.batches.values().filter(|b| b.cut_at.is_none())
    }
}

/// Where a batch starting at `offset` must end so that its range matches the
/// announced ranges, and the announced range it replays, if any: a batch
/// starting inside a range replays it (and ends at its end); one starting
/// before a range ends just before it. Ranges already passed are dropped.
fn cut_for(announced: &mut VecDeque<(i64, i64)>, offset: i64) -> Option<Cut> {
    while announced.front().is_some_and(|(_, last)| *last < offset) {
        announced.pop_front();
    }
    let (first, last) = *announced.front()?;
    Some(if first <= offset {
        Cut {
            at: last,
            replays: Some((first, last)),
        }
    } else {
        Cut {
            at: first - 1,
            replays: None,
        }
    })
}

/// Where a batch must end, and the announced range whose name it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    at: i64,
    replays: Option<(i64, i64)>,
}

/// Why taking messages cannot go on.
#[derive(Debug)]
enum Halt {
    /// Shutdown cut the work short; nothing more is written or committed.
    Stopped,
    /// A failure that stops the sink.
    Failed(ConsumptionError),
}

impl<E: Into<ConsumptionError>> From<E> for Halt {
    fn from(error: E) -> Self {
        Halt::Failed(error.into())
    }
}

/// Goes on after a flush unless shutdown stopped it.
fn unless_stopped(flushed: Flushed) -> Result<(), Halt> {
    match flushed {
        Flushed::Stopped => Err(Halt::Stopped),
        Flushed::Done | Flushed::Abandoned => Ok(()),
    }
}

/// How a flush ended.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
enum Flushed {
    /// Files written and the offset committed (or the commit left to the
    /// next one).
    Done,
    /// The partition belongs to another member now: the batch was dropped
    /// unwritten and the partition rewound to its first offset.
    Abandoned,
    Stopped,
}

/// What a message holds.
#[must_use]
enum Decoded<'m> {
    Record(EnrichedView<'m>),
    /// Undecodable; now in the dead-letter topic.
    DeadLettered,
    Stopped,
}

/// How writing a batch's files ended.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
enum Written {
    All,
    /// The partition was lost to another member: nothing more was written.
    Lost,
    Stopped,
}

/// Why writing a file did not succeed.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("the partition was lost to another member")]
    Lost,
}

const STORE_RETRY: Retry = Retry::forever(Duration::from_millis(500), Duration::from_secs(30));
const OWNERSHIP_RETRY: Retry = Retry::forever(Duration::from_millis(500), Duration::from_secs(10));

impl Consumption {
    pub(crate) async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumptionError> {
        self.consumer.subscribe(&[&self.config.enriched_topic])?;
        self.readiness.set(checks::OBJECT_STORE, Ok(()));
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
                        if self.flush(&mut buffer, &intents, partition, reason, &shutdown).await? == Flushed::Stopped {
                            break;
                        }
                    }
                    // Once a second: summing the buffers per message is not free.
                    metrics::gauge!("sink_buffered_bytes").set(buffer.buffered_bytes() as f64);
                }
                message = self.consumer.recv() => {
                    let message = match message {
                        Ok(m) => m,
                        Err(error) => {
                            if let Some(fatal) = runtime::fatal_error(&self.consumer) {
                                return Err(fatal.into());
                            }
                            tracing::warn!(%error, "consumer error");
                            continue;
                        }
                    };
                    match self.take(&mut buffer, &intents, &rotation, &message, &shutdown).await {
                        Ok(()) => {}
                        Err(Halt::Stopped) => break,
                        Err(Halt::Failed(error)) => return Err(error),
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

    /// Adds one message to its partition's batch, flushing what is due.
    async fn take(
        &self,
        buffer: &mut Buffer,
        intents: &Intents,
        rotation: &Rotation,
        message: &BorrowedMessage<'_>,
        shutdown: &CancellationToken,
    ) -> Result<(), Halt> {
        // A rebalance inside `recv` may have revoked partitions, and handed
        // one back from its last commit, before this message.
        self.drop_revoked(buffer);
        let (partition, offset) = (message.partition(), message.offset());
        metrics::counter!("sink_messages_total").increment(1);
        buffer.forget_if_rewound(partition, offset);
        // A replay batch ends as soon as an offset past its announced end
        // shows up, whether or not the offsets before it all existed.
        let past_cut = buffer
            .batches
            .get(&partition)
            .and_then(|b| b.cut_at)
            .is_some_and(|cut| offset > cut);
        if past_cut {
            match self
                .flush(buffer, intents, partition, FlushReason::Replay, shutdown)
                .await?
            {
                Flushed::Done => {}
                // Rewound to the batch's start: this message comes again.
                Flushed::Abandoned => return Ok(()),
                Flushed::Stopped => return Err(Halt::Stopped),
            }
        }
        let record = match self.decode(message, shutdown).await? {
            Decoded::Record(record) => Some(record),
            Decoded::DeadLettered => None,
            Decoded::Stopped => return Err(Halt::Stopped),
        };
        if !buffer.batches.contains_key(&partition) {
            self.open_batch(buffer, intents, rotation, partition, offset, shutdown)
                .await?;
        }
        let batch = buffer.batches.get_mut(&partition).expect("inserted above");
        batch.push(offset, record.as_ref(), message.payload_len())?;
        let reason = match batch.cut_at {
            Some(cut) if cut == offset => Some(FlushReason::Replay),
            Some(_) => None,
            None => rotation.due(
                batch.most_rows(),
                batch.most_encoded_bytes(),
                batch.opened_at.elapsed(),
            ),
        };
        drop(record);
        if let Some(reason) = reason {
            unless_stopped(
                self.flush(buffer, intents, partition, reason, shutdown)
                    .await?,
            )?;
        }
        if buffer.buffered_bytes() < rotation.buffer_limit() {
            return Ok(());
        }
        let largest = buffer
            .free()
            .max_by_key(|b| b.buffered_bytes())
            .map(|b| b.partition);
        match largest {
            Some(largest) => unless_stopped(
                self.flush(buffer, intents, largest, FlushReason::Memory, shutdown)
                    .await?,
            ),
            None => Ok(()),
        }
    }

    /// Opens a partition's batch at `offset`, cut where an announced range
    /// says it must end.
    async fn open_batch(
        &self,
        buffer: &mut Buffer,
        intents: &Intents,
        rotation: &Rotation,
        partition: i32,
        offset: i64,
        shutdown: &CancellationToken,
    ) -> Result<(), Halt> {
        // Without the intents (or the tables' versions) the batch could be
        // cut anywhere (or take records a table holds): a stop while reading
        // them leaves it unwritten.
        let (cut, held) = match &self.tables {
            Some(tables) => (None, self.held(buffer, tables, partition, shutdown).await?),
            None => (
                self.replay_cut(buffer, intents, partition, offset, shutdown)
                    .await?,
                BTreeMap::new(),
            ),
        };
        let mut batch = Batch::new(
            partition,
            offset,
            self.config.compression,
            rotation.chunk_bytes(),
        );
        batch.cut_at = cut.map(|c| c.at);
        batch.announced = cut.and_then(|c| c.replays);
        batch.held = held;
        buffer.batches.insert(partition, batch);
        Ok(())
    }

    /// The last offset of `partition` each Delta table holds, read from the
    /// tables' transactions on the partition's first batch.
    async fn held(
        &self,
        buffer: &mut Buffer,
        tables: &DeltaTables,
        partition: i32,
        shutdown: &CancellationToken,
    ) -> Result<BTreeMap<Table, i64>, Halt> {
        if let Some(held) = buffer.held.get(&partition) {
            return Ok(held.clone());
        }
        let id = app_id(&self.config.enriched_topic, partition);
        let mut held = BTreeMap::new();
        for table in Table::all() {
            let version = STORE_RETRY
                .run(
                    shutdown,
                    |_| tables.version_of(table, &id),
                    |error, attempt| self.judge_store(error, attempt, "reading a table's version"),
                )
                .await;
            match version {
                Ok(Some(version)) => {
                    held.insert(table, version);
                }
                Ok(None) => {}
                Err(Failure::Stopped) => return Err(Halt::Stopped),
                Err(Failure::Permanent(error) | Failure::Exhausted { error, .. }) => {
                    return Err(Halt::Failed(error.into()))
                }
            }
        }
        if !held.is_empty() {
            tracing::info!(
                partition,
                ?held,
                "records up to these offsets are in the tables already"
            );
        }
        buffer.held.insert(partition, held.clone());
        Ok(held)
    }

    /// Drops the unwritten batches of revoked partitions: their offsets were
    /// not committed, so the next owner consumes them again.
    fn drop_revoked(&self, buffer: &mut Buffer) {
        let revoked = match self.consumer.context().take_revoked() {
            Revoked::Nothing => return,
            Revoked::Some(partitions) => partitions,
            Revoked::All => {
                buffer.announced.clear();
                buffer.held.clear();
                buffer.batches.keys().copied().collect()
            }
        };
        for partition in revoked {
            if let Some(batch) = buffer.batches.remove(&partition) {
                tracing::info!(
                    partition,
                    first_offset = batch.first_offset,
                    last_offset = batch.last_offset,
                    "partition revoked; its unwritten batch is left to the next owner"
                );
            }
            buffer.announced.remove(&partition);
            buffer.held.remove(&partition);
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
    ) -> Result<Option<Cut>, Halt> {
        if let Entry::Vacant(vacant) = buffer.announced.entry(partition) {
            let listed = STORE_RETRY
                .run(
                    shutdown,
                    |_| intents.from(partition, offset),
                    |error, attempt| self.judge_store(error, attempt, "reading flush intents"),
                )
                .await;
            let ranges = match listed {
                Ok(ranges) => ranges,
                Err(Failure::Stopped) => return Err(Halt::Stopped),
                Err(Failure::Permanent(source) | Failure::Exhausted { error: source, .. }) => {
                    return Err(Halt::Failed(ConsumptionError::Store {
                        what: "listing flush intents".into(),
                        source,
                    }))
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
        Ok(buffer
            .announced
            .get_mut(&partition)
            .and_then(|announced| cut_for(announced, offset)))
    }

    /// Logs a failed store request (a file, or a table's log) and says
    /// whether to retry it.
    fn judge_store(&self, error: &impl Permanence, attempt: u32, what: &str) -> Verdict {
        self.readiness
            .set(checks::OBJECT_STORE, Err(error.to_string()));
        if error.is_permanent() {
            tracing::error!(%error, "{what} failed for good");
            Verdict::GiveUp
        } else {
            tracing::warn!(%error, attempt, "{what} failed; retrying");
            Verdict::Retry
        }
    }

    /// The enriched record in `message`, or the record dead-lettered when it
    /// cannot be decoded.
    async fn decode<'m>(
        &self,
        message: &'m BorrowedMessage<'_>,
        shutdown: &CancellationToken,
    ) -> Result<Decoded<'m>, ConsumptionError> {
        let payload = message.payload().unwrap_or_default();
        let error = match EnrichedView::from_json(payload) {
            Ok(record) => return Ok(Decoded::Record(record)),
            Err(error) => error,
        };
        tracing::warn!(%error, partition = message.partition(), offset = message.offset(), "undecodable record dead-lettered");
        metrics::counter!("sink_dead_letters_total").increment(1);
        let letter = DeadLetter {
            stage: Stage::Sink,
            class: DeadLetterClass::Undecodable,
            error: error.to_string(),
            http_status: None,
            attempts: 1,
            original: Position {
                topic: message.topic().to_string(),
                partition: message.partition(),
                offset: message.offset(),
            },
        };
        let headers = with_headers(OwnedHeaders::new(), &letter.headers());
        let outgoing = Outgoing {
            topic: &self.config.dead_letter_topic,
            key: message.key(),
            payload,
            headers,
        };
        match produce(&self.producer, &outgoing, shutdown).await {
            Ok(()) => Ok(Decoded::DeadLettered),
            Err(Failure::Stopped) => Ok(Decoded::Stopped),
            Err(Failure::Permanent(error) | Failure::Exhausted { error, .. }) => {
                Err(ConsumptionError::DeadLetter {
                    partition: message.partition(),
                    offset: message.offset(),
                    error,
                })
            }
        }
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
            if self
                .flush(buffer, intents, partition, reason, shutdown)
                .await?
                == Flushed::Stopped
            {
                break;
            }
        }
        Ok(())
    }

    /// Announces, writes and commits one partition's batch: records the
    /// flush intent, proves the partition is still this member's, writes
    /// the files, commits. Store errors are retried until they stop, unless
    /// permanent.
    async fn flush(
        &self,
        buffer: &mut Buffer,
        intents: &Intents,
        partition: i32,
        reason: FlushReason,
        shutdown: &CancellationToken,
    ) -> Result<Flushed, ConsumptionError> {
        let Some(mut batch) = buffer.batches.remove(&partition) else {
            return Ok(Flushed::Done);
        };
        let (first, last) = batch.range();
        let first_offset = batch.first_offset;
        let replays = batch.announced.is_some();
        let held = std::mem::take(&mut batch.held);
        let naming = match self.tables {
            Some(_) => Naming::Unique,
            None => Naming::Range,
        };
        let files = batch.finish(&self.config.enriched_topic, naming)?;
        let recorded = if self.tables.is_some() {
            // The tables' transactions stand in for the intents.
            Ok(())
        } else {
            STORE_RETRY
                .run(
                    shutdown,
                    |_| intents.record(partition, first, last),
                    |error, attempt| self.judge_store(error, attempt, "recording a flush intent"),
                )
                .await
        };
        match recorded {
            Ok(()) => self.readiness.set(checks::OBJECT_STORE, Ok(())),
            Err(Failure::Stopped) => return Ok(Flushed::Stopped),
            Err(Failure::Permanent(source) | Failure::Exhausted { error: source, .. }) => {
                return Err(ConsumptionError::Store {
                    what: format!(
                        "the flush intent of partition {partition} offsets {first}..={last}"
                    ),
                    source,
                })
            }
        }
        let written = match self
            .prove_ownership(partition, first_offset, shutdown)
            .await
        {
            Ownership::Held => {
                let target = Target {
                    partition,
                    first_offset,
                    reason,
                };
                let added = files_by_table(&files);
                match self.write(files, &target, shutdown).await? {
                    Written::All => match &self.tables {
                        Some(tables) => {
                            self.commit_tables(
                                buffer,
                                tables,
                                added,
                                &held,
                                (partition, last),
                                shutdown,
                            )
                            .await?
                        }
                        None => Written::All,
                    },
                    other => other,
                }
            }
            Ownership::Lost => Written::Lost,
            Ownership::Stopped => Written::Stopped,
        };
        match written {
            Written::All => {}
            Written::Stopped => return Ok(Flushed::Stopped),
            Written::Lost => {
                self.abandon(
                    buffer,
                    intents,
                    partition,
                    first_offset,
                    (first, last),
                    replays,
                )
                .await;
                buffer.held.remove(&partition);
                return Ok(Flushed::Abandoned);
            }
        }
        if let Some(announced) = buffer.announced.get_mut(&partition) {
            announced.retain(|(_, end)| *end > last);
        }
        // A replay batch never passes its announced end, so `last` covers
        // every offset consumed.
        let next = last + 1;
        // Commits are cumulative: if this one fails, the next one covers it; a
        // restart before that replays the range into the same file names.
        match runtime::commit(
            &self.consumer,
            Some(self.offsets(partition, next)?),
            COMMIT_DEADLINE,
        )
        .await
        {
            Ok(()) if self.tables.is_none() => {
                let intents = intents.clone();
                tokio::spawn(async move { intents.forget_below(partition, next).await });
            }
            Ok(()) => {}
            Err(error) => tracing::warn!(%error, partition, "offset commit failed"),
        }
        Ok(Flushed::Done)
    }

    /// Adds the written files to their Delta tables, one commit per table,
    /// each with the partition's transaction at the batch's last offset.
    /// A table whose transaction moved past what the batch was filtered
    /// against belongs to another member's work: the batch is lost.
    async fn commit_tables(
        &self,
        buffer: &mut Buffer,
        tables: &DeltaTables,
        added: BTreeMap<Table, Vec<DataFile>>,
        held: &BTreeMap<Table, i64>,
        (partition, last): (i32, i64),
        shutdown: &CancellationToken,
    ) -> Result<Written, ConsumptionError> {
        let id = app_id(&self.config.enriched_topic, partition);
        for (table, files) in added {
            let expected = held.get(&table).copied();
            let started = Instant::now();
            let appended = STORE_RETRY
                .run(
                    shutdown,
                    |_| tables.append(table, &files, &id, expected, last),
                    |error, attempt| self.judge_store(error, attempt, "committing to a table"),
                )
                .await;
            metrics::histogram!("sink_delta_commit_seconds")
                .record(started.elapsed().as_secs_f64());
            match appended {
                Ok(Appended::Committed(version)) => {
                    tracing::info!(
                        table = table.name(),
                        version,
                        partition,
                        last_offset = last,
                        files = files.len(),
                        "committed"
                    );
                }
                Ok(Appended::AlreadyThere) => {
                    tracing::info!(
                        table = table.name(),
                        partition,
                        last_offset = last,
                        "the table holds these records already"
                    );
                }
                Ok(Appended::Superseded(found)) => {
                    tracing::warn!(
                        table = table.name(),
                        partition,
                        ?expected,
                        ?found,
                        "another member committed this partition"
                    );
                    return Ok(Written::Lost);
                }
                Err(Failure::Stopped) => return Ok(Written::Stopped),
                Err(Failure::Permanent(error) | Failure::Exhausted { error, .. }) => {
                    return Err(error.into())
                }
            }
            buffer
                .held
                .entry(partition)
                .or_default()
                .insert(table, last);
        }
        self.readiness.set(checks::OBJECT_STORE, Ok(()));
        Ok(Written::All)
    }

    fn offsets(&self, partition: i32, offset: i64) -> Result<TopicPartitionList, ConsumptionError> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(
            &self.config.enriched_topic,
            partition,
            Offset::Offset(offset),
        )?;
        Ok(list)
    }

    /// Whether this member still owns `partition`: librdkafka has not lost
    /// the assignment (a missed `max.poll.interval.ms` or session), the
    /// partition is assigned, and the group coordinator accepts a commit of
    /// the batch's first offset under the member's current generation (where
    /// the broker checks generations, as Kafka does). The commit does not
    /// move the offset: the batch starts at the committed offset.
    async fn prove_ownership(
        &self,
        partition: i32,
        first_offset: i64,
        shutdown: &CancellationToken,
    ) -> Ownership {
        let assigned = !self.consumer.assignment_lost()
            && self.consumer.assignment().is_ok_and(|assignment| {
                assignment
                    .find_partition(&self.config.enriched_topic, partition)
                    .is_some()
            });
        if !assigned {
            tracing::warn!(
                partition,
                "the partition is no longer assigned to this member"
            );
            return Ownership::Lost;
        }
        let Ok(offsets) = self.offsets(partition, first_offset) else {
            return Ownership::Lost;
        };
        let proof = OWNERSHIP_RETRY
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
            .await;
        match proof {
            Ok(()) => Ownership::Held,
            Err(Failure::Stopped) => Ownership::Stopped,
            Err(_) => Ownership::Lost,
        }
    }

    /// Drops a batch whose partition was lost: rewinds the partition to its
    /// first offset (in case it is still assigned after all), and removes the
    /// intent of a range this member cut itself, which no file was written
    /// for.
    async fn abandon(
        &self,
        buffer: &mut Buffer,
        intents: &Intents,
        partition: i32,
        first_offset: i64,
        (first, last): (i64, i64),
        replays: bool,
    ) {
        tracing::warn!(
            partition,
            first,
            last,
            "batch abandoned unwritten: the partition belongs to another member"
        );
        metrics::counter!("sink_batches_abandoned_total").increment(1);
        buffer.announced.remove(&partition);
        if !replays && self.tables.is_none() {
            intents.forget(partition, first, last).await;
        }
        if let Err(error) = self.consumer.seek(
            &self.config.enriched_topic,
            partition,
            Offset::Offset(first_offset),
            Duration::from_secs(5),
        ) {
            tracing::debug!(%error, partition, "rewinding a lost partition failed");
        }
    }

    /// Writes every file, each with a create-only put. A file found under
    /// its name must hold the same rows (its identity metadata says so), or
    /// the sink stops. Before each retry, ownership is proven again: an
    /// outage long enough to lose the group must not end in a write.
    async fn write(
        &self,
        files: Vec<EncodedFile>,
        target: &Target,
        shutdown: &CancellationToken,
    ) -> Result<Written, ConsumptionError> {
        for file in files {
            let path = self.lake.path(&file.name);
            let put = STORE_RETRY
                .run(
                    shutdown,
                    |attempt| self.put(&file, &path, attempt, target, shutdown),
                    |error, attempt| match error {
                        WriteError::Lost => Verdict::GiveUp,
                        WriteError::Lake(error) => {
                            self.judge_store(error, attempt, "writing a file")
                        }
                    },
                )
                .await;
            let outcome = match put {
                Ok(outcome) => outcome,
                Err(Failure::Stopped) => return Ok(Written::Stopped),
                Err(Failure::Permanent(error) | Failure::Exhausted { error, .. }) => {
                    return match error {
                        WriteError::Lost => Ok(Written::Lost),
                        WriteError::Lake(source) => Err(ConsumptionError::Store {
                            what: format!("the file {path}"),
                            source,
                        }),
                    }
                }
            };
            self.readiness.set(checks::OBJECT_STORE, Ok(()));
            if outcome == Put::AlreadyExisted {
                self.check_identity(&file, &path).await?;
            }
        }
        Ok(Written::All)
    }

    async fn put(
        &self,
        file: &EncodedFile,
        path: &object_store::path::Path,
        attempt: u32,
        target: &Target,
        shutdown: &CancellationToken,
    ) -> Result<Put, WriteError> {
        if attempt > 1 {
            match self
                .prove_ownership(target.partition, target.first_offset, shutdown)
                .await
            {
                Ownership::Held | Ownership::Stopped => {}
                Ownership::Lost => return Err(WriteError::Lost),
            }
        }
        let (size, rows) = (file.bytes.len(), file.rows);
        let multipart = size >= self.config.multipart_threshold;
        let started = Instant::now();
        let outcome = if multipart {
            self.lake
                .create_multipart(path, file.bytes.clone(), self.config.multipart_part_size)
                .await?
        } else {
            self.lake.create(path, file.bytes.clone()).await?
        };
        metrics::histogram!("sink_put_seconds").record(started.elapsed().as_secs_f64());
        let reason = target.reason.as_str();
        metrics::counter!("sink_files_total", "reason" => reason).increment(1);
        metrics::counter!("sink_file_bytes_total").increment(size as u64);
        metrics::counter!("sink_rows_total").increment(rows as u64);
        metrics::histogram!("sink_file_bytes").record(size as f64);
        metrics::histogram!("sink_file_rows").record(rows as f64);
        let created = outcome == Put::Created;
        tracing::info!(path = %path, rows, bytes = size, created, multipart, reason, "file written");
        Ok(outcome)
    }

    /// A file found under the batch's name counts as written only if its
    /// identity metadata matches the batch's (the digest is compared when
    /// the found file carries one).
    async fn check_identity(
        &self,
        file: &EncodedFile,
        path: &object_store::path::Path,
    ) -> Result<(), ConsumptionError> {
        // Not cut short by shutdown: a few attempts, then the sink stops.
        let read = STORE_RETRY
            .with_attempts(5)
            .run(
                &CancellationToken::new(),
                |_| self.lake.parquet_metadata(path),
                |error, attempt| self.judge_store(error, attempt, "reading an existing file"),
            )
            .await;
        let found = match read {
            Ok(found) => found,
            Err(Failure::Permanent(source) | Failure::Exhausted { error: source, .. }) => {
                return Err(ConsumptionError::Store {
                    what: format!("reading the existing file {path}"),
                    source,
                })
            }
            Err(Failure::Stopped) => unreachable!("the token is never cancelled"),
        };
        let expected: BTreeMap<String, String> = file.identity.iter().cloned().collect();
        let same = expected.iter().all(|(key, value)| {
            found.get(key) == Some(value) || (key == CONTENT_DIGEST_KEY && !found.contains_key(key))
        });
        if same {
            return Ok(());
        }
        let found = found
            .into_iter()
            .filter(|(key, _)| key.starts_with("mobaro_lake."))
            .collect();
        Err(ConsumptionError::ForeignFile {
            path: path.to_string(),
            found,
            expected,
        })
    }
}

/// A failure of the store that repeating the request may or may not cure.
trait Permanence: std::fmt::Display {
    /// True when repeating cannot help.
    fn is_permanent(&self) -> bool;
}

impl Permanence for LakeError {
    fn is_permanent(&self) -> bool {
        LakeError::is_permanent(self)
    }
}

impl Permanence for DeltaError {
    fn is_permanent(&self) -> bool {
        DeltaError::is_permanent(self)
    }
}

/// The files of a batch as Delta data files, per table.
fn files_by_table(files: &[EncodedFile]) -> BTreeMap<Table, Vec<DataFile>> {
    let mut by_table: BTreeMap<Table, Vec<DataFile>> = BTreeMap::new();
    for file in files {
        let path = file
            .name
            .split_once('/')
            .map_or(file.name.as_str(), |(_, rest)| rest);
        by_table.entry(file.table).or_default().push(DataFile {
            path: path.to_string(),
            date: file.date,
            size: file.bytes.len(),
            rows: file.rows,
        });
    }
    by_table
}

/// The batch a file belongs to.
struct Target {
    partition: i32,
    first_offset: i64,
    reason: FlushReason,
}

/// Whether the member still owns a partition.
#[derive(Debug, PartialEq, Eq)]
enum Ownership {
    Held,
    Lost,
    Stopped,
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
    fn replayed_batches_take_the_announced_names_and_ends() {
        let mut announced = VecDeque::from([(10, 19), (20, 34)]);
        let replay = |first, last| Cut {
            at: last,
            replays: Some((first, last)),
        };
        assert_eq!(cut_for(&mut announced, 10), Some(replay(10, 19)));
        assert_eq!(cut_for(&mut announced, 20), Some(replay(20, 34)));
        // Offsets missing at a range's start: the batch still takes its name.
        let mut gapped = VecDeque::from([(10, 19)]);
        assert_eq!(cut_for(&mut gapped, 13), Some(replay(10, 19)));
        assert_eq!(cut_for(&mut announced, 35), None);
        assert!(announced.is_empty());
        // A batch starting before an announced range stops just short of it.
        let mut announced = VecDeque::from([(50, 60)]);
        assert_eq!(
            cut_for(&mut announced, 40),
            Some(Cut {
                at: 49,
                replays: None
            })
        );
    }

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
