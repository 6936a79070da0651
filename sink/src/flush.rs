//! A flush, one partition's batch from buffer to tables, in one line:
//! finish the files → announce the range → prove the partition is still
//! this member's → write the files → commit them to the tables → commit the
//! partition's offset → settle.
//!
//! Files are written with create-only puts; the tables hold them before the
//! offset moves, so a crash anywhere replays the range, and the tables (the
//! Delta transactions, or the plain-Parquet intents and range names) keep
//! the replay from adding rows twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lake::{Committed, DataFile, EncodedFile, Put, Standing, Tables, TablesError};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use runtime::{checks, Readiness, Retried, Retry, Stopped, Verdict};
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, Span};
use crate::consumption::{ConsumptionError, Halt, SinkConsumer};
use crate::rotation::FlushReason;
use crate::telemetry;

pub(crate) const COMMIT_DEADLINE: Duration = Duration::from_secs(10);

/// How requests to the store are retried while they fail in a way that
/// may pass.
pub(crate) const STORE_RETRY: Retry =
    Retry::forever(Duration::from_millis(500), Duration::from_secs(30));

/// What a flush needs: the tables, the consumer (to prove ownership and
/// commit offsets), where files go and how, and the readiness it reports
/// the store's health to.
pub(crate) struct Flusher {
    pub(crate) consumer: Arc<SinkConsumer>,
    pub(crate) tables: Arc<Tables>,
    pub(crate) readiness: Readiness,
    /// The topic whose offsets it commits.
    pub(crate) topic: String,
    pub(crate) upload: lake::Upload,
    /// Days before this are closed (counted in the commit metrics).
    pub(crate) compact_grace: Duration,
}

/// How a flush ended, unless it halted.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Flushed {
    /// Files written and committed, and the offset committed (or the
    /// commit left to the next one).
    Done,
    /// The partition belongs to another member now: the batch was dropped
    /// unwritten and the partition rewound to its first offset.
    Abandoned,
    /// Abandoned because another member committed the partition: its
    /// commits hold event ids this member does not know.
    Superseded,
}

/// Why a flush did not finish.
pub(crate) enum Unflushed {
    /// The partition belongs to another member: the batch is dropped.
    Lost,
    /// Another member committed the partition: the batch is dropped.
    Superseded,
    /// Shutdown, or a failure that stops the sink.
    Halted(Halt),
}

impl From<Stopped> for Unflushed {
    fn from(_: Stopped) -> Self {
        Unflushed::Halted(Halt::Stopped)
    }
}

impl<E: Into<ConsumptionError>> From<E> for Unflushed {
    fn from(error: E) -> Self {
        Unflushed::Halted(Halt::Failed(error.into()))
    }
}

/// Why writing a file did not succeed.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error(transparent)]
    Store(#[from] TablesError),
    #[error("the partition was lost to another member")]
    Lost,
}

/// A request the store refused for good.
fn refused(what: String, source: impl Into<TablesError>) -> ConsumptionError {
    ConsumptionError::Store {
        what,
        source: source.into(),
    }
}

impl Flusher {
    /// Writes and commits `batch`, whose partition's standing is
    /// `standing`. A batch whose partition was lost is dropped and the
    /// partition rewound.
    pub(crate) async fn flush(
        &self,
        batch: Batch,
        standing: &mut Standing,
        reason: FlushReason,
        shutdown: &CancellationToken,
    ) -> Result<Flushed, Halt> {
        let span = batch.span();
        let files = batch.finish(self.tables.source(), self.tables.naming())?;
        let lost = match self
            .write_and_commit(standing, files, &span, reason, shutdown)
            .await
        {
            Ok(()) => return Ok(Flushed::Done),
            Err(Unflushed::Lost) => Flushed::Abandoned,
            Err(Unflushed::Superseded) => Flushed::Superseded,
            Err(Unflushed::Halted(halt)) => return Err(halt),
        };
        self.rewind(&span, "the partition belongs to another member")
            .await;
        Ok(lost)
    }

    async fn write_and_commit(
        &self,
        standing: &mut Standing,
        files: Vec<EncodedFile>,
        span: &Span,
        reason: FlushReason,
        shutdown: &CancellationToken,
    ) -> Result<(), Unflushed> {
        self.announce(span, shutdown).await?;
        self.prove_ownership(span.partition, span.first_offset, shutdown)
            .await?;
        let written = self.write(files, span, reason, shutdown).await?;
        self.commit_tables(standing, &written, span, shutdown)
            .await?;
        // A replay batch never passes its announced end, so the range's end
        // covers every offset consumed.
        let next = span.range.next();
        self.commit_offset(span.partition, next).await;
        self.tables.settle(span.partition, next);
        Ok(())
    }

    /// Tells the tables the range is about to be written.
    async fn announce(&self, span: &Span, shutdown: &CancellationToken) -> Result<(), Unflushed> {
        STORE_RETRY
            .run(
                shutdown,
                |_| self.tables.announce(span.partition, span.range),
                |error, attempt| self.judge_store(error, attempt, "announcing a flush"),
            )
            .await
            .or_stopped()?
            .map_err(|source| {
                refused(
                    format!(
                        "announcing the flush of partition {} offsets {}",
                        span.partition, span.range
                    ),
                    source,
                )
            })?;
        self.readiness.set(checks::OBJECT_STORE, Ok(()));
        Ok(())
    }

    /// Writes every file, each with a create-only put. A file found under
    /// its name must hold the same rows (its identity metadata says so), or
    /// the sink stops. Before each retry, ownership is proven again: an
    /// outage long enough to lose the group must not end in a write.
    async fn write(
        &self,
        files: Vec<EncodedFile>,
        span: &Span,
        reason: FlushReason,
        shutdown: &CancellationToken,
    ) -> Result<Vec<DataFile>, Unflushed> {
        let mut written = Vec::with_capacity(files.len());
        for file in files {
            let put = STORE_RETRY
                .run(
                    shutdown,
                    |attempt| self.put(&file, attempt, span, reason, shutdown),
                    |error, attempt| match error {
                        WriteError::Lost => Verdict::GiveUp,
                        WriteError::Store(error) => {
                            self.judge_store(error, attempt, "writing a file")
                        }
                    },
                )
                .await
                .or_stopped()?;
            let put = match put {
                Ok(put) => put,
                Err(WriteError::Lost) => return Err(Unflushed::Lost),
                Err(WriteError::Store(source)) => {
                    let what = format!("writing the file {}", file.path.in_lake());
                    return Err(refused(what, source).into());
                }
            };
            self.readiness.set(checks::OBJECT_STORE, Ok(()));
            if put == Put::AlreadyExisted {
                self.confirm_identity(&file).await?;
            }
            written.push(file.data_file());
        }
        Ok(written)
    }

    async fn put(
        &self,
        file: &EncodedFile,
        attempt: u32,
        span: &Span,
        reason: FlushReason,
        shutdown: &CancellationToken,
    ) -> Result<Put, WriteError> {
        if attempt > 1 {
            match self
                .prove_ownership(span.partition, span.first_offset, shutdown)
                .await
            {
                Err(Unflushed::Lost | Unflushed::Superseded) => return Err(WriteError::Lost),
                Ok(()) | Err(Unflushed::Halted(_)) => {}
            }
        }
        let started = Instant::now();
        let outcome = self
            .tables
            .lake()
            .write_file(file, &self.upload)
            .await
            .map_err(TablesError::from)?;
        let (bytes, rows) = (file.bytes.len(), file.rows);
        telemetry::file_written(reason, bytes, rows, started.elapsed());
        let created = outcome == Put::Created;
        let multipart = bytes >= self.upload.multipart_threshold;
        tracing::info!(path = %file.path.in_lake(), rows, bytes, created, multipart, reason = reason.as_str(), "file written");
        Ok(outcome)
    }

    /// A file found under the batch's name counts as written only if it
    /// holds the same rows.
    async fn confirm_identity(&self, file: &EncodedFile) -> Result<(), ConsumptionError> {
        // Not cut short by shutdown: a few attempts, then the sink stops.
        let what = || format!("reading the existing file {}", file.path.in_lake());
        STORE_RETRY
            .with_attempts(5)
            .run(
                &CancellationToken::new(),
                |_| async {
                    let lake = self.tables.lake();
                    lake.confirm_identity(file).await.map_err(TablesError::from)
                },
                |error, attempt| self.judge_store(error, attempt, &what()),
            )
            .await
            .or_stopped()
            .expect("the token is never cancelled")
            .map_err(|source| refused(what(), source))
    }

    /// Commits the written files to their tables. A table whose partition
    /// moved past what the batch was bounded by belongs to another member's
    /// work: the batch is lost.
    async fn commit_tables(
        &self,
        standing: &mut Standing,
        written: &[DataFile],
        span: &Span,
        shutdown: &CancellationToken,
    ) -> Result<(), Unflushed> {
        let (partition, last) = (span.partition, span.range.last);
        let held = &*standing;
        let committed = STORE_RETRY
            .run(
                shutdown,
                |_| self.tables.commit(held, written, last),
                |error, attempt| self.judge_store(error, attempt, "committing to a table"),
            )
            .await
            .or_stopped()?
            .map_err(|source| {
                refused(
                    format!("committing partition {partition} up to offset {last}"),
                    source,
                )
            })?;
        if let Committed::Superseded {
            table,
            expected,
            found,
        } = committed
        {
            tracing::warn!(
                table = table.name(),
                partition,
                ?expected,
                ?found,
                "another member committed this partition"
            );
            return Err(Unflushed::Superseded);
        }
        standing.committed(written, last);
        let closed_before = (chrono::Utc::now() - self.compact_grace).date_naive();
        telemetry::committed(written, closed_before);
        self.readiness.set(checks::OBJECT_STORE, Ok(()));
        Ok(())
    }

    /// Commits the partition's offset to `next`. Commits are cumulative: if
    /// this one fails, the next one covers it, and a restart before that
    /// finds the tables holding the range.
    async fn commit_offset(&self, partition: i32, next: i64) {
        let committed = match self.offsets(partition, next) {
            Ok(offsets) => runtime::commit(&self.consumer, Some(offsets), COMMIT_DEADLINE)
                .await
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = committed {
            tracing::warn!(%error, partition, "offset commit failed");
        }
    }

    pub(crate) fn offsets(
        &self,
        partition: i32,
        offset: i64,
    ) -> Result<TopicPartitionList, rdkafka::error::KafkaError> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.topic, partition, Offset::Offset(offset))?;
        Ok(list)
    }

    /// Drops a batch unwritten (its partition was lost, or its records
    /// must be read again): lets the tables forget the range, and rewinds
    /// the partition to the batch's first offset (in case it is still
    /// assigned after all).
    pub(crate) async fn rewind(&self, span: &Span, why: &str) {
        tracing::warn!(
            partition = span.partition,
            first = span.range.first,
            last = span.range.last,
            "batch abandoned unwritten: {why}"
        );
        telemetry::batch_abandoned();
        self.tables
            .abandon(span.partition, span.range, span.replays)
            .await;
        if let Err(error) = self.consumer.seek(
            &self.topic,
            span.partition,
            Offset::Offset(span.first_offset),
            Duration::from_secs(5),
        ) {
            tracing::debug!(%error, partition = span.partition, "rewinding a lost partition failed");
        }
    }

    /// Logs a failed request to the store or a table's log and says whether
    /// to retry it.
    pub(crate) fn judge_store(&self, error: &TablesError, attempt: u32, what: &str) -> Verdict {
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
}
