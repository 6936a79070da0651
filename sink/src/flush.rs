//! A flush, one partition's batch from buffer to tables, in one line:
//! finish the files → announce the range → prove the partition is still
//! this member's → write the files → commit them to the tables → commit the
//! partition's offset → settle.
//!
//! Files are written with create-only puts; the tables hold them before the
//! offset moves, so a crash anywhere replays the range, and the tables (the
//! Delta transactions, or the plain-Parquet intents and range names) keep
//! the replay from adding rows twice.

use std::time::{Duration, Instant};

use lake::{Committed, DataFile, EncodedFile, Put, TablesError};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use runtime::{checks, Retried, Stopped, Verdict};
use tokio_util::sync::CancellationToken;

use crate::batch::Span;
use crate::consumption::{Buffer, Consumption, ConsumptionError, Flushed, Halt, STORE_RETRY};
use crate::rotation::FlushReason;
use crate::telemetry;

pub(crate) const COMMIT_DEADLINE: Duration = Duration::from_secs(10);

/// Why a flush did not finish.
pub(crate) enum Unflushed {
    /// The partition belongs to another member: the batch is dropped.
    Lost,
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

impl Consumption {
    /// Flushes `partition`'s batch, if it has one. A batch whose partition
    /// was lost is dropped and the partition rewound.
    pub(crate) async fn flush(
        &self,
        buffer: &mut Buffer,
        partition: i32,
        reason: FlushReason,
        shutdown: &CancellationToken,
    ) -> Result<Flushed, Halt> {
        let Some(mut batch) = buffer.batches.remove(&partition) else {
            return Ok(Flushed::Done);
        };
        let span = batch.span();
        let ids = batch.take_ids();
        let files = batch.finish(self.tables.source(), self.tables.naming())?;
        match self
            .write_and_commit(buffer, files, &span, reason, shutdown)
            .await
        {
            Ok(()) => {
                if let Some(dedup) = &mut buffer.dedup {
                    dedup.committed(ids);
                }
                Ok(Flushed::Done)
            }
            Err(Unflushed::Lost) => {
                self.abandon(buffer, &span).await;
                Ok(Flushed::Abandoned)
            }
            Err(Unflushed::Halted(halt)) => Err(halt),
        }
    }

    async fn write_and_commit(
        &self,
        buffer: &mut Buffer,
        files: Vec<EncodedFile>,
        span: &Span,
        reason: FlushReason,
        shutdown: &CancellationToken,
    ) -> Result<(), Unflushed> {
        self.announce(span, shutdown).await?;
        self.prove_ownership(span.partition, span.first_offset, shutdown)
            .await?;
        let written = self.write(files, span, reason, shutdown).await?;
        self.commit_tables(buffer, &written, span, shutdown).await?;
        // A replay batch never passes its announced end, so the range's end
        // covers every offset consumed.
        let next = span.range.1 + 1;
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
                let (first, last) = span.range;
                refused(
                    format!(
                        "announcing the flush of partition {} offsets {first}..={last}",
                        span.partition
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
                Err(Unflushed::Lost) => return Err(WriteError::Lost),
                Ok(()) | Err(Unflushed::Halted(_)) => {}
            }
        }
        let started = Instant::now();
        let outcome = self
            .tables
            .lake()
            .write_file(file, &self.config.upload())
            .await
            .map_err(TablesError::from)?;
        let (bytes, rows) = (file.bytes.len(), file.rows);
        telemetry::file_written(reason, bytes, rows, started.elapsed());
        let created = outcome == Put::Created;
        let multipart = bytes >= self.config.multipart_threshold;
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
        buffer: &mut Buffer,
        written: &[DataFile],
        span: &Span,
        shutdown: &CancellationToken,
    ) -> Result<(), Unflushed> {
        let (partition, last) = (span.partition, span.range.1);
        let standing = buffer
            .standings
            .get_mut(&partition)
            .expect("a partition with a batch has a standing");
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
            // Its commits hold events the ids known here lack: they are
            // read again before the next batch, so that a later copy of
            // one of them is left out.
            if let Some(dedup) = &mut buffer.dedup {
                dedup.forget();
            }
            return Err(Unflushed::Lost);
        }
        standing.committed(written, last);
        let closed_before = (chrono::Utc::now() - self.config.upkeep.compact_grace).date_naive();
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
        list.add_partition_offset(
            &self.config.enriched_topic,
            partition,
            Offset::Offset(offset),
        )?;
        Ok(list)
    }

    /// Drops a batch whose partition was lost: forgets the partition (its
    /// standing is read again), lets the tables forget the range, and
    /// rewinds the partition to the batch's first offset (in case it is
    /// still assigned after all).
    async fn abandon(&self, buffer: &mut Buffer, span: &Span) {
        let (first, last) = span.range;
        tracing::warn!(
            partition = span.partition,
            first,
            last,
            "batch abandoned unwritten: the partition belongs to another member"
        );
        telemetry::batch_abandoned();
        buffer.forget(span.partition);
        self.tables
            .abandon(span.partition, span.range, span.replays)
            .await;
        if let Err(error) = self.consumer.seek(
            &self.config.enriched_topic,
            span.partition,
            Offset::Offset(span.first_offset),
            Duration::from_secs(5),
        ) {
            tracing::debug!(%error, partition = span.partition, "rewinding a lost partition failed");
        }
    }
}
