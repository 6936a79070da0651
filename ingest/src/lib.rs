//! `ingest`: verifies Mobaro's signed webhooks and produces them to the raw topic,
//! answering 202 only after the broker acknowledged the event.

mod config;
mod publisher;
mod router;
pub mod signature;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use publisher::{PublishError, Publisher};
pub use router::{router, AppState, Rejection, SIGNATURE_HEADER, WEBHOOK_PATH};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no webhook secret configured: set MOBARO_WEBHOOK_SECRETS or MOBARO_WEBHOOK_SECRETS_FILE, or pass --insecure-accept-unsigned to accept unsigned webhooks")]
    NoSecret,
    #[error("reading webhook secrets: {0}")]
    Secrets(#[source] std::io::Error),
    #[error(transparent)]
    Kafka(#[from] runtime::KafkaError),
    #[error("creating kafka producer: {0}")]
    Producer(#[from] rdkafka::error::KafkaError),
    #[error("serving http: {0}")]
    Serve(#[source] std::io::Error),
}

/// Runs the receiver until `shutdown` is cancelled, then finishes the requests
/// in flight and flushes the producer.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), IngestError> {
    let secrets = config.secrets().map_err(IngestError::Secrets)?;
    let readiness = runtime::Readiness::default();
    if secrets.is_empty() {
        if !config.insecure_accept_unsigned {
            return Err(IngestError::NoSecret);
        }
        tracing::warn!("no webhook secret configured: accepting unsigned webhooks from anyone");
        readiness.note("insecure: webhook signatures are not verified");
    }
    if config.create_topics {
        runtime::ensure_topics(&config.kafka, &[&config.raw_topic]).await?;
    }
    let publisher = Publisher::new(&config.kafka, &config.raw_topic, config.ack_timeout)?;
    runtime::watch_broker(
        config.kafka.client_config(&[])?,
        readiness.clone(),
        shutdown.clone(),
    );

    let state = Arc::new(AppState {
        accept_unsigned: secrets.is_empty(),
        verifier: signature::Verifier::new(secrets, config.signature_forms.clone()),
        publisher: publisher.clone(),
    });
    let app = router(state, config.max_body_bytes).merge(runtime::ops_router(readiness));
    tracing::info!(listen = %config.listen, topic = %config.raw_topic, "ingest starting");
    runtime::serve(config.listen, app, shutdown)
        .await
        .map_err(IngestError::Serve)?;
    if let Err(error) = publisher.flush(Duration::from_secs(10)) {
        tracing::error!(%error, "flushing producer at shutdown");
    }
    tracing::info!("ingest stopped");
    Ok(())
}
