//! Mobaro's REST API: `GET /api/customers/{collection}/{id}` with `x-api-key`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::records;

#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// Address to serve the API on.
    #[arg(long, env = "MOBARO_SIM_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// The API key clients must send in `x-api-key`.
    #[arg(
        long,
        env = "MOBARO_API_KEY",
        default_value = "sim-api-key",
        hide_env_values = true
    )]
    pub api_key: String,
    /// Delay added to every API answer, to model a slow API.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    pub latency: Duration,
}

struct ApiState {
    args: ApiArgs,
    requests: AtomicU64,
}

pub fn router(args: ApiArgs) -> Router {
    let state = Arc::new(ApiState {
        args,
        requests: AtomicU64::new(0),
    });
    Router::new()
        .route("/api/customers/{collection}/{id}", get(fetch))
        .route("/sim/stats", get(stats))
        .with_state(state)
}

async fn stats(State(state): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    Json(json!({ "requests": state.requests.load(Ordering::Relaxed) }))
}

async fn fetch(
    State(state): State<Arc<ApiState>>,
    Path((collection, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    state.requests.fetch_add(1, Ordering::Relaxed);
    if !state.args.latency.is_zero() {
        tokio::time::sleep(state.args.latency).await;
    }
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if key != Some(state.args.api_key.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Unauthorized"})),
        )
            .into_response();
    }
    match records::record(&collection, &id) {
        Some(record) => Json(record).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "Not found"}))).into_response(),
    }
}

pub async fn serve(args: ApiArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "mobaro api simulator listening");
    axum::serve(listener, router(args))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
