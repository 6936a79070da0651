//! `enricher`: turns thin webhook events into full records from Mobaro's API.

mod accounts;
mod api_key;
pub mod backfill;
mod cache;
mod client;
mod config;
mod consumption;
mod enrichment;
mod pending;
mod replay;
mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::Producer;
use runtime::TokenBucket;
use tokio_util::sync::CancellationToken;

pub use client::{ClientError, Endpoint, FetchError, Fetched, MobaroClient};
pub use config::{ApiKey, Command, Config, ReplayArgs};
pub use telemetry::metric_names;

#[derive(Debug, thiserror::Error)]
/// Why the enricher stopped.
pub enum EnricherError {
    #[error(transparent)]
    /// The broker or the Kafka client failed.
    Kafka(#[from] runtime::KafkaError),
    #[error(transparent)]
    /// The API client could not be built.
    Client(#[from] ClientError),
    #[error(transparent)]
    /// An account cannot be served.
    Account(#[from] accounts::AccountError),
    #[error("no Mobaro API key: set MOBARO_API_KEY")]
    /// No API key was configured.
    NoApiKey,
    /// A backfill stopped.
    #[error(transparent)]
    Backfill(#[from] backfill::BackfillError),
    /// Consuming raw events failed for good.
    #[error(transparent)]
    Consumption(#[from] consumption::ConsumptionError),
    /// The lake of ERASURE_LEDGER cannot be opened.
    #[error("ERASURE_LEDGER: {0}")]
    LedgerLake(#[from] lake::LakeError),
    /// The erasure ledger cannot be read.
    #[error(transparent)]
    Ledger(#[from] lake::LedgerError),
}

impl runtime::Hint for EnricherError {
    fn hint(&self) -> Option<String> {
        match self {
            EnricherError::Backfill(backfill::BackfillError::Interrupted { .. }) => Some(
                "run the same `enricher backfill` command again: it resumes from the stored position".into(),
            ),
            _ => None,
        }
    }
}

/// The librdkafka client's own errors are Kafka errors too: one variant.
impl From<rdkafka::error::KafkaError> for EnricherError {
    fn from(error: rdkafka::error::KafkaError) -> Self {
        EnricherError::Kafka(error.into())
    }
}

/// Runs the enricher (or its subcommand) until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), EnricherError> {
    if let Some(command) = &config.command {
        return run_command(&config, command, &shutdown).await;
    }
    if config.accounts_file.is_none() && config.api_key.0.trim().is_empty() {
        return Err(EnricherError::NoApiKey);
    }
    let readiness = runtime::Readiness::for_stage("enricher");
    readiness.set(runtime::checks::MOBARO_API, Ok(()));
    let accounts = accounts::registry(&config, readiness.clone(), &shutdown)?;
    if config.create_topics {
        runtime::ensure_topics(
            &config.kafka,
            &[
                &config.raw_topic,
                &config.enriched_topic,
                &config.dead_letter_topic,
            ],
        )
        .await?;
    }
    let (consumer, instance_id) = consumer(&config).await?;
    let producer = enriched_producer(&config).await?;
    runtime::watch_broker(&config.kafka, readiness.clone(), shutdown.clone());
    let ops = tokio::spawn(runtime::serve(
        config.ops_listen,
        runtime::ops_router(readiness.clone()),
        shutdown.clone(),
    ));
    tracing::info!(raw = %config.raw_topic, enriched = %config.enriched_topic, enrich = ?config.enrich, concurrency = config.concurrency, instance = instance_id.as_deref().unwrap_or("(dynamic)"), "enricher starting");
    let consumer = Arc::new(consumer);
    runtime::report_lag(consumer.clone(), "enricher", shutdown.clone());
    let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let (topic, max_in_flight, drain_timeout) = (
        config.raw_topic.clone(),
        config.max_in_flight.max(1),
        config.drain_timeout,
    );
    let erasures = erasures(&config).await?;
    let enricher = Arc::new(enrichment::Enricher::new(
        accounts,
        producer.clone(),
        config,
        readiness,
        done_tx,
        stop.clone(),
        erasures,
    ));
    let consumption = consumption::Consumption {
        consumer,
        done: done_rx,
        stop,
        topic,
        max_in_flight,
        drain_timeout,
        key_refused: enricher.key_refused(),
        enricher,
    };
    consumption.run(shutdown.clone()).await?;
    if let Err(error) = producer.flush(Duration::from_secs(10)) {
        tracing::error!(%error, "flushing producer at shutdown");
    }
    shutdown.cancel();
    if let Ok(Err(error)) = ops.await {
        tracing::warn!(%error, "operations endpoint failed");
    }
    tracing::info!("enricher stopped");
    Ok(())
}

/// The erasure ledger, read and kept fresh, when `ERASURE_LEDGER` names a
/// lake.
async fn erasures(config: &Config) -> Result<Option<Arc<lake::Erasures>>, EnricherError> {
    let Some(location) = &config.erasure_ledger else {
        return Ok(None);
    };
    let lake = lake::Lake::open(location)?;
    let erasures = lake::Erasures::load(&lake, config.erasure_key.as_ref()).await?;
    erasures
        .clone()
        .keep_fresh(lake, config.erasure_key.clone());
    Ok(Some(erasures))
}

/// The enriched record `value` as the ledger lets it be produced: None for
/// a forgotten person's own User record.
pub(crate) fn screened(erasures: Option<&lake::Erasures>, value: Vec<u8>) -> Option<Vec<u8>> {
    let Some(erasures) = erasures else {
        return Some(value);
    };
    match erasures.current().0.screen(&value) {
        lake::Screened::Clean => Some(value),
        lake::Screened::Dropped => {
            telemetry::erased_record("dropped");
            None
        }
        lake::Screened::Erased(erased) => {
            telemetry::erased_record("erased");
            Some(erased)
        }
    }
}

/// Runs a one-off command to its end.
async fn run_command(
    config: &Config,
    command: &Command,
    shutdown: &CancellationToken,
) -> Result<(), EnricherError> {
    match command {
        Command::ReplayDeadLetters(args) => {
            for (outcome, count) in replay::replay(config, args).await? {
                println!("{outcome}: {count}");
            }
        }
        Command::Backfill(args) => {
            if config.accounts_file.is_none() && config.api_key.0.trim().is_empty() {
                return Err(EnricherError::NoApiKey);
            }
            let settings = accounts::settings_of(config, &args.account)?;
            let account = accounts::account(config, &settings)?;
            let client = account.client.with_rate_limit(Arc::new(args.rate_share()));
            let producer = enriched_producer(config).await?;
            let erasures = erasures(config).await?;
            let target = backfill::Target {
                erasures: erasures.as_deref(),
                account: &args.account,
                kafka: &config.kafka,
                enriched_topic: &config.enriched_topic,
                create_topics: config.create_topics,
                concurrency: config.concurrency,
                client: &client,
                producer: &producer,
            };
            let mut skipped = 0;
            for (resource, loaded) in backfill::backfill(&target, args, shutdown).await? {
                println!("{resource}: {loaded}");
                skipped += loaded.skipped;
            }
            if skipped > 0 {
                return Err(backfill::BackfillError::Skipped { items: skipped }.into());
            }
        }
    }
    Ok(())
}

/// The raw-topic consumer: offsets stored by hand once an event is done,
/// committed in the background; its static-membership id, if any.
async fn consumer(
    config: &Config,
) -> Result<(consumption::EnricherConsumer, Option<String>), EnricherError> {
    let (consumer_config, instance_id) = config.membership.consumer_config(
        &config.kafka,
        "enricher",
        config.ops_listen,
        &[
            ("group.id", config.group_id.as_str()),
            ("enable.auto.commit", "true"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("auto.commit.interval.ms", "1000"),
        ],
    )?;
    let consumer = consumer_config.create_with_context(runtime::RebalanceContext::new(
        config.kafka.context().await?,
    ))?;
    Ok((consumer, instance_id))
}

/// The producer of enriched records: acknowledged by every replica,
/// idempotent.
pub(crate) async fn enriched_producer(
    config: &Config,
) -> Result<runtime::Producer, runtime::KafkaError> {
    config
        .kafka
        .producer(&[
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("linger.ms", "5"),
        ])
        .await
}

/// The API client of `base` and `key` with the configured retries,
/// taking its tokens from `limit` when given.
pub(crate) fn api_client(
    config: &Config,
    base: url::Url,
    key: ApiKey,
    limit: Option<TokenBucket>,
) -> Result<MobaroClient, ClientError> {
    let client = MobaroClient::new(
        Endpoint {
            base,
            key,
            path_template: config.path_template.clone(),
            timeout: config.api_timeout,
            max_body: config.api_max_body,
            allow_insecure_http: config.allow_insecure_http,
        },
        runtime::Retry::forever(config.backoff, config.backoff * 16)
            .with_attempts(config.max_attempts.max(1))
            .with_asked_waits_up_to(config.api_max_retry_after),
    )?;
    Ok(match limit {
        Some(limit) => client.with_rate_limit(Arc::new(limit)),
        None => client,
    })
}
