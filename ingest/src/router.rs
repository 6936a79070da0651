//! The HTTP surface: `POST /webhooks/mobaro` (the default account) and
//! `POST /webhooks/mobaro/{account}`, plus the operations endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use schemas::{headers, EventKind, EventParseError, QuarantineReason, WebhookEvent};
use subtle::ConstantTimeEq;

use rdkafka::producer::Producer;

use crate::accounts::Verifiers;
use crate::publisher::{PublishError, Publisher, RawRecord};
use crate::quarantine::{Quarantine, QuarantinedRequest};
use crate::signature::{SignatureError, Verifier, SIGNATURE_HEADER};

/// Where Mobaro posts webhooks.
pub const WEBHOOK_PATH: &str = "/webhooks/mobaro";
/// Prefix of Kafka headers that carry forwarded request headers.
pub const FORWARDED_HEADER_PREFIX: &str = "http.";

/// Why a webhook was not accepted; each maps to one status code.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    /// The signature is missing, wrong or oversized.
    Signature(#[from] SignatureError),
    #[error("shared token header missing or wrong")]
    /// The shared token is missing or wrong.
    BadToken,
    #[error("body larger than {0} bytes")]
    /// The body is over the limit.
    TooLarge(usize),
    #[error("reading body: {0}")]
    /// The body could not be read.
    Unreadable(String),
    #[error(transparent)]
    /// Signed, but not the documented JSON.
    Malformed(EventParseError),
    #[error(transparent)]
    /// Signed and well-formed, with an unknown resource or event name.
    Unknown(EventParseError),
    #[error("event not stored: {0}")]
    /// The broker did not acknowledge in time; Mobaro retries.
    Unavailable(PublishError),
    #[error("the broker refuses this event for good: {0}")]
    /// The broker refuses the event for good.
    RefusedByBroker(PublishError),
}

impl From<PublishError> for Rejection {
    fn from(error: PublishError) -> Self {
        match &error {
            PublishError::Kafka(kafka) if runtime::is_permanent(kafka) => {
                Rejection::RefusedByBroker(error)
            }
            _ => Rejection::Unavailable(error),
        }
    }
}

impl Rejection {
    /// The HTTP status answered.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::Signature(_) | Rejection::BadToken => StatusCode::UNAUTHORIZED,
            Rejection::TooLarge(_) | Rejection::RefusedByBroker(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::Unreadable(_) | Rejection::Malformed(_) => StatusCode::BAD_REQUEST,
            Rejection::Unknown(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Rejection::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Why the request is quarantined; `None` for a broker that is only
    /// unavailable, which Mobaro's retry resolves.
    pub fn quarantine_reason(&self) -> Option<QuarantineReason> {
        Some(match self {
            Rejection::Signature(SignatureError::Missing) => QuarantineReason::MissingSignature,
            Rejection::Signature(SignatureError::Mismatch) => QuarantineReason::BadSignature,
            Rejection::Signature(SignatureError::Oversized) => QuarantineReason::OversizedSignature,
            Rejection::BadToken => QuarantineReason::BadToken,
            Rejection::TooLarge(_) => QuarantineReason::TooLarge,
            Rejection::Unreadable(_) => QuarantineReason::Unreadable,
            Rejection::Malformed(_) => QuarantineReason::Malformed,
            Rejection::Unknown(_) => QuarantineReason::UnknownName,
            Rejection::RefusedByBroker(_) => QuarantineReason::RefusedByBroker,
            Rejection::Unavailable(_) => return None,
        })
    }

    /// The outcome label in metrics and responses.
    pub fn reason(&self) -> &'static str {
        self.quarantine_reason()
            .map_or("broker_unavailable", QuarantineReason::as_str)
    }
}

impl From<EventParseError> for Rejection {
    fn from(error: EventParseError) -> Self {
        match error {
            EventParseError::UnknownResource(_) | EventParseError::UnknownEvent(_) => {
                Rejection::Unknown(error)
            }
            _ => Rejection::Malformed(error),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Json(serde_json::json!({ "error": self.to_string(), "reason": self.reason() }));
        let mut response = (status, body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Mobaro's "Additional headers": a header every genuine request carries.
#[derive(Clone)]
pub struct SharedToken {
    /// The header's name.
    pub header: HeaderName,
    /// Its expected value.
    pub value: String,
}

impl std::fmt::Debug for SharedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedToken({}: <redacted>)", self.header)
    }
}

/// Logs rejections at a bounded rate, so that a flood of junk cannot fill
/// the disk; what it holds back is counted in the next line it writes (and
/// every rejection is in `ingest_requests_total` and the quarantine).
pub struct RejectionLog {
    limit: runtime::TokenBucket,
    held_back: std::sync::atomic::AtomicU64,
}

impl Default for RejectionLog {
    fn default() -> Self {
        RejectionLog {
            limit: runtime::TokenBucket::new(10.0, 20),
            held_back: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl RejectionLog {
    fn write(&self, outcome: &str, remote: Option<SocketAddr>, rejection: &Rejection) {
        use std::sync::atomic::Ordering;
        if self.limit.try_acquire() {
            let not_logged = self.held_back.swap(0, Ordering::Relaxed);
            tracing::warn!(outcome, remote = ?remote, error = %rejection, not_logged, "webhook rejected");
        } else {
            self.held_back.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What every request handler shares.
pub struct AppState {
    /// Checks signatures, per account.
    pub verifiers: Verifiers,
    /// True only when started with the explicit insecure flag and no secret
    /// (the default account of the secret variables).
    pub accept_unsigned: bool,
    /// The shared token every genuine request carries, when configured.
    pub token: Option<SharedToken>,
    /// Request headers copied into the Kafka record as `http.<name>`.
    pub forward_headers: Vec<HeaderName>,
    /// Largest body read.
    pub max_body_bytes: usize,
    /// Produces accepted webhooks.
    pub publisher: Publisher,
    /// Keeps rejected requests.
    pub quarantine: Option<Quarantine>,
    /// Logs rejections at a bounded rate.
    pub rejection_log: RejectionLog,
}

impl AppState {
    /// Waits until every queued record (quarantine included) is acknowledged.
    pub fn flush(&self, timeout: Duration) {
        if let Err(error) = self.publisher.flush(timeout) {
            tracing::error!(%error, "flushing producer");
        }
        if let Some(quarantine) = &self.quarantine {
            if let Err(error) = quarantine.producer.flush(timeout) {
                tracing::error!(%error, "flushing quarantine producer");
            }
        }
    }
}

/// The webhook route over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(receive_default))
        .route(&format!("{WEBHOOK_PATH}/{{account}}"), post(receive_for))
        .with_state(state)
}

/// Counts requests in flight, also when the client goes away mid-request.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        crate::telemetry::requests_in_flight(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        crate::telemetry::requests_in_flight(-1.0);
    }
}

/// A webhook posted to the default account's path.
async fn receive_default(State(state): State<Arc<AppState>>, request: Request) -> Response {
    receive(state, schemas::DEFAULT_ACCOUNT.to_string(), request).await
}

/// A webhook posted to an account's path.
async fn receive_for(
    State(state): State<Arc<AppState>>,
    Path(account): Path<String>,
    request: Request,
) -> Response {
    receive(state, account, request).await
}

async fn receive(state: Arc<AppState>, account: String, request: Request) -> Response {
    let _in_flight = InFlight::enter();
    // An unknown account costs a map lookup: no body read, no signature
    // check, nothing kept.
    let Some(verifier) = state.verifiers.get(&account) else {
        crate::telemetry::request("unknown_account");
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": "unknown account", "reason": "unknown_account" })),
        )
            .into_response();
    };
    let remote = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (parts, body) = request.into_parts();
    let (body, result) = match read_body(body, &parts.headers, state.max_body_bytes).await {
        Ok(body) => {
            let result = accept(&state, &account, &verifier, &parts.headers, &body).await;
            (body, result)
        }
        Err(rejection) => (Vec::new(), Err(rejection)),
    };
    let outcome = match &result {
        Ok(_) => "accepted",
        Err(rejection) => rejection.reason(),
    };
    crate::telemetry::request(outcome);
    match result {
        Ok(event_id) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "event_id": event_id })),
        )
            .into_response(),
        Err(rejection) => {
            state.rejection_log.write(outcome, remote, &rejection);
            if let (Some(quarantine), Some(reason)) =
                (&state.quarantine, rejection.quarantine_reason())
            {
                quarantine.keep(QuarantinedRequest::new(
                    &account,
                    reason,
                    rejection.to_string(),
                    remote,
                    &parts.headers,
                    &quarantine.redact,
                    &body,
                    quarantine.body_limit,
                ));
            }
            rejection.into_response()
        }
    }
}

/// Reads the body up to `limit` bytes; a declared or actual excess is refused
/// without reading the rest.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Vec<u8>, Rejection> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Rejection::TooLarge(limit));
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(error) => {
            let too_large = std::error::Error::source(&error)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Err(Rejection::TooLarge(limit))
            } else {
                Err(Rejection::Unreadable(error.to_string()))
            }
        }
    }
}

fn token_matches(token: &SharedToken, headers: &HeaderMap) -> bool {
    headers
        .get(&token.header)
        .is_some_and(|v| bool::from(v.as_bytes().ct_eq(token.value.as_bytes())))
}

async fn accept(
    state: &AppState,
    account: &str,
    verifier: &Verifier,
    request_headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Rejection> {
    if let Some(token) = &state.token {
        if !token_matches(token, request_headers) {
            return Err(Rejection::BadToken);
        }
    }
    let signature_form = if state.accept_unsigned && account == schemas::DEFAULT_ACCOUNT {
        "unsigned"
    } else {
        let signature = request_headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok());
        let matched = verifier.verify(body, signature)?;
        crate::telemetry::signature_matched(matched.label());
        matched.label()
    };
    let event = WebhookEvent::from_json(body)?;
    if event.event == EventKind::Snapshot {
        // A backfill's kind, never a webhook's.
        return Err(Rejection::Unknown(EventParseError::UnknownEvent(
            event.event.to_string(),
        )));
    }
    let event_id = event.event_id_in(account);
    let raw_headers = headers::RawHeaders {
        event_id: event_id.to_string(),
        account: (account != schemas::DEFAULT_ACCOUNT).then(|| account.to_string()),
        received_at: Some(Utc::now()),
        signature_form: Some(signature_form.to_string()),
        replayed_at: None,
    }
    .encode();
    let forwarded: Vec<(String, String)> = state
        .forward_headers
        .iter()
        .filter_map(|name| {
            let value = request_headers.get(name)?.to_str().ok()?;
            Some((
                format!("{FORWARDED_HEADER_PREFIX}{name}"),
                value.to_string(),
            ))
        })
        .collect();
    let record_headers: Vec<(&str, &str)> = raw_headers
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(forwarded.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .collect();
    let started = Instant::now();
    state
        .publisher
        .publish(RawRecord {
            key: &schemas::object_key(account, &event.object_id),
            body,
            headers: &record_headers,
        })
        .await?;
    crate::telemetry::acknowledged(started.elapsed());
    Ok(event_id.to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::signature::{sign, Secret};

    const BODY: &str = r#"{"resource":"Results","event":"Created","objectId":"results/1-A","timestamp":"2025-01-27T10:12:44Z"}"#;

    /// A router whose broker never answers: nothing here may reach it but the
    /// 503 case.
    fn app() -> Router {
        app_with_token(None)
    }

    /// A publisher to a broker that never answers.
    fn unanswered_publisher() -> Publisher {
        let kafka = runtime::KafkaArgs {
            brokers: "127.0.0.1:9".into(),
            options: vec![],
            options_file: None,
            topic_partitions: 1,
            topic_replication: 1,
            msk_iam_region: None,
        };
        Publisher::new(
            &kafka,
            runtime::KafkaContext::default(),
            "raw",
            Duration::from_millis(300),
        )
        .expect("producer")
    }

    fn app_with_token(token: Option<SharedToken>) -> Router {
        let state = Arc::new(AppState {
            verifiers: Verifiers::fixed(
                [(
                    schemas::DEFAULT_ACCOUNT.to_string(),
                    Arc::new(Verifier::new(vec![Secret::new("s")], vec![])),
                )]
                .into(),
            ),
            accept_unsigned: false,
            token,
            forward_headers: vec![],
            max_body_bytes: 1024,
            publisher: unanswered_publisher(),
            quarantine: None,
            rejection_log: RejectionLog::default(),
        });
        router(state)
    }

    async fn post(body: &str, signature: Option<String>) -> Response {
        let mut request = Request::post(WEBHOOK_PATH).header("content-type", "application/json");
        if let Some(signature) = signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        app()
            .oneshot(request.body(Body::from(body.to_string())).expect("request"))
            .await
            .expect("infallible")
    }

    fn signed(body: &str) -> Option<String> {
        Some(hex::encode(sign(b"s", body.as_bytes())))
    }

    #[tokio::test]
    async fn each_account_is_verified_with_its_own_secrets_and_unknown_ones_are_404() {
        let verifier = |secret: &str| Arc::new(Verifier::new(vec![Secret::new(secret)], vec![]));
        let state = Arc::new(AppState {
            verifiers: Verifiers::fixed(
                [
                    ("park-a".to_string(), verifier("secret-a")),
                    ("park-b".to_string(), verifier("secret-b")),
                ]
                .into(),
            ),
            accept_unsigned: false,
            token: None,
            forward_headers: vec![],
            max_body_bytes: 1024,
            publisher: unanswered_publisher(),
            quarantine: None,
            rejection_log: RejectionLog::default(),
        });
        let app = router(state);
        let post = |path: &str, secret: &str| {
            let request = Request::post(path)
                .header(
                    SIGNATURE_HEADER,
                    hex::encode(sign(secret.as_bytes(), BODY.as_bytes())),
                )
                .body(Body::from(BODY))
                .expect("request");
            app.clone().oneshot(request)
        };
        let status = |response: Result<Response, _>| response.expect("infallible").status();
        // A's secret on B's path is refused; on A's own path it passes the
        // check (and meets the unreachable broker).
        let crossed = post(&format!("{WEBHOOK_PATH}/park-b"), "secret-a").await;
        assert_eq!(status(crossed), StatusCode::UNAUTHORIZED);
        let own = post(&format!("{WEBHOOK_PATH}/park-a"), "secret-a").await;
        assert_eq!(status(own), StatusCode::SERVICE_UNAVAILABLE);
        let unknown = post(&format!("{WEBHOOK_PATH}/park-c"), "secret-a").await;
        assert_eq!(status(unknown), StatusCode::NOT_FOUND);
        // Without a default account, the bare path is an unknown account.
        let bare = post(WEBHOOK_PATH, "secret-a").await;
        assert_eq!(status(bare), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn missing_or_wrong_signatures_get_401() {
        assert_eq!(post(BODY, None).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            post(BODY, Some("00".repeat(32))).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn verified_bodies_that_are_not_the_documented_json_get_400() {
        for body in ["{}", "not json", r#"{"resource":"Results"}"#] {
            assert_eq!(
                post(body, signed(body)).await.status(),
                StatusCode::BAD_REQUEST,
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn unknown_resource_or_event_names_get_422() {
        for body in [
            BODY.replace("Results", "Widgets"),
            BODY.replace("Created", "Exploded"),
        ] {
            let status = post(&body, signed(&body)).await.status();
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        }
    }

    #[tokio::test]
    async fn bodies_over_the_limit_get_413() {
        let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(2048));
        assert_eq!(
            post(&body, signed(&body)).await.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[tokio::test]
    async fn unreachable_broker_gets_503_with_retry_after_within_the_deadline() {
        let started = std::time::Instant::now();
        let response = post(BODY, signed(BODY)).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_missing_or_wrong_shared_token_gets_401() {
        let token = SharedToken {
            header: HeaderName::from_static("x-mobaro-token"),
            value: "t0k3n".into(),
        };
        for sent in [None, Some("wrong"), Some("t0k3n0"), Some("")] {
            let mut request =
                Request::post(WEBHOOK_PATH).header(SIGNATURE_HEADER, signed(BODY).expect("signed"));
            if let Some(sent) = sent {
                request = request.header("x-mobaro-token", sent);
            }
            let response = app_with_token(Some(token.clone()))
                .oneshot(request.body(Body::from(BODY)).expect("request"))
                .await
                .expect("infallible");
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{sent:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn arbitrary_requests_never_panic_or_fail_with_5xx_other_than_503(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
            signature in proptest::option::of("[ -~]{0,100}"),
            sign_it in proptest::prelude::any::<bool>(),
            content_type in "[ -~]{0,30}",
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let status = runtime.block_on(async {
                let mut request = Request::post(WEBHOOK_PATH).header("content-type", content_type.as_str());
                let signature = if sign_it { Some(hex::encode(sign(b"s", &body))) } else { signature };
                if let Some(signature) = signature {
                    request = request.header(SIGNATURE_HEADER, signature);
                }
                app().oneshot(request.body(Body::from(body.clone())).expect("request")).await.expect("infallible").status()
            });
            proptest::prop_assert!(!status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE, "{status}");
        }
    }

    #[tokio::test]
    async fn other_paths_and_methods_get_404_and_405() {
        let get = Request::get(WEBHOOK_PATH)
            .body(Body::empty())
            .expect("request");
        assert_eq!(
            app().oneshot(get).await.expect("ok").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        let other = Request::post("/elsewhere")
            .body(Body::empty())
            .expect("request");
        assert_eq!(
            app().oneshot(other).await.expect("ok").status(),
            StatusCode::NOT_FOUND
        );
    }
}
