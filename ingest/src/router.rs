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

async fn accept(state: &AppState, request_headers: &HeaderMap, body: &[u8]) -> Result<String, Rejection> {
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
