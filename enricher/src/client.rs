//! Mobaro REST API client: one GET per record, retried with exponential backoff
//! and jitter on 429, 5xx, timeouts and connection errors, honouring
//! `Retry-After`; no blind retry on 401/403/404.

use std::sync::Arc;
use std::time::{Duration, Instant};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::Rng;
use reqwest::StatusCode;
use runtime::TokenBucket;
use schemas::Resource;
use serde_json::Value;
use url::Url;

use crate::config::ApiKey;

/// Everything but RFC 3986's unreserved characters is encoded, `/` included, so
/// an id like `users/112899-C` stays one path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What the API said about a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    Found(Value),
    /// 404: deleted since the event was sent.
    NotFound,
}

/// Why a record could not be fetched, classified where it was created.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// 401/403: the key is wrong or lacks permission; no record can be fetched.
    #[error("mobaro api refused the key (http {status}): check MOBARO_API_KEY and the permissions of the user who created it")]
    Unauthorized { status: u16 },
    /// Another 4xx, or a body that is not JSON: retrying will not help.
    #[error("mobaro api answered http {status}: {message}")]
    Permanent { status: u16, message: String },
    /// Every attempt failed transiently.
    #[error("mobaro api still failing after {attempts} attempts: {last}")]
    Exhausted {
        attempts: u32,
        status: Option<u16>,
        last: String,
    },
    #[error("invalid record url: {0}")]
    Url(#[from] url::ParseError),
}

impl FetchError {
    pub fn class(&self) -> &'static str {
        match self {
            FetchError::Unauthorized { .. } => "unauthorized",
            FetchError::Permanent { .. } => "permanent",
            FetchError::Exhausted { .. } => "exhausted",
            FetchError::Url(_) => "invalid_url",
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            FetchError::Unauthorized { status } | FetchError::Permanent { status, .. } => {
                Some(*status)
            }
            FetchError::Exhausted { status, .. } => *status,
            FetchError::Url(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// Full jitter over an exponentially growing ceiling, or the server's
    /// `Retry-After` when it sent one.
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_backoff);
        }
        let ceiling = self
            .first_backoff
            .saturating_mul(1 << attempt.min(16))
            .min(self.max_backoff);
        let low = ceiling / 2;
        low + ceiling
            .saturating_sub(low)
            .mul_f64(rand::rng().random::<f64>())
    }
}

#[derive(Clone)]
pub struct MobaroClient {
    http: reqwest::Client,
    limit: Option<Arc<TokenBucket>>,
    base: Url,
    key: ApiKey,
    path_template: String,
    retry: RetryPolicy,
}

/// A transient failure of one attempt.
struct Transient {
    status: Option<u16>,
    retry_after: Option<Duration>,
    message: String,
}

impl MobaroClient {
    pub fn new(
        base: Url,
        key: ApiKey,
        path_template: String,
        timeout: Duration,
        retry: RetryPolicy,
    ) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("mobaro-lake-enricher/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let base = if base.path().ends_with('/') {
            base
        } else {
            let mut base = base;
            base.set_path(&format!("{}/", base.path()));
            base
        };
        Ok(MobaroClient {
            http,
            base,
            key,
            path_template,
            retry,
            limit: None,
        })
    }

    /// Every request, retries included, first takes a token from `limit`.
    pub fn with_rate_limit(mut self, limit: Arc<TokenBucket>) -> Self {
        self.limit = Some(limit);
        self
    }

    pub fn record_url(&self, resource: Resource, object_id: &str) -> Result<Url, url::ParseError> {
        let encode = |s: &str| utf8_percent_encode(s, SEGMENT).to_string();
        let tail = object_id.rsplit('/').next().unwrap_or(object_id);
        let path = self
            .path_template
            .replace("{collection}", resource.collection())
            .replace("{id_tail}", &encode(tail))
            .replace("{id}", &encode(object_id));
        self.base.join(path.trim_start_matches('/'))
    }

    pub async fn fetch(
        &self,
        resource: Resource,
        object_id: &str,
    ) -> Result<(Fetched, u32), FetchError> {
        let url = self.record_url(resource, object_id)?;
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(&url).await {
                Ok(Ok(fetched)) => return Ok((fetched, attempt)),
                Ok(Err(permanent)) => return Err(permanent),
                Err(transient) => {
                    metrics::counter!("enricher_api_retries_total").increment(1);
                    if attempt >= self.retry.max_attempts {
                        return Err(FetchError::Exhausted {
                            attempts: attempt,
                            status: transient.status,
                            last: transient.message,
                        });
                    }
                    let delay = self.retry.delay(attempt - 1, transient.retry_after);
                    tracing::debug!(%url, attempt, ?delay, error = %transient.message, elapsed = ?started.elapsed(), "retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn attempt(&self, url: &Url) -> Result<Result<Fetched, FetchError>, Transient> {
        if let Some(limit) = &self.limit {
            let waited = limit.acquire().await;
            metrics::histogram!("enricher_rate_limit_wait_seconds").record(waited.as_secs_f64());
        }
        let response = self
            .http
            .get(url.clone())
            .header("x-api-key", &self.key.0)
            .header("accept", "application/json")
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(error) => {
                metrics::counter!("enricher_api_calls_total", "status" => "error").increment(1);
                return Err(Transient {
                    status: None,
                    retry_after: None,
                    message: error.to_string(),
                });
            }
        };
        let status = response.status();
        metrics::counter!("enricher_api_calls_total", "status" => status.as_u16().to_string())
            .increment(1);
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        match status {
            StatusCode::OK => match response.json::<Value>().await {
                Ok(value) => Ok(Ok(Fetched::Found(value))),
                Err(error) => Ok(Err(FetchError::Permanent {
                    status: status.as_u16(),
                    message: format!("body is not json: {error}"),
                })),
            },
            StatusCode::NOT_FOUND => Ok(Ok(Fetched::NotFound)),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Ok(Err(FetchError::Unauthorized {
                status: status.as_u16(),
            })),
            s if s == StatusCode::TOO_MANY_REQUESTS
                || s == StatusCode::REQUEST_TIMEOUT
                || s.is_server_error() =>
            {
                Err(Transient {
                    status: Some(s.as_u16()),
                    retry_after,
                    message: format!("http {s}"),
                })
            }
            s => {
                let message = response.text().await.unwrap_or_default();
                Ok(Err(FetchError::Permanent {
                    status: s.as_u16(),
                    message: message.chars().take(200).collect(),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(template: &str) -> MobaroClient {
        MobaroClient::new(
            "https://app.mobaro.com/api/customers".parse().expect("url"),
            ApiKey("k".into()),
            template.into(),
            Duration::from_secs(1),
            RetryPolicy {
                max_attempts: 3,
                first_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(8),
            },
        )
        .expect("client")
    }

    #[test]
    fn ids_are_url_encoded_into_the_template() {
        let url = client("{collection}/{id}")
            .record_url(Resource::Users, "users/112899-C")
            .expect("url");
        assert_eq!(
            url.as_str(),
            "https://app.mobaro.com/api/customers/users/users%2F112899-C"
        );
        let url = client("{collection}/{id_tail}")
            .record_url(Resource::Results, "results/12 3-A")
            .expect("url");
        assert_eq!(
            url.as_str(),
            "https://app.mobaro.com/api/customers/results/12%203-A"
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let policy = client("{id}").retry;
        for attempt in 0..10 {
            let delay = policy.delay(attempt, None);
            assert!(delay <= policy.max_backoff);
            assert!(
                delay >= (policy.first_backoff * (1 << attempt.min(3))).min(policy.max_backoff) / 2
            );
        }
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(300))),
            policy.max_backoff
        );
    }
}
