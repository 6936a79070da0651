//! `ingest`: verifies Mobaro's signed webhooks and produces them to the raw topic,
//! answering 202 only after the broker acknowledged the event.

mod accounts;
mod config;
mod publisher;
mod quarantine;
mod replay;
mod router;
pub mod signature;
mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::http::{header, HeaderName, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

pub use accounts::Verifiers;
pub use config::{Command, Config, ReplayArgs};
pub use publisher::{PublishError, Publisher};
pub use quarantine::QuarantinedRequest;
pub use replay::{replay, ReplayOutcome, ReplayReport};
pub use router::{router, AppState, Rejection, SharedToken, FORWARDED_HEADER_PREFIX, WEBHOOK_PATH};
pub use telemetry::metric_names;

#[derive(Debug, thiserror::Error)]
/// Why ingest stopped or did not start.
pub enum IngestError {
    #[error("no webhook secret configured: set MOBARO_WEBHOOK_SECRETS or MOBARO_WEBHOOK_SECRETS_FILE, or pass --insecure-accept-unsigned to accept unsigned webhooks")]
    /// No webhook secret, and no explicit insecure flag.
    NoSecret,
    #[error(transparent)]
    /// The accounts file could not be read.
    Accounts(#[from] runtime::accounts::AccountsError),
    #[error("reading webhook secrets: {0}")]
    /// The secrets file could not be read.
    Secrets(#[source] std::io::Error),
    #[error("invalid header name {0:?}")]
    /// A configured header name is not a valid HTTP header name.
    HeaderName(String),
    #[error("header {0:?} carries credentials and is never forwarded into Kafka: remove it from INGEST_FORWARD_HEADERS")]
    /// A header that carries credentials was listed for forwarding.
    CredentialHeader(String),
    #[error(transparent)]
    /// The broker or the Kafka client failed.
    Kafka(#[from] runtime::KafkaError),
    #[error(transparent)]
    /// Publishing a replayed request failed.
    Publish(#[from] PublishError),
    #[error("loading tls certificate or key: {0}")]
    /// The TLS certificate or key could not be loaded.
    Tls(#[source] std::io::Error),
    #[error("serving http: {0}")]
    /// The HTTP server failed.
    Serve(#[source] std::io::Error),
}

impl runtime::Hint for IngestError {}

/// The librdkafka client's own errors are Kafka errors too: one variant.
impl From<rdkafka::error::KafkaError> for IngestError {
    fn from(error: rdkafka::error::KafkaError) -> Self {
        IngestError::Kafka(error.into())
    }
}

fn header_name(name: &str) -> Result<HeaderName, IngestError> {
    HeaderName::try_from(name.trim()).map_err(|_| IngestError::HeaderName(name.to_string()))
}

/// Request headers that carry credentials: forwarding them would copy the
/// credentials into Kafka, and from there into the dead-letter topic.
const CREDENTIAL_HEADERS: [&str; 7] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-webhook-signature",
    "x-amz-security-token",
];

/// The configured headers to forward; any that carries credentials (the
/// shared-token header included) is a configuration error.
fn forwardable(config: &Config) -> Result<Vec<axum::http::HeaderName>, IngestError> {
    let token = config
        .shared_token_header
        .as_deref()
        .map(|h| h.trim().to_ascii_lowercase());
    config
        .forward_headers
        .iter()
        .map(|h| h.trim())
        .filter(|h| !h.is_empty())
        .map(|h| {
            let lower = h.to_ascii_lowercase();
            if CREDENTIAL_HEADERS.contains(&lower.as_str())
                || token.as_deref() == Some(lower.as_str())
            {
                return Err(IngestError::CredentialHeader(h.to_string()));
            }
            header_name(h)
        })
        .collect()
}

/// Builds the application from its configuration: verification, the producer,
/// quarantine and the request limits.
pub async fn app(
    config: &Config,
    readiness: &runtime::Readiness,
    shutdown: &CancellationToken,
) -> Result<(Router, Arc<AppState>), IngestError> {
    let (verifiers, accept_unsigned) = verifiers(config, readiness, shutdown)?;
    let token = match (&config.shared_token_header, &config.shared_token) {
        (Some(name), Some(value)) => Some(SharedToken {
            header: header_name(name)?,
            value: value.clone(),
        }),
        _ => None,
    };
    let quarantine = quarantine::Quarantine {
        producer: config
            .kafka
            .producer(&[("acks", "all"), ("enable.idempotence", "true")])
            .await?,
        topic: config.quarantine_topic.clone(),
        limit: runtime::TokenBucket::new(config.quarantine_rate, config.quarantine_burst),
        body_limit: config.quarantine_body_bytes,
        redact: token.iter().map(|t| t.header.to_string()).collect(),
    };
    let state = Arc::new(AppState {
        accept_unsigned,
        verifiers,
        token,
        forward_headers: forwardable(config)?,
        max_body_bytes: config.max_body_bytes,
        publisher: Publisher::new(
            &config.kafka,
            config.kafka.context().await?,
            &config.raw_topic,
            config.ack_timeout,
        )?,
        quarantine: Some(quarantine),
        rejection_log: router::RejectionLog::default(),
    });
    let limits = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
            telemetry::request("overloaded");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
            )
                .into_response()
        }))
        .load_shed()
        .concurrency_limit(config.max_concurrent_requests);
    let router = router(state.clone())
        .layer(limits)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .merge(runtime::ops_router(readiness.clone()));
    Ok((router, state))
}

/// The accounts' verifiers: those of the accounts file, following it, or
/// the one default account of the secret variables; and whether unsigned
/// webhooks are accepted (the default account, with no secret and the
/// explicit insecure flag).
fn verifiers(
    config: &Config,
    readiness: &runtime::Readiness,
    shutdown: &CancellationToken,
) -> Result<(accounts::Verifiers, bool), IngestError> {
    if let Some(path) = &config.accounts_file {
        let initial = runtime::accounts::load(path)?;
        tracing::info!(accounts = ?initial.ids(), "serving the accounts of the accounts file");
        let verifiers = accounts::Verifiers::following(
            path.clone(),
            initial,
            config.signature_forms.clone(),
            shutdown.clone(),
        );
        return Ok((verifiers, false));
    }
    let secrets = config.secrets().map_err(IngestError::Secrets)?;
    if secrets.is_empty() {
        if !config.insecure_accept_unsigned {
            return Err(IngestError::NoSecret);
        }
        tracing::warn!("no webhook secret configured: accepting unsigned webhooks from anyone");
        readiness.note("insecure: webhook signatures are not verified");
    }
    let accept_unsigned = secrets.is_empty();
    let verifier = signature::Verifier::new(secrets, config.signature_forms.clone());
    let by_account = [(schemas::DEFAULT_ACCOUNT.to_string(), Arc::new(verifier))].into();
    Ok((accounts::Verifiers::fixed(by_account), accept_unsigned))
}

/// Runs the receiver until `shutdown` is cancelled, then finishes the requests
/// in flight and flushes the producer.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), IngestError> {
    if let Some(Command::Replay(args)) = &config.command {
        let report = replay(&config, args).await?;
        for (outcome, count) in &report.outcomes {
            println!("{outcome}: {count}");
        }
        return Ok(());
    }
    let readiness = runtime::Readiness::for_stage("ingest");
    if config.create_topics {
        runtime::ensure_topics(
            &config.kafka,
            &[&config.raw_topic, &config.quarantine_topic],
        )
        .await?;
    }
    let (app, state) = app(&config, &readiness, &shutdown).await?;
    runtime::watch_broker(&config.kafka, readiness.clone(), shutdown.clone());
    tracing::info!(listen = %config.listen, topic = %config.raw_topic, tls = config.tls_cert.is_some(), "ingest starting");
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(IngestError::Tls)?;
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                stopper.graceful_shutdown(Some(Duration::from_secs(30)));
            });
            axum_server::bind_rustls(config.listen, tls)
                .handle(handle)
                .serve(service)
                .await
                .map_err(IngestError::Serve)?;
        }
        _ => {
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .map_err(IngestError::Serve)?;
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
                .map_err(IngestError::Serve)?;
        }
    }
    tracing::info!("ingest stopped accepting; flushing");
    state.flush(Duration::from_secs(10));
    tracing::info!("ingest stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn forwarding(args: &[&str]) -> Result<Vec<String>, IngestError> {
        let mut all = vec!["ingest"];
        all.extend_from_slice(args);
        let config = Config::try_parse_from(all).expect("parses");
        Ok(forwardable(&config)?
            .into_iter()
            .map(|h| h.to_string())
            .collect())
    }

    #[test]
    fn credentials_are_never_forwarded() {
        assert_eq!(
            forwarding(&["--forward-header", "User-Agent,x-request-id"]).expect("allowed"),
            ["user-agent", "x-request-id"]
        );
        for header in [
            "Authorization",
            "cookie",
            "X-Webhook-Signature",
            "x-api-key",
        ] {
            assert!(
                matches!(
                    forwarding(&["--forward-header", header]),
                    Err(IngestError::CredentialHeader(_))
                ),
                "{header}"
            );
        }
        let token = [
            "--shared-token-header",
            "X-Park-Token",
            "--shared-token",
            "s",
            "--forward-header",
            "x-park-token",
        ];
        assert!(matches!(
            forwarding(&token),
            Err(IngestError::CredentialHeader(_))
        ));
    }
}
