//! The consume → buffer → flush loop.
//!
//! Records are buffered per partition as a contiguous offset range, bounded
//! by what the tables already hold of the partition (its [`Standing`]). A
//! flush (see `flush.rs`) writes the batch's files and commits them to the
//! tables before the partition's offset is committed.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lake::{EncodingError, Standing, Tables, TablesError};
use lake::{Erasures, Screened};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, OwnedHeaders};
use rdkafka::Message;
use runtime::checks;
use runtime::{
    produce, with_headers, Outgoing, Readiness, RebalanceContext, Retried, Revoked, Stopped,
};
use schemas::{DeadLetter, DeadLetterClass, EnrichedView, Position, Stage};
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, Encoding};
use crate::buffer::Buffer;
use crate::config::Config;
use crate::deduplication::Deduplication;
use crate::flush::{Flushed, Flusher, STORE_RETRY};
use crate::rotation::{FlushReason, Rotation};
use crate::telemetry;

/// Why consumption stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum ConsumptionError {
    #[error("kafka: {0}")]
    /// The Kafka client failed.
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    /// A batch could not be encoded.
    Encoding(#[from] EncodingError),
    #[error("{what} failed for good: {source}; nothing past it was committed")]
    /// The store or a table's log refused a request for good.
    Store {
        /// What was asked.
        what: String,
        /// Why it failed.
        source: TablesError,
    },
    #[error("the dead-letter topic refused the record at partition {partition} offset {offset}: {error}")]
    /// An undecodable record could not be dead-lettered.
    DeadLetter {
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// Why.
        error: rdkafka::error::KafkaError,
    },
    #[error(transparent)]
    /// The consumer failed for good.
    Fatal(#[from] runtime::ConsumerFailed),
    #[error("table {table} holds partition {partition} of {topic} up to offset {held}, but the broker's partition {partition} ends before it (its next offset is {end}): the topic was deleted and created again, or this is another Kafka cluster; nothing was skipped or written")]
    /// The broker's partition starts again below what a table holds of it.
    TopicRestarted {
        /// The table holding the highest offset.
        table: &'static str,
        /// The topic as the lake knows it.
        topic: String,
        /// The partition.
        partition: i32,
        /// The last offset the table holds.
        held: i64,
        /// The broker's next offset in the partition.
        end: i64,
    },
    #[error("the tables hold records of {topic} from Kafka cluster {recorded}, but the broker is cluster {found}, whose topic of that name is another one; nothing was skipped or written")]
    /// The broker is another cluster than the one the tables' records came
    /// from.
    OtherCluster {
        /// The topic as the lake knows it.
        topic: String,
        /// The cluster recorded in the lake.
        recorded: String,
        /// The broker's cluster.
        found: String,
    },
}

pub(crate) type SinkConsumer = StreamConsumer<RebalanceContext>;

pub(crate) struct Consumption {
    pub(crate) consumer: Arc<SinkConsumer>,
    pub(crate) producer: runtime::Producer,
    /// Writes and commits the batches.
    pub(crate) flusher: Flusher,
    /// The tables, in the format chosen at start-up.
    pub(crate) tables: Arc<Tables>,
    pub(crate) config: Config,
    pub(crate) readiness: Readiness,
    /// The erasure ledger, applied to every record.
    pub(crate) erasures: Arc<Erasures>,
}

const SHUTDOWN_FLUSH_DEADLINE: Duration = Duration::from_secs(30);

/// Why taking messages cannot go on.
#[derive(Debug)]
pub(crate) enum Halt {
    /// Shutdown cut the work short; nothing more is written or committed.
    Stopped,
    /// A failure that stops the sink.
    Failed(ConsumptionError),
}

impl From<Stopped> for Halt {
    fn from(_: Stopped) -> Self {
        Halt::Stopped
    }
}

impl From<ConsumptionError> for Halt {
    fn from(error: ConsumptionError) -> Self {
        Halt::Failed(error)
    }
}

impl From<EncodingError> for Halt {
    fn from(error: EncodingError) -> Self {
        Halt::Failed(error.into())
    }
}

/// Sleeps until `at`; for ever without it.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What a message holds.
#[must_use]
enum Decoded<'m> {
    Record(EnrichedView<'m>),
    /// Undecodable; now in the dead-letter topic.
    DeadLettered,
}

impl Consumption {
    pub(crate) async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumptionError> {
        self.consumer.subscribe(&[&self.config.enriched_topic])?;
        self.readiness.set(checks::OBJECT_STORE, Ok(()));
        let mut buffer = Buffer {
            dedup: self.tables.delta().and_then(|_| {
                Deduplication::new(self.config.dedup_horizon, self.config.memory_budget)
            }),
            ..Buffer::default()
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut screened_by = self.erasures.current().1;
        let rotation = Rotation {
            max_rows: self.config.max_file_rows,
            max_bytes: self.config.max_file_bytes,
            max_age: self.config.max_file_age,
            memory_budget: self.config.memory_budget,
        };
        let halted = loop {
            self.drop_revoked(&mut buffer);
            let idle_flush = self.idle_flush_at(&buffer);
            // In this order: a message waiting to be read comes before the
            // idle flush, which therefore runs only when the sink has read
            // what the topic holds; under a backlog files fill by size.
            let step = tokio::select! {
                biased;
                _ = shutdown.cancelled() => Err(Halt::Stopped),
                _ = tick.tick() => {
                    self.screen_again(&mut buffer, &mut screened_by).await;
                    self.flush_due(&mut buffer, &rotation, &shutdown).await
                }
                message = self.consumer.recv() => match message {
                    Ok(message) => self.take(&mut buffer, &rotation, &message, &shutdown).await,
                    Err(error) => match runtime::fatal_error(&self.consumer) {
                        Some(fatal) => Err(Halt::Failed(fatal.into())),
                        None => {
                            tracing::warn!(%error, "consumer error");
                            Ok(())
                        }
                    },
                },
                () = sleep_until(idle_flush) => {
                    let partitions = buffer.free().map(|b| b.partition).collect();
                    self.flush_together(&mut buffer, partitions, FlushReason::Idle, &shutdown).await
                }
            };
            if let Err(halt) = step {
                break halt;
            }
        };
        if let Halt::Failed(error) = halted {
            return Err(error);
        }
        // Give the last flush a bounded time: with the store down it would
        // otherwise retry forever. What it cannot write stays uncommitted.
        let deadline = CancellationToken::new();
        let expire = deadline.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SHUTDOWN_FLUSH_DEADLINE).await;
            expire.cancel();
        });
        let partitions: Vec<i32> = buffer.free().map(|b| b.partition).collect();
        match self
            .flush_together(&mut buffer, partitions, FlushReason::Shutdown, &deadline)
            .await
        {
            Ok(()) | Err(Halt::Stopped) => Ok(()),
            Err(Halt::Failed(error)) => Err(error),
        }
    }

    /// When the open batches are flushed if no message is waiting: the
    /// commit interval after the oldest opened; never without one.
    fn idle_flush_at(&self, buffer: &Buffer) -> Option<tokio::time::Instant> {
        let oldest = buffer.free().map(|b| b.opened_at).min()?;
        Some(tokio::time::Instant::from_std(
            oldest + self.config.commit_interval,
        ))
    }

    /// When the erasure ledger changed since the batches were screened
    /// (`screened_by`, its generation), drops every unwritten batch and
    /// rewinds its partition: its records come again, screened by the new
    /// ledger.
    async fn screen_again(&self, buffer: &mut Buffer, screened_by: &mut u64) {
        let generation = self.erasures.current().1;
        if generation == *screened_by {
            return;
        }
        *screened_by = generation;
        let partitions: Vec<i32> = buffer.batches.keys().copied().collect();
        for partition in partitions {
            if let Some(batch) = buffer.batches.remove(&partition) {
                self.flusher
                    .rewind(&batch.span(), "the erasure ledger changed")
                    .await;
            }
        }
    }

    /// Flushes the batches whose files are due by size or age.
    async fn flush_due(
        &self,
        buffer: &mut Buffer,
        rotation: &Rotation,
        shutdown: &CancellationToken,
    ) -> Result<(), Halt> {
        let due: Vec<(i32, FlushReason)> = buffer
            .free()
            .filter_map(|b| {
                let reason =
                    rotation.due(b.most_rows(), b.most_encoded_bytes(), b.opened_at.elapsed())?;
                Some((b.partition, reason))
            })
            .collect();
        for (partition, reason) in due {
            let _ = self.flush(buffer, partition, reason, shutdown).await?;
        }
        // Once a second: summing the buffers per message is not free.
        telemetry::buffered(buffer.buffered_bytes());
        let now = std::time::SystemTime::now();
        telemetry::oldest_pending(
            buffer
                .batches
                .values()
                .map(|b| now - b.opened_at.elapsed())
                .min(),
        );
        Ok(())
    }

    /// Adds one message to its partition's batch, flushing what is due.
    async fn take(
        &self,
        buffer: &mut Buffer,
        rotation: &Rotation,
        message: &BorrowedMessage<'_>,
        shutdown: &CancellationToken,
    ) -> Result<(), Halt> {
        // A rebalance inside `recv` may have revoked partitions, and handed
        // one back from its last commit, before this message.
        self.drop_revoked(buffer);
        let (partition, offset) = (message.partition(), message.offset());
        telemetry::message_taken();
        buffer.forget_if_rewound(partition, offset);
        // A replay batch ends as soon as an offset past its announced end
        // shows up, whether or not the offsets before it all existed.
        let past_cut = buffer
            .batches
            .get(&partition)
            .and_then(|b| b.bounds.cut_at)
            .is_some_and(|cut| offset > cut);
        if past_cut
            && self
                .flush(buffer, partition, FlushReason::Replay, shutdown)
                .await?
                != Flushed::Done
        {
            // Rewound to the batch's start: this message comes again.
            return Ok(());
        }
        let mut payload = message.payload().unwrap_or_default();
        let erased: Vec<u8>;
        let record = match self.decode(message, shutdown).await? {
            Decoded::Record(record) => {
                let (ledger, _) = self.erasures.current();
                match ledger.screen(payload) {
                    Screened::Clean => Some(record),
                    Screened::Dropped => {
                        lake::erased_record("dropped");
                        None
                    }
                    Screened::Erased(bytes) => {
                        lake::erased_record("erased");
                        erased = bytes;
                        payload = &erased;
                        Some(EnrichedView::from_json(payload).expect("re-encoded from a record"))
                    }
                }
            }
            Decoded::DeadLettered => None,
        };
        if !buffer.batches.contains_key(&partition) {
            self.open_batch(buffer, rotation, partition, offset, shutdown)
                .await?;
        }
        if let Some(record) = &record {
            self.read_day_if_needed(buffer, record.event_timestamp.date_naive(), shutdown)
                .await?;
        }
        let batch = buffer.batches.get_mut(&partition).expect("inserted above");
        let held = buffer.dedup.as_ref().and_then(Deduplication::held);
        batch.push(offset, record.as_ref(), payload, held)?;
        let reason = match batch.bounds.cut_at {
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
            let _ = self.flush(buffer, partition, reason, shutdown).await?;
        }
        if buffer.buffered_bytes() < rotation.buffer_limit() {
            return Ok(());
        }
        let largest = buffer
            .free()
            .max_by_key(|b| b.buffered_bytes())
            .map(|b| b.partition);
        if let Some(largest) = largest {
            let _ = self
                .flush(buffer, largest, FlushReason::Memory, shutdown)
                .await?;
        }
        Ok(())
    }

    /// Opens a partition's batch at `offset`, bounded by what the tables
    /// hold of the partition (read on its first batch). Without that the
    /// batch could be cut anywhere, or take records a table holds: a stop
    /// while reading it leaves the batch unopened.
    async fn open_batch(
        &self,
        buffer: &mut Buffer,
        rotation: &Rotation,
        partition: i32,
        offset: i64,
        shutdown: &CancellationToken,
    ) -> Result<(), Halt> {
        if let Entry::Vacant(unknown) = buffer.standings.entry(partition) {
            let standing = self
                .read_tables(
                    "reading what the tables hold",
                    || format!("reading what the tables hold of partition {partition}"),
                    || self.tables.standing(partition, offset),
                    shutdown,
                )
                .await?;
            self.check_continuity(partition, &standing, shutdown)
                .await?;
            unknown.insert(standing);
            // The ids are read after what the tables hold of the
            // partition: another member's commits before it are then in
            // them, so a later copy of one of their events is left out.
            if let Some(dedup) = &mut buffer.dedup {
                dedup.forget();
            }
        }
        self.read_held_event_ids(buffer, shutdown).await?;
        let standing = buffer
            .standings
            .get_mut(&partition)
            .expect("the partition's standing was read above");
        let batch = Batch::new(
            partition,
            offset,
            standing.bounds(offset),
            Encoding {
                compression: self.config.compression,
                chunk_bytes: rotation.chunk_bytes(),
                monitors: self.config.column_monitors,
            },
        );
        buffer.batches.insert(partition, batch);
        Ok(())
    }

    /// Reads from the tables with `read`, retried while the store fails in
    /// a way retrying can cure; `what` names the read in the log, and
    /// `refused` in the error that stops the sink.
    pub(crate) async fn read_tables<T, F>(
        &self,
        what: &str,
        refused: impl FnOnce() -> String,
        read: impl Fn() -> F,
        shutdown: &CancellationToken,
    ) -> Result<T, Halt>
    where
        F: std::future::Future<Output = Result<T, TablesError>>,
    {
        let outcome = STORE_RETRY
            .run(
                shutdown,
                |_| read(),
                |error, attempt| self.flusher.judge_store(error, attempt, what),
            )
            .await
            .or_stopped()?;
        Ok(outcome.map_err(|source| ConsumptionError::Store {
            what: refused(),
            source,
        })?)
    }

    /// Reads the event ids the tables hold, when deduplication is on and
    /// they are not known: before the first batch, and after a rebalance
    /// assigned partitions (another member may have committed to them).
    async fn read_held_event_ids(
        &self,
        buffer: &mut Buffer,
        shutdown: &CancellationToken,
    ) -> Result<(), Halt> {
        let Some(dedup) = &mut buffer.dedup else {
            return Ok(());
        };
        if self.consumer.context().take_assigned() {
            dedup.forget();
        }
        if dedup.held().is_some() {
            return Ok(());
        }
        let (held, took) = self
            .read_event_ids(dedup.since(), None, dedup.budget(), shutdown)
            .await?;
        if let Some(held) = held {
            dedup.read(held, took);
        }
        Ok(())
    }

    /// Reads the event ids the tables hold on `day` when it is before the
    /// deduplication horizon and not read yet: a backfill of old records,
    /// run again, then adds nothing.
    async fn read_day_if_needed(
        &self,
        buffer: &mut Buffer,
        day: chrono::NaiveDate,
        shutdown: &CancellationToken,
    ) -> Result<(), Halt> {
        let Some(dedup) = buffer.dedup.as_mut() else {
            return Ok(());
        };
        if !dedup.needs_day(day) {
            return Ok(());
        }
        let (ids, took) = self
            .read_event_ids(day, Some(day), dedup.budget(), shutdown)
            .await?;
        if let Some(ids) = ids {
            dedup.read_day(day, ids, took);
        }
        Ok(())
    }

    /// The event ids the tables hold from `since` to `until` (see
    /// [`Tables::held_event_ids`]), retried while the store fails in a way
    /// that may pass; with the time the read took.
    async fn read_event_ids(
        &self,
        since: chrono::NaiveDate,
        until: Option<chrono::NaiveDate>,
        limit: usize,
        shutdown: &CancellationToken,
    ) -> Result<(Option<lake::EventIds>, std::time::Duration), Halt> {
        let started = std::time::Instant::now();
        let days = match until {
            Some(until) if until == since => format!("on {since}"),
            Some(until) => format!("from {since} to {until}"),
            None => format!("since {since}"),
        };
        let ids = self
            .read_tables(
                "reading the event ids the tables hold",
                || format!("reading the event ids the tables hold {days}"),
                || self.tables.held_event_ids(since, until, limit),
                shutdown,
            )
            .await?;
        Ok((ids, started.elapsed()))
    }

    /// Drops the unwritten batches of revoked partitions: their offsets were
    /// not committed, so the next owner consumes them again.
    fn drop_revoked(&self, buffer: &mut Buffer) {
        let revoked: Vec<i32> = match self.consumer.context().take_revoked() {
            Revoked::Nothing => return,
            Revoked::Some(partitions) => partitions,
            Revoked::All => {
                buffer.standings.clear();
                buffer.batches.keys().copied().collect()
            }
        };
        for partition in revoked {
            if let Some(batch) = buffer.forget(partition) {
                tracing::info!(
                    partition,
                    first_offset = batch.first_offset,
                    last_offset = batch.last_offset,
                    "partition revoked; its unwritten batch is left to the next owner"
                );
            }
        }
    }

    /// Flushes `partition`'s batch, if it has one; a batch whose partition
    /// was lost is dropped with what is known of the partition.
    pub(crate) async fn flush(
        &self,
        buffer: &mut Buffer,
        partition: i32,
        reason: FlushReason,
        shutdown: &CancellationToken,
    ) -> Result<Flushed, Halt> {
        let mut flushed = self
            .flushed_together(buffer, vec![partition], reason, shutdown)
            .await?;
        Ok(flushed.pop().unwrap_or(Flushed::Done))
    }

    /// Flushes the batches of `partitions` together (one commit per table
    /// for all of them).
    async fn flush_together(
        &self,
        buffer: &mut Buffer,
        partitions: Vec<i32>,
        reason: FlushReason,
        shutdown: &CancellationToken,
    ) -> Result<(), Halt> {
        self.flushed_together(buffer, partitions, reason, shutdown)
            .await
            .map(drop)
    }

    /// [`Consumption::flush_together`], with each batch's outcome.
    async fn flushed_together(
        &self,
        buffer: &mut Buffer,
        partitions: Vec<i32>,
        reason: FlushReason,
        shutdown: &CancellationToken,
    ) -> Result<Vec<Flushed>, Halt> {
        let (mut order, mut batches, mut standings) = (Vec::new(), Vec::new(), Vec::new());
        let mut ids = BTreeMap::new();
        for partition in partitions {
            let Some(mut batch) = buffer.batches.remove(&partition) else {
                continue;
            };
            ids.insert(partition, batch.take_ids());
            let standing = buffer
                .standings
                .remove(&partition)
                .expect("a partition with a batch has a standing");
            order.push(partition);
            batches.push(batch);
            standings.push(standing);
        }
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let together = batches.into_iter().zip(standings.iter_mut()).collect();
        let flushed = self
            .flusher
            .flush_together(together, reason, shutdown)
            .await?;
        let mut standings: BTreeMap<i32, Standing> = order.into_iter().zip(standings).collect();
        let mut outcomes = Vec::with_capacity(flushed.len());
        for (partition, flushed) in flushed {
            match flushed {
                Flushed::Done => {
                    if let Some(standing) = standings.remove(&partition) {
                        buffer.standings.insert(partition, standing);
                    }
                    if let (Some(dedup), Some(ids)) = (&mut buffer.dedup, ids.remove(&partition)) {
                        dedup.committed(ids);
                    }
                }
                Flushed::Abandoned => {
                    buffer.forget(partition);
                }
                Flushed::Superseded => {
                    buffer.forget(partition);
                    // Its commits hold events the ids known here lack: they
                    // are read again before the next batch, so that a later
                    // copy of one of them is left out.
                    if let Some(dedup) = &mut buffer.dedup {
                        dedup.forget();
                    }
                }
            }
            outcomes.push(flushed);
        }
        Ok(outcomes)
    }

    /// The enriched record in `message`, or the record dead-lettered when it
    /// cannot be decoded.
    async fn decode<'m>(
        &self,
        message: &'m BorrowedMessage<'_>,
        shutdown: &CancellationToken,
    ) -> Result<Decoded<'m>, Halt> {
        let payload = message.payload().unwrap_or_default();
        let error = match EnrichedView::from_json(payload) {
            Ok(record) => return Ok(Decoded::Record(record)),
            Err(error) => error,
        };
        tracing::warn!(%error, partition = message.partition(), offset = message.offset(), "undecodable record dead-lettered");
        telemetry::dead_lettered();
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
        produce(&self.producer, &outgoing, shutdown)
            .await
            .or_stopped()?
            .map_err(|error| ConsumptionError::DeadLetter {
                partition: message.partition(),
                offset: message.offset(),
                error,
            })?;
        Ok(Decoded::DeadLettered)
    }
}
