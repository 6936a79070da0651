//! The HTTP surface: `POST /webhooks/mobaro` plus the operations endpoints.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use schemas::{headers, EventParseError, WebhookEvent};

use crate::publisher::{PublishError, Publisher, RawRecord};
use crate::signature::{SignatureError, Verifier};

pub const WEBHOOK_PATH: &str = "/webhooks/mobaro";
pub const SIGNATURE_HEADER: &str = "x-webhook-signature";

/// Why a webhook was not accepted; each maps to one status code.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Malformed(EventParseError),
    #[error(transparent)]
    Unknown(EventParseError),
    #[error("event not stored: {0}")]
    Unavailable(#[from] PublishError),
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::Signature(_) => StatusCode::UNAUTHORIZED,
            Rejection::Malformed(_) => StatusCode::BAD_REQUEST,
            Rejection::Unknown(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Rejection::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn outcome(&self) -> &'static str {
        match self {
            Rejection::Signature(SignatureError::Missing) => "missing_signature",
            Rejection::Signature(SignatureError::Mismatch) => "bad_signature",
            Rejection::Malformed(_) => "malformed",
            Rejection::Unknown(_) => "unknown_name",
            Rejection::Unavailable(_) => "broker_unavailable",
        }
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
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        let mut response = (status, body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

pub struct AppState {
    pub verifier: Verifier,
    /// True only when started with the explicit insecure flag and no secret.
    pub accept_unsigned: bool,
    pub publisher: Publisher,
}

pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(receive))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn receive(
    State(state): State<Arc<AppState>>,
    request_headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = accept(&state, &request_headers, &body).await;
    let outcome = match &result {
        Ok(_) => "accepted",
        Err(rejection) => rejection.outcome(),
    };
    metrics::counter!("ingest_requests_total", "outcome" => outcome).increment(1);
    match result {
        Ok(event_id) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "event_id": event_id })),
        )
            .into_response(),
        Err(rejection) => {
            tracing::warn!(outcome, error = %rejection, "webhook rejected");
            rejection.into_response()
        }
    }
}

async fn accept(
    state: &AppState,
    request_headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Rejection> {
    let signature_form = if state.accept_unsigned {
        "unsigned"
    } else {
        let signature = request_headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok());
        let matched = state.verifier.verify(body, signature)?;
        metrics::counter!("ingest_signature_matches_total", "form" => matched.label()).increment(1);
        matched.label()
    };
    let event = WebhookEvent::from_json(body)?;
    let event_id = event.event_id();
    let received_at = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    let started = Instant::now();
    state
        .publisher
        .publish(RawRecord {
            key: &event.object_id,
            body,
            headers: &[
                (headers::EVENT_ID, event_id.as_str()),
                (headers::RECEIVED_AT, &received_at),
                (headers::SIGNATURE_FORM, signature_form),
            ],
        })
        .await?;
    metrics::histogram!("ingest_ack_seconds").record(started.elapsed().as_secs_f64());
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
        let kafka = runtime::KafkaArgs {
            brokers: "127.0.0.1:9".into(),
            options: vec![],
            topic_partitions: 1,
            topic_replication: 1,
        };
        let state = Arc::new(AppState {
            verifier: Verifier::new(vec![Secret::new("s")], vec![]),
            accept_unsigned: false,
            publisher: Publisher::new(&kafka, "raw", Duration::from_millis(300)).expect("producer"),
        });
        router(state, 1024)
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
