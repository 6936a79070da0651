//! `/healthz`, `/readyz` and `/metrics`, served beside each stage's work.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use rdkafka::producer::Producer as _;
use tokio_util::sync::CancellationToken;

use crate::prometheus;
use crate::KafkaArgs;

/// Each condition's name and state: `Err` holds why it does not hold.
type Conditions = Vec<(String, Result<(), String>)>;

/// Named readiness conditions; the stage is ready when every one holds.
/// Each condition is also the gauge `{stage}_ready{check=…}` (1 or 0), for
/// alerts.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    conditions: Arc<Mutex<Conditions>>,
    notes: Arc<Mutex<Vec<String>>>,
    stage: &'static str,
}

impl Readiness {
    /// The readiness of `stage` (`ingest`, `enricher`, `sink`).
    pub fn for_stage(stage: &'static str) -> Readiness {
        Readiness {
            stage,
            ..Readiness::default()
        }
    }

    /// Records the state of check `name` (see [`crate::checks`]).
    pub fn set(&self, name: &str, state: Result<(), String>) {
        let ready = state.is_ok();
        let mut conditions = self.conditions.lock().unwrap_or_else(|p| p.into_inner());
        let changed = match conditions.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => std::mem::replace(&mut entry.1, state).is_ok() != ready,
            None => {
                conditions.push((name.to_string(), state));
                true
            }
        };
        // Callers set a check on every success (a hot path): the gauge is
        // touched only when the check flips.
        if changed && !self.stage.is_empty() {
            let value = if ready { 1.0 } else { 0.0 };
            metrics::gauge!(crate::telemetry::ready_metric(self.stage), "check" => name.to_string())
                .set(value);
        }
    }

    /// A standing remark shown in `/readyz`'s body (e.g. an insecure setting).
    pub fn note(&self, note: impl Into<String>) {
        self.notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(note.into());
    }

    /// Whether every check passes.
    pub fn is_ready(&self) -> bool {
        let conditions = self.conditions.lock().unwrap_or_else(|p| p.into_inner());
        conditions.iter().all(|(_, state)| state.is_ok())
    }

    fn report(&self) -> serde_json::Value {
        let conditions = self.conditions.lock().unwrap_or_else(|p| p.into_inner());
        let checks: serde_json::Map<String, serde_json::Value> = conditions
            .iter()
            .map(|(name, state)| {
                let value = match state {
                    Ok(()) => "ok".to_string(),
                    Err(e) => e.clone(),
                };
                (name.clone(), value.into())
            })
            .collect();
        let notes = self.notes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        serde_json::json!({
            "ready": conditions.iter().all(|(_, s)| s.is_ok()),
            "checks": checks,
            "notes": notes,
        })
    }
}

async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness.report()))
}

/// The operations routes, to be merged into a stage's router or served alone.
pub fn ops_router(readiness: Readiness) -> Router {
    let handle = prometheus();
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(move || async move { handle.render() }))
        .with_state(readiness)
}

/// Serves `router` on `addr` until `shutdown` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving operations endpoints");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Keeps the `broker` readiness condition up to date by asking for cluster
/// metadata every few seconds.
pub fn watch_broker(kafka: &KafkaArgs, readiness: Readiness, shutdown: CancellationToken) {
    let kafka = kafka.clone();
    tokio::spawn(async move {
        // A producer: its own thread answers librdkafka's requests for an
        // MSK IAM token while the probe waits.
        let producer = match kafka.producer(&[]).await {
            Ok(producer) => producer,
            Err(e) => {
                readiness.set(crate::checks::BROKER, Err(e.to_string()));
                return;
            }
        };
        loop {
            let probe = producer.clone();
            let state = tokio::task::spawn_blocking(move || {
                probe
                    .client()
                    .fetch_metadata(None, Duration::from_secs(3))
                    .map(|_| ())
                    .map_err(|e| format!("broker unreachable: {e}"))
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            readiness.set(crate::checks::BROKER, state);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    });
}
