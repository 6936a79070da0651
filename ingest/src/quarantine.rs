//! Requests rejected for signature, shape or size reasons are kept in a
//! quarantine topic, so an operator can see what Mobaro actually sent and replay
//! it once the configuration is fixed (`ingest replay`).
//!
//! Writes never delay the response and are rate-limited, so that a flood of
//! junk cannot fill the broker; what the limit turns away is counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine;
use chrono::{DateTime, Utc};
use rdkafka::producer::FutureRecord;
use serde::{Deserialize, Serialize};

use schemas::QuarantineReason;

use crate::signature::SIGNATURE_HEADER;

/// Headers whose values are credentials; never stored.
const SECRET_HEADERS: [&str; 4] = [
    "authorization",
    "cookie",
    "proxy-authorization",
    "x-api-key",
];
const REDACTED: &str = "<redacted>";

/// One quarantined request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantinedRequest {
    /// The account it was posted to (requests kept before accounts
    /// existed: the default one).
    #[serde(default = "default_account")]
    pub account: String,
    /// Why it was rejected.
    pub reason: QuarantineReason,
    /// The rejection, for people.
    pub error: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// The client's address, when known.
    pub remote_addr: Option<String>,
    /// Request headers; credentials and the shared token are redacted.
    pub headers: BTreeMap<String, String>,
    /// The signature as sent. An HMAC tag reveals nothing about the secret, and
    /// replay needs it to verify the body again.
    pub signature: Option<String>,
    /// The body, base64, cut at the configured bound.
    pub body_base64: String,
    /// The body's full length.
    pub body_bytes: usize,
    /// Whether the kept body is shorter than the request's.
    pub body_truncated: bool,
}

impl QuarantinedRequest {
    #[allow(clippy::too_many_arguments)]
    /// The record of a rejected request: credentials redacted, the body cut at `body_limit`.
    pub fn new(
        account: &str,
        reason: QuarantineReason,
        error: String,
        remote_addr: Option<SocketAddr>,
        headers: &HeaderMap,
        redact: &[String],
        body: &[u8],
        body_limit: usize,
    ) -> Self {
        let kept = &body[..body.len().min(body_limit)];
        QuarantinedRequest {
            account: account.to_string(),
            reason,
            error,
            received_at: Utc::now(),
            remote_addr: remote_addr.map(|a| a.to_string()),
            headers: headers
                .iter()
                .map(|(name, value)| {
                    let name = name.as_str().to_ascii_lowercase();
                    let secret = SECRET_HEADERS.contains(&name.as_str())
                        || redact.iter().any(|r| r.eq_ignore_ascii_case(&name))
                        || name == SIGNATURE_HEADER;
                    let value = if secret {
                        REDACTED.to_string()
                    } else {
                        String::from_utf8_lossy(value.as_bytes()).into_owned()
                    };
                    (name, value)
                })
                .collect(),
            signature: headers
                .get(SIGNATURE_HEADER)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            body_base64: base64::engine::general_purpose::STANDARD.encode(kept),
            body_bytes: body.len(),
            body_truncated: kept.len() < body.len(),
        }
    }

    /// The kept body, decoded.
    pub fn body(&self) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(&self.body_base64)
    }
}

fn default_account() -> String {
    schemas::DEFAULT_ACCOUNT.to_string()
}

pub struct Quarantine {
    pub producer: runtime::Producer,
    pub topic: String,
    pub limit: runtime::TokenBucket,
    pub body_limit: usize,
    /// Extra header names to redact (the shared-token header).
    pub redact: Vec<String>,
}

impl Quarantine {
    /// Queues the record and returns at once; the outcome is logged.
    pub fn keep(&self, request: QuarantinedRequest) {
        if !self.limit.try_acquire() {
            crate::telemetry::quarantined("rate_limited");
            return;
        }
        let value = serde_json::to_vec(&request).expect("quarantine records serialize");
        let record = FutureRecord::to(&self.topic)
            .key(request.reason.as_str())
            .payload(&value);
        match self.producer.send_result(record) {
            Ok(delivery) => {
                tokio::spawn(async move {
                    let outcome =
                        match tokio::time::timeout(Duration::from_secs(30), delivery).await {
                            Ok(Ok(Ok(_))) => "stored",
                            _ => "failed",
                        };
                    if outcome == "failed" {
                        tracing::warn!(reason = %request.reason, "quarantine write failed");
                    }
                    crate::telemetry::quarantined(outcome);
                });
            }
            Err((error, _)) => {
                tracing::warn!(%error, "quarantine write not queued");
                crate::telemetry::quarantined("failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_and_bodies_bounded() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer x".parse().expect("value"));
        headers.insert("x-shared-token", "t0k3n".parse().expect("value"));
        headers.insert(SIGNATURE_HEADER, "abc".parse().expect("value"));
        headers.insert("user-agent", "Mobaro".parse().expect("value"));
        let request = QuarantinedRequest::new(
            schemas::DEFAULT_ACCOUNT,
            QuarantineReason::BadSignature,
            "no".into(),
            None,
            &headers,
            &["X-Shared-Token".to_string()],
            b"0123456789",
            4,
        );
        let text = serde_json::to_string(&request).expect("json");
        assert!(
            !text.contains("Bearer") && !text.contains("t0k3n"),
            "{text}"
        );
        assert_eq!(request.headers["user-agent"], "Mobaro");
        assert_eq!(request.signature.as_deref(), Some("abc"));
        assert_eq!(request.body().expect("b64"), b"0123");
        assert!(request.body_truncated);
        assert_eq!(request.body_bytes, 10);
    }
}
