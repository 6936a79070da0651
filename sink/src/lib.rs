//! `sink`: enriched records to Delta Lake tables (or Hive-partitioned Parquet)
//! in an object store.

mod access;
mod batch;
mod buffer;
mod commands;
mod config;
mod consumption;
mod continuity;
mod conversion;
mod deduplication;
mod doctor;
mod flush;
mod ownership;
mod remedy;
mod rotation;
mod telemetry;
mod upkeep;

use tokio_util::sync::CancellationToken;

pub use config::{Config, LakeFormat};
pub use telemetry::metric_names;

use std::sync::Arc;

use lake::{CompactionError, DeltaError, LakeError, TablesError};

use access::{tables, until_the_store_answers};

#[derive(Debug, thiserror::Error)]
/// Why the sink stopped.
pub enum SinkError {
    #[error(transparent)]
    /// The lake could not be opened.
    Lake(#[from] LakeError),
    #[error(transparent)]
    /// The broker or the Kafka client failed.
    Kafka(#[from] runtime::KafkaError),
    #[error(transparent)]
    /// Consuming enriched records failed for good.
    Consumption(#[from] consumption::ConsumptionError),
    #[error(transparent)]
    /// A compaction failed.
    Compaction(#[from] CompactionError),
    #[error(transparent)]
    /// A Delta table could not be read or written.
    Delta(#[from] DeltaError),
    #[error(transparent)]
    /// The tables could not be opened as configured.
    Tables(#[from] TablesError),
    #[error("`sink {command}` left {failed} table(s) or day(s) alone; see the lines above")]
    /// A one-off compaction or vacuum could not do all of its work.
    Upkeep {
        /// The command.
        command: &'static str,
        /// How many tables or days failed.
        failed: usize,
    },
    #[error("{0} before the lake could be read")]
    /// Shutdown came while the lake was unreachable.
    Stopped(#[from] runtime::Stopped),
    #[error("the checkup failed: {0} check(s); see the failures above")]
    /// `sink doctor` found what fails a check.
    Unhealthy(usize),
    #[error(transparent)]
    /// The lake could not be read for the checkup.
    Read(#[from] lake::ReadError),
    #[error(transparent)]
    /// A plain Parquet prefix could not be converted to Delta tables.
    Conversion(#[from] lake::ConversionError),
    #[error(transparent)]
    /// An erasure could not finish.
    Erasure(#[from] lake::ErasureError),
    #[error(transparent)]
    /// The erasure ledger could not be read.
    Ledger(#[from] lake::LedgerError),
    #[error("`sink {0}` works on Delta tables: set LAKE_FORMAT=delta")]
    /// A Delta command on a plain Parquet lake.
    NotDelta(&'static str),
}

/// The librdkafka client's own errors are Kafka errors too: one variant.
impl From<rdkafka::error::KafkaError> for SinkError {
    fn from(error: rdkafka::error::KafkaError) -> Self {
        SinkError::Kafka(error.into())
    }
}

/// Runs the sink (or its subcommand) until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), SinkError> {
    if let Some(command) = &config.command {
        return commands::run(command, &config, &shutdown).await;
    }
    consume(config, shutdown).await
}

/// Consumes the enriched topic into the tables until `shutdown`, with the
/// operations endpoint and the scheduled upkeep beside it.
async fn consume(config: Config, shutdown: CancellationToken) -> Result<(), SinkError> {
    let tables = Arc::new(tables(&config, &shutdown).await?);
    until_the_store_answers(&shutdown, "creating the tables", || tables.create_missing()).await?;
    let readiness = runtime::Readiness::for_stage("sink");
    if config.create_topics {
        runtime::ensure_topics(
            &config.kafka,
            &[&config.enriched_topic, &config.dead_letter_topic],
        )
        .await?;
    }
    let erasures = lake::Erasures::load(tables.lake(), config.erasure_key.as_ref()).await?;
    let (consumer, instance_id) = consumer(&config).await?;
    let producer = config
        .kafka
        .producer(&[("acks", "all"), ("enable.idempotence", "true")])
        .await?;
    runtime::watch_broker(&config.kafka, readiness.clone(), shutdown.clone());
    let ops_shutdown = CancellationToken::new();
    let ops = tokio::spawn(runtime::serve(
        config.ops_listen,
        runtime::ops_router(readiness.clone()),
        ops_shutdown.clone(),
    ));
    erasures
        .clone()
        .keep_fresh(tables.lake().clone(), config.erasure_key.clone());
    telemetry::start_counters();
    tracing::info!(lake = tables.lake().describe(), format = ?config.lake_format, topic = %config.enriched_topic, instance = instance_id.as_deref().unwrap_or("(dynamic)"), "sink starting");
    let consumer = Arc::new(consumer);
    runtime::report_lag(consumer.clone(), "sink", ops_shutdown.clone());
    // One loaded state per table, shared by the commits and the scheduled
    // upkeep.
    for (job, every) in [
        (upkeep::Job::Upkeep, config.upkeep.compact_every),
        (upkeep::Job::Merge, config.upkeep.merge_every),
    ] {
        tokio::spawn(upkeep::run_every(
            tables.clone(),
            config.clone(),
            job,
            every,
            ops_shutdown.clone(),
        ));
    }
    let flusher = flush::Flusher {
        consumer: consumer.clone(),
        tables: tables.clone(),
        readiness: readiness.clone(),
        topic: config.enriched_topic.clone(),
        upload: config.upload(),
        compact_grace: config.upkeep.compact_grace,
    };
    let result = consumption::Consumption {
        consumer,
        producer,
        flusher,
        tables,
        config,
        readiness,
        erasures,
    }
    .run(shutdown)
    .await;
    ops_shutdown.cancel();
    if let Ok(Err(error)) = ops.await {
        tracing::warn!(%error, "operations endpoint failed");
    }
    tracing::info!("sink stopped");
    Ok(result?)
}

/// The group's consumer, committing offsets only by hand, and its static
/// member name when it has one.
async fn consumer(
    config: &Config,
) -> Result<(consumption::SinkConsumer, Option<String>), SinkError> {
    let (consumer_config, instance_id) = config.membership.consumer_config(
        &config.kafka,
        "sink",
        config.ops_listen,
        &[
            ("group.id", config.group_id.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            // Prefetched messages sit outside the memory budget: keep them
            // to 16 MiB rather than librdkafka's 64 MiB.
            ("queued.max.messages.kbytes", "16384"),
        ],
    )?;
    let consumer = consumer_config.create_with_context(runtime::RebalanceContext::new(
        config.kafka.context().await?,
    ))?;
    Ok((consumer, instance_id))
}
