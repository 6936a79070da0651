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
    /// Writes the batches of several partitions, each with its standing,
    /// and commits them together: one commit per table for all of them
    /// (see [`lake::Tables::commit_together`]), then their offsets. A batch
    /// whose partition was lost, or that another member superseded, is
    /// dropped and its partition rewound; the others go on. Each batch's
    /// outcome with its partition (dropped batches first, not in the order
    /// of `batches`).
    pub(crate) async fn flush_together(
        &self,
        batches: Vec<(Batch, &mut Standing)>,
        reason: FlushReason,
        shutdown: &CancellationToken,
    ) -> Result<Vec<(i32, Flushed)>, Halt> {
        let mut outcomes = Vec::with_capacity(batches.len());
        let mut announced = Vec::with_capacity(batches.len());
        for (batch, standing) in batches {
            let span = batch.span();
            let files = batch.finish(self.tables.source(), self.tables.naming())?;
            match self.announce(&span, shutdown).await {
                Ok(()) => announced.push((span, standing, files)),
                Err(unflushed) => {
                    outcomes.push((span.partition, self.drop(&span, unflushed).await?))
                }
            }
        }
        // One proof for every partition: one request to the coordinator.
        let firsts: Vec<(i32, i64)> = announced
            .iter()
            .map(|(span, _, _)| (span.partition, span.first_offset))
            .collect();
        if !firsts.is_empty() {
            if let Err(unflushed) = self.prove_ownership(&firsts, shutdown).await {
                if let Unflushed::Halted(halt) = unflushed {
                    return Err(halt);
                }
                let superseded = matches!(unflushed, Unflushed::Superseded);
                for (span, _, _) in announced {
                    let unflushed = if superseded {
                        Unflushed::Superseded
                    } else {
                        Unflushed::Lost
                    };
                    outcomes.push((span.partition, self.drop(&span, unflushed).await?));
                }
                return Ok(outcomes);
            }
        }
        let mut written = Vec::with_capacity(announced.len());
        for (span, standing, files) in announced {
            match self.write(files, &span, reason, shutdown).await {
                Ok(files) => written.push((span, standing, files)),
                Err(unflushed) => {
                    outcomes.push((span.partition, self.drop(&span, unflushed).await?))
                }
            }
        }
        if written.is_empty() {
            return Ok(outcomes);
        }
        let committed = self.commit_tables(&written, shutdown).await?;
        let mut offsets = Vec::with_capacity(written.len());
        let closed_before = (chrono::Utc::now() - self.compact_grace).date_naive();
        for ((span, standing, files), committed) in written.into_iter().zip(committed) {
            if let Committed::Superseded {
                table,
                expected,
                found,
            } = committed
            {
                tracing::warn!(
                    table = table.name(),
                    partition = span.partition,
                    ?expected,
                    ?found,
                    "another member committed this partition"
                );
                outcomes.push((
                    span.partition,
                    self.drop(&span, Unflushed::Superseded).await?,
                ));
                continue;
            }
            standing.committed(&files, span.range.last);
            telemetry::committed(&files, closed_before);
            // A replay batch never passes its announced end, so the range's
            // end covers every offset consumed.
            offsets.push((span.partition, span.range.next()));
            outcomes.push((span.partition, Flushed::Done));
        }
        self.commit_offsets(&offsets).await;
        for (partition, next) in offsets {
            self.tables.settle(partition, next);
        }
        Ok(outcomes)
    }

    /// How a batch that did not flush ends: dropped and its partition
    /// rewound when the partition is another member's now.
    async fn drop(&self, span: &Span, unflushed: Unflushed) -> Result<Flushed, Halt> {
        let lost = match unflushed {
            Unflushed::Lost => Flushed::Abandoned,
            Unflushed::Superseded => Flushed::Superseded,
            Unflushed::Halted(halt) => return Err(halt),
        };
        self.rewind(span, "the partition belongs to another member")
            .await;
        Ok(lost)
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
                .prove_ownership(&[(span.partition, span.first_offset)], shutdown)
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

    /// Commits the written files of the batches to their tables, retried
    /// while the store fails in a way that may pass; each batch's outcome.
    async fn commit_tables(
        &self,
        written: &[(Span, &mut Standing, Vec<DataFile>)],
        shutdown: &CancellationToken,
    ) -> Result<Vec<Committed>, Halt> {
        let batches: Vec<(&Standing, &[DataFile], i64)> = written
            .iter()
            .map(|(span, standing, files)| (&**standing, files.as_slice(), span.range.last))
            .collect();
        let committed = STORE_RETRY
            .run(
                shutdown,
                |_| self.tables.commit_together(&batches),
                |error, attempt| self.judge_store(error, attempt, "committing to a table"),
            )
            .await
            .or_stopped()?
            .map_err(|source| {
                let ranges: Vec<String> = written
                    .iter()
                    .map(|(span, _, _)| {
                        format!(
                            "partition {} up to offset {}",
                            span.partition, span.range.last
                        )
                    })
                    .collect();
                Halt::Failed(refused(format!("committing {}", ranges.join(", ")), source))
            })?;
        self.readiness.set(checks::OBJECT_STORE, Ok(()));
        Ok(committed)
    }

    /// Commits each partition's offset to its next one. Commits are
    /// cumulative: if this one fails, the next one covers it, and a restart
    /// before that finds the tables holding the ranges.
    async fn commit_offsets(&self, offsets: &[(i32, i64)]) {
        let mut list = TopicPartitionList::new();
        for (partition, next) in offsets {
            if let Err(error) =
                list.add_partition_offset(&self.topic, *partition, Offset::Offset(*next))
            {
                tracing::warn!(%error, partition, "offset commit failed");
            }
        }
        if list.count() == 0 {
            return;
        }
        if let Err(error) = runtime::commit(&self.consumer, Some(list), COMMIT_DEADLINE).await {
            let partitions: Vec<i32> = offsets.iter().map(|(p, _)| *p).collect();
            tracing::warn!(%error, ?partitions, "offset commit failed");
        }
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
