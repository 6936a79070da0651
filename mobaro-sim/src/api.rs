//! Mobaro's REST API: `GET /api/customers/{collection}/{id}` with `x-api-key`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::listing::{Catalogue, ListFaults};
use crate::records;

#[derive(Debug, Clone, clap::Args)]
/// How the simulated API serves.
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
    /// Records per collection that the list endpoints serve (ids as the
    /// webhook sender makes them: `users/1000-A`, `users/1001-B`, ...).
    #[arg(long, env = "MOBARO_SIM_OBJECTS", default_value_t = 1000)]
    pub objects: u32,
    /// The end of the park's history: `now` (a park operating today), or
    /// an ISO-8601 instant. By default a history across 2025.
    #[arg(long, env = "MOBARO_SIM_ANCHOR", value_parser = parse_anchor)]
    pub anchor: Option<chrono::DateTime<chrono::Utc>>,
    /// How many days the park's history reaches back from the anchor.
    #[arg(long, env = "MOBARO_SIM_HISTORY_DAYS", default_value_t = 300)]
    pub history_days: u32,
}

fn parse_anchor(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if text.eq_ignore_ascii_case("now") {
        return Ok(chrono::Utc::now());
    }
    text.parse()
        .map_err(|_| format!("{text:?} is neither `now` nor an ISO-8601 instant"))
}

impl ApiArgs {
    /// The park the records describe.
    pub fn park(&self) -> records::Park {
        records::Park {
            anchor: self.anchor.unwrap_or(records::Park::default().anchor),
            history_days: self.history_days,
        }
    }
}

/// Faults the API injects, set at run time with `POST /sim/faults`.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
pub struct Faults {
    /// Answer requests with this status instead of the record...
    pub status: Option<u16>,
    /// ...this many times (unlimited when absent).
    pub count: Option<u64>,
    /// `Retry-After` seconds sent with the injected status.
    pub retry_after: Option<u64>,
    /// Ids answered 404, as if deleted.
    #[serde(default)]
    pub not_found: Vec<String>,
    /// Extra delay per request, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Ids answered 403, as if the key may not read them.
    #[serde(default)]
    pub forbidden: Vec<String>,
    /// Ids whose record carries `padding` this many bytes long.
    #[serde(default)]
    pub padded: Vec<String>,
    #[serde(default)]
    /// Bytes of padding in the records of `padded`.
    pub padding_bytes: usize,
    /// Answer every n-th request with the next of `every_statuses` (429
    /// answers carry `Retry-After: 1`).
    pub every: Option<u64>,
    #[serde(default)]
    /// Statuses the `every` fault answers in turn.
    pub every_statuses: Vec<u16>,
    /// Ids answered with a redirect to `redirect_to` (another origin)...
    #[serde(default)]
    pub redirected: Vec<String>,
    /// ...this base URL, followed by the request's path.
    pub redirect_to: Option<String>,
    /// Ids answered 429 once each, with `Retry-After: retry_after` seconds.
    #[serde(default)]
    pub throttled: Vec<String>,
    /// Records of the listed collection edited before each list request is
    /// answered, as if people worked in Mobaro while a client scans.
    #[serde(default)]
    pub touch_per_list: u64,
    /// Results served as after a change of Mobaro's API nobody announced:
    /// the checklist's `name` is called `title`, and a field `shift`
    /// appears.
    #[serde(default)]
    pub drifted_results: bool,
    /// How the list endpoints bend the documented paging.
    #[serde(default)]
    pub listing: ListFaults,
}

/// When the first, the second and the latest list request arrived: the
/// first answer builds the catalogue, so a client's pace shows from the
/// second on.
#[derive(Clone, Copy)]
struct ListWindow {
    first: std::time::Instant,
    second: Option<std::time::Instant>,
    last: std::time::Instant,
}

struct ApiState {
    args: ApiArgs,
    requests: AtomicU64,
    list_requests: AtomicU64,
    /// When the first and the latest list request arrived.
    list_window: Mutex<Option<ListWindow>>,
    faults: Mutex<Faults>,
    catalogue: Catalogue,
}

/// The simulated API's routes.
pub fn router(args: ApiArgs) -> Router {
    let state = Arc::new(ApiState {
        catalogue: Catalogue::new(args.objects, args.park()),
        args,
        requests: AtomicU64::new(0),
        list_requests: AtomicU64::new(0),
        list_window: Mutex::new(None),
        faults: Mutex::new(Faults::default()),
    });
    Router::new()
        .route("/api/customers/{collection}", get(list))
        .route("/api/customers/{collection}/{id}", get(fetch))
        .route("/sim/stats", get(stats))
        .route("/sim/faults", axum::routing::post(set_faults))
        .route("/sim/touch", axum::routing::post(touch))
        .with_state(state)
}

async fn stats(State(state): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    let window = *state.list_window.lock().unwrap_or_else(|p| p.into_inner());
    Json(json!({
        "requests": state.requests.load(Ordering::Relaxed),
        "list_requests": state.list_requests.load(Ordering::Relaxed),
        "list_window_seconds": window.map_or(0.0, |w| (w.last - w.first).as_secs_f64()),
        "list_window_after_first_seconds": window
            .and_then(|w| w.second.map(|second| (w.last - second).as_secs_f64()))
            .unwrap_or(0.0),
    }))
}

async fn set_faults(State(state): State<Arc<ApiState>>, Json(faults): Json<Faults>) -> StatusCode {
    *state.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    StatusCode::NO_CONTENT
}

/// The injected answer for this request, if any.
fn injected(state: &ApiState, collection: &str, id: &str) -> (Option<Response>, Duration) {
    let mut faults = state.faults.lock().unwrap_or_else(|p| p.into_inner());
    let latency = Duration::from_millis(faults.latency_ms);
    let full_id = records::canonical_id(collection, id);
    let listed = |ids: &[String]| ids.iter().any(|n| *n == full_id || n == id);
    if listed(&faults.not_found) {
        return (
            Some((StatusCode::NOT_FOUND, Json(json!({"message": "Not found"}))).into_response()),
            latency,
        );
    }
    if listed(&faults.forbidden) {
        return (
            Some((StatusCode::FORBIDDEN, Json(json!({"message": "Forbidden"}))).into_response()),
            latency,
        );
    }
    if let (true, Some(to)) = (listed(&faults.redirected), &faults.redirect_to) {
        let location = format!(
            "{}/api/customers/{collection}/{id}",
            to.trim_end_matches('/')
        );
        let mut response = StatusCode::FOUND.into_response();
        if let Ok(location) = location.parse() {
            response.headers_mut().insert("location", location);
        }
        return (Some(response), latency);
    }
    if let Some(index) = faults
        .throttled
        .iter()
        .position(|n| *n == full_id || n == id)
    {
        faults.throttled.remove(index);
        let response = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"message": "Too many requests"})),
        )
            .into_response();
        let seconds = faults.retry_after.unwrap_or(1);
        return (Some(with_retry_after(response, seconds)), latency);
    }
    if let Some(every) = faults.every.filter(|n| *n > 0) {
        let number = state.requests.load(Ordering::Relaxed);
        if number.is_multiple_of(every) && !faults.every_statuses.is_empty() {
            let round = (number / every) as usize;
            let status = faults.every_statuses[round % faults.every_statuses.len()];
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut response = (status, Json(json!({"message": "injected fault"}))).into_response();
            if status == StatusCode::TOO_MANY_REQUESTS {
                response = with_retry_after(response, 1);
            }
            return (Some(response), latency);
        }
    }
    let Some(status) = faults.status else {
        return (None, latency);
    };
    match faults.count {
        Some(0) => return (None, latency),
        Some(n) => faults.count = Some(n - 1),
        None => {}
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(json!({"message": "injected fault"}))).into_response();
    if let Some(seconds) = faults.retry_after {
        response = with_retry_after(response, seconds);
    }
    (Some(response), latency)
}

/// `response` with `Retry-After: seconds`.
fn with_retry_after(mut response: Response, seconds: u64) -> Response {
    response
        .headers_mut()
        .insert("retry-after", axum::http::HeaderValue::from(seconds));
    response
}

/// What `POST /sim/touch` edits.
#[derive(serde::Deserialize)]
struct Touch {
    collection: String,
    count: u64,
    /// Every touched record gets one and the same update time.
    #[serde(default)]
    same_time: bool,
}

/// Edits records now, as someone working in Mobaro would; answers their ids.
async fn touch(State(state): State<Arc<ApiState>>, Json(touch): Json<Touch>) -> Json<Vec<String>> {
    Json(
        state
            .catalogue
            .touch(&touch.collection, touch.count, touch.same_time),
    )
}

/// Counts the request, waits the latency, and answers an injected fault or
/// a wrong key; `None` lets the request through.
async fn admit(
    state: &ApiState,
    collection: &str,
    id: &str,
    headers: &HeaderMap,
) -> Option<Response> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let (fault, extra_latency) = injected(state, collection, id);
    let latency = state.args.latency + extra_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if fault.is_some() {
        return fault;
    }
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if key != Some(state.args.api_key.as_str()) {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"message": "Unauthorized"})),
            )
                .into_response(),
        );
    }
    None
}

async fn fetch(
    State(state): State<Arc<ApiState>>,
    Path((collection, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = admit(&state, &collection, &id, &headers).await {
        return refused;
    }
    match state.catalogue.record(&collection, &id) {
        Some(mut record) => {
            let faults = state
                .faults
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let full_id = records::canonical_id(&collection, &id);
            if faults.padded.iter().any(|n| *n == full_id || *n == id) {
                record["padding"] = "x".repeat(faults.padding_bytes).into();
            }
            if faults.drifted_results && collection == "results" {
                records::drift(&mut record);
            }
            Json(record).into_response()
        }
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "Not found"}))).into_response(),
    }
}

async fn list(
    State(state): State<Arc<ApiState>>,
    Path(collection): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    state.list_requests.fetch_add(1, Ordering::Relaxed);
    {
        let now = std::time::Instant::now();
        let mut window = state.list_window.lock().unwrap_or_else(|p| p.into_inner());
        *window = Some(match *window {
            None => ListWindow {
                first: now,
                second: None,
                last: now,
            },
            Some(w) => ListWindow {
                first: w.first,
                second: w.second.or(Some(now)),
                last: now,
            },
        });
    }
    if let Some(refused) = admit(&state, &collection, "", &headers).await {
        return refused;
    }
    let touch = state
        .faults
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .touch_per_list;
    let _ = state.catalogue.touch(&collection, touch, false);
    let listing = state
        .faults
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .listing
        .clone();
    match state.catalogue.page(&collection, &query, &listing) {
        Ok(page) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            page,
        )
            .into_response(),
        Err(message) => {
            (StatusCode::BAD_REQUEST, Json(json!({ "message": message }))).into_response()
        }
    }
}

/// Serves the simulated API until the process ends.
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
