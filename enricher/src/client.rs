//! Mobaro REST API client: one GET per record, retried by the runtime's retry
//! policy on 429, 5xx, timeouts and connection errors, honouring
//! `Retry-After`; no blind retry on 401/403/404.
//!
//! The key stays with the API: requests go only to the configured origin
//! (paths and templates that lead elsewhere are refused at start), redirects
//! are followed only within it, and plain http is refused for any host but
//! this machine unless explicitly allowed. Bodies are read up to a limit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use runtime::{Failure, Retry, TokenBucket, Verdict};
use schemas::{DeadLetterClass, Resource};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::api_key::ApiKey;

/// Everything but RFC 3986's unreserved characters is encoded, `/` included, so
/// an id like `users/112899-C` stays one path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

mod answer;

use answer::{classify, Answer};

/// Where and how the client reaches the API.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The API's base URL.
    pub base: Url,
    /// The key, sent as `x-api-key`.
    pub key: ApiKey,
    /// A record's path under the base (see `MOBARO_API_PATH_TEMPLATE`).
    pub path_template: String,
    /// Timeout of one request.
    pub timeout: Duration,
    /// The largest response body read; a larger one fails its request for
    /// good.
    pub max_body: usize,
    /// Plain http to another machine is allowed.
    pub allow_insecure_http: bool,
}

/// Why the client cannot be built, or a URL would leave the API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Plain http to another machine.
    #[error("MOBARO_API_URL {url} is plain http to another machine, so the API key would cross the network unencrypted: use https, or set MOBARO_API_ALLOW_INSECURE_HTTP=true (--allow-insecure-http) on a network you trust")]
    Insecure {
        /// The base URL.
        url: Url,
    },
    /// A configured path leads outside the API's origin.
    #[error("{setting} {value:?} leads to {url}, outside the API's origin {origin}, where the API key would be sent: give a path relative to MOBARO_API_URL")]
    OffOrigin {
        /// The setting.
        setting: &'static str,
        /// Its value.
        value: String,
        /// Where it leads.
        url: String,
        /// The API's origin.
        origin: String,
    },
    /// An object id that is empty or a dot segment (`.`, `..`) in the
    /// record's path.
    #[error("the object id is empty or a dot segment of the record's path")]
    UnusableId,
    /// A URL could not be built.
    #[error("invalid url: {0}")]
    Url(#[from] url::ParseError),
    /// The HTTP client could not be built.
    #[error("building the http client: {0}")]
    Http(#[from] reqwest::Error),
}

/// What the API said about a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// The record's JSON.
    Found(Value),
    /// 404: deleted since the event was sent.
    NotFound,
}

/// Why a record could not be fetched, classified where it was created.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// 401, or a 403 while no other record can be fetched either: the key is
    /// wrong or lacks permission; no record can be fetched.
    #[error("mobaro api refused the key (http {status}): check MOBARO_API_KEY and the permissions of the user who created it")]
    Unauthorized {
        /// The HTTP status (401 or 403).
        status: u16,
    },
    /// 403 for this record while the key fetches others: the key may not
    /// read this one object. Retrying will not help.
    #[error("mobaro api refused access to this record (http {status}) while the key reads others")]
    Forbidden {
        /// The HTTP status (403).
        status: u16,
    },
    /// Another 4xx, or a body that is not JSON: retrying will not help.
    #[error("mobaro api answered http {status}: {message}")]
    Permanent {
        /// The HTTP status.
        status: u16,
        /// What the API said.
        message: String,
    },
    /// Every attempt failed transiently.
    #[error("mobaro api still failing after {attempts} attempts: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last HTTP status, if the API answered.
        status: Option<u16>,
        /// The last attempt's failure.
        #[source]
        last: Transient,
    },
    #[error("invalid record url: {0}")]
    /// The record's URL could not be built from the path template.
    Url(#[from] ClientError),
    /// Shutdown came before an answer.
    #[error("{0} before the api answered")]
    Stopped(#[from] runtime::Stopped),
}

impl FetchError {
    /// The dead-letter class of a fetch that failed for good; `None` for a
    /// fetch cut short by shutdown, which is not a failure of the record.
    pub fn class(&self) -> Option<DeadLetterClass> {
        match self {
            FetchError::Unauthorized { .. } => Some(DeadLetterClass::Unauthorized),
            FetchError::Forbidden { .. } => Some(DeadLetterClass::Forbidden),
            FetchError::Permanent { .. } => Some(DeadLetterClass::Permanent),
            FetchError::Exhausted { .. } => Some(DeadLetterClass::Exhausted),
            FetchError::Url(_) => Some(DeadLetterClass::InvalidUrl),
            FetchError::Stopped(_) => None,
        }
    }

    /// The API's HTTP status, when one answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            FetchError::Unauthorized { status }
            | FetchError::Forbidden { status }
            | FetchError::Permanent { status, .. } => Some(*status),
            FetchError::Exhausted { status, .. } => *status,
            FetchError::Url(_) | FetchError::Stopped(_) => None,
        }
    }
}

#[derive(Clone)]
/// Fetches records from Mobaro's API: rate-limited, retried, and telling a refused record from a refused key.
pub struct MobaroClient {
    http: reqwest::Client,
    limit: Option<Arc<TokenBucket>>,
    base: Url,
    key: ApiKey,
    path_template: String,
    max_body: usize,
    retry: Retry,
    /// The last record the key could read: probed when another record is
    /// refused with 403, to tell a refused object from a refused key.
    last_readable: Arc<Mutex<Option<Url>>>,
}

/// Why a request failed in a way worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum Transient {
    /// No answer: the connection failed or timed out.
    #[error("request failed: {0}")]
    Request(#[source] reqwest::Error),
    /// An answer worth retrying: 429, 408 or 5xx.
    #[error("http {0}")]
    Status(reqwest::StatusCode),
    /// The answer's body broke off.
    #[error("reading the body: {0}")]
    Body(#[source] reqwest::Error),
}

/// How one request ended, short of a record.
#[derive(Debug)]
enum AttemptError {
    /// Worth retrying (429, 408, 5xx, timeouts, connection errors).
    Transient {
        status: Option<u16>,
        retry_after: Option<Duration>,
        cause: Transient,
    },
    /// Final for this record.
    Final(FetchError),
}

impl AttemptError {
    fn into_fetch_error(self, attempts: u32) -> FetchError {
        match self {
            AttemptError::Final(error) => error,
            AttemptError::Transient { status, cause, .. } => FetchError::Exhausted {
                attempts,
                status,
                last: cause,
            },
        }
    }
}

/// The error of a request that the retry policy gave up on after `attempts`.
fn fetch_error(failure: Failure<AttemptError>, attempts: u32) -> FetchError {
    match failure {
        Failure::Stopped => runtime::Stopped.into(),
        Failure::Permanent(error) => error.into_fetch_error(attempts),
        Failure::Exhausted { error, attempts } => error.into_fetch_error(attempts),
    }
}

impl MobaroClient {
    /// A client for `endpoint` with the retry policy given; refuses plain
    /// http to another machine (unless allowed) and a path template that
    /// leads outside the base's origin.
    pub fn new(endpoint: Endpoint, retry: Retry) -> Result<Self, ClientError> {
        let Endpoint {
            base,
            key,
            path_template,
            timeout,
            max_body,
            allow_insecure_http,
        } = endpoint;
        if base.scheme() != "https" && !(allow_insecure_http || is_this_machine(&base)) {
            return Err(ClientError::Insecure { url: base });
        }
        let origin = base.origin();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("mobaro-lake-enricher/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS || attempt.url().origin() != origin {
                    attempt.stop()
                } else {
                    attempt.follow()
                }
            }))
            .build()?;
        let base = if base.path().ends_with('/') {
            base
        } else {
            let mut base = base;
            base.set_path(&format!("{}/", base.path()));
            base
        };
        let client = MobaroClient {
            http,
            base,
            key,
            path_template,
            max_body,
            retry,
            limit: None,
            last_readable: Arc::new(Mutex::new(None)),
        };
        client.record_url(Resource::Results, "results/1-A")?;
        Ok(client)
    }

    /// The API's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Every request, retries included, first takes a token from `limit`.
    pub fn with_rate_limit(mut self, limit: Arc<TokenBucket>) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The URL of one record: the path template filled with the resource's
    /// collection and the id, URL-encoded; never outside the API's origin.
    pub fn record_url(&self, resource: Resource, object_id: &str) -> Result<Url, ClientError> {
        let encode = |s: &str| utf8_percent_encode(s, SEGMENT).to_string();
        let tail = object_id.rsplit('/').next().unwrap_or(object_id);
        // `.` and `..` are dot segments even when encoded (a URL parser
        // decodes `%2e`): the path would lead to another resource, whose
        // answer would be stored as this object's record.
        let uses = |placeholder: &str, value: &str| {
            self.path_template.contains(placeholder) && matches!(value, "" | "." | "..")
        };
        if uses("{id}", object_id) || uses("{id_tail}", tail) {
            return Err(ClientError::UnusableId);
        }
        let path = self
            .path_template
            .replace("{collection}", resource.collection())
            .replace("{id_tail}", &encode(tail))
            .replace("{id}", &encode(object_id));
        let url = self.base.join(path.trim_start_matches('/'))?;
        self.within_origin("MOBARO_API_PATH_TEMPLATE", &self.path_template, url)
    }

    /// `url` when it is on the API's origin.
    fn within_origin(
        &self,
        setting: &'static str,
        value: &str,
        url: Url,
    ) -> Result<Url, ClientError> {
        if url.origin() == self.base.origin() {
            return Ok(url);
        }
        Err(ClientError::OffOrigin {
            setting,
            value: value.to_string(),
            url: url.to_string(),
            origin: self.base.origin().ascii_serialization(),
        })
    }

    /// The record, and how many requests it took. Transient failures are
    /// retried by the client's policy; a 403 is checked against a record the
    /// key read before, so that one unreadable object does not count as a
    /// refused key.
    pub async fn fetch(
        &self,
        resource: Resource,
        object_id: &str,
        shutdown: &CancellationToken,
    ) -> Result<(Fetched, u32), FetchError> {
        let url = self.record_url(resource, object_id)?;
        let (outcome, attempts) = self.get(&url, shutdown).await;
        match outcome {
            Ok(fetched) => {
                *self.last_readable.lock().unwrap_or_else(|p| p.into_inner()) = Some(url);
                Ok((fetched, attempts))
            }
            Err(Failure::Permanent(AttemptError::Final(FetchError::Unauthorized {
                status: 403,
            }))) => Err(self.refused_object_or_key(&url, shutdown).await),
            Err(failure) => Err(fetch_error(failure, attempts)),
        }
    }

    /// The URL of a list endpoint: `path` under the API's base, with `query`;
    /// never outside the API's origin.
    pub fn list_url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, ClientError> {
        let url = self.base.join(path.trim_start_matches('/'))?;
        let mut url = self.within_origin("BACKFILL_LIST_PATH", path, url)?;
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        Ok(url)
    }

    /// A list page's JSON, and how many requests it took, retried like a
    /// record fetch; a 404 means the list endpoint does not exist.
    pub async fn list(
        &self,
        url: &Url,
        shutdown: &CancellationToken,
    ) -> Result<(Value, u32), FetchError> {
        let (outcome, attempts) = self.get(url, shutdown).await;
        match outcome {
            Ok(Fetched::Found(value)) => Ok((value, attempts)),
            Ok(Fetched::NotFound) => Err(FetchError::Permanent {
                status: 404,
                message: format!("no list endpoint at {url}"),
            }),
            Err(failure) => Err(fetch_error(failure, attempts)),
        }
    }

    /// GETs `url` under the retry policy; the outcome and the attempts made.
    async fn get(
        &self,
        url: &Url,
        shutdown: &CancellationToken,
    ) -> (Result<Fetched, Failure<AttemptError>>, u32) {
        let started = Instant::now();
        let mut attempts = 0;
        let outcome = self
            .retry
            .run(
                shutdown,
                |number| {
                    attempts = number;
                    self.attempt(url)
                },
                |error, attempt| match error {
                    AttemptError::Final(_) => Verdict::GiveUp,
                    AttemptError::Transient { retry_after, cause, .. } => {
                        crate::telemetry::api_retry();
                        tracing::debug!(%url, attempt, error = %cause, elapsed = ?started.elapsed(), "retrying");
                        retry_after.map_or(Verdict::Retry, Verdict::RetryAfter)
                    }
                },
            )
            .await;
        (outcome, attempts)
    }

    /// Whether the key has read a record yet: a later 403 is then probed
    /// against it.
    pub(crate) fn has_read_a_record(&self) -> bool {
        self.last_readable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// After a 403 for `url`: [`FetchError::Forbidden`] when a record the key
    /// read before still reads, [`FetchError::Unauthorized`] otherwise.
    async fn refused_object_or_key(&self, url: &Url, shutdown: &CancellationToken) -> FetchError {
        let known = self
            .last_readable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(known) = known.filter(|known| known != url) else {
            return FetchError::Unauthorized { status: 403 };
        };
        let probe = tokio::select! {
            _ = shutdown.cancelled() => return runtime::Stopped.into(),
            probe = self.attempt(&known) => probe,
        };
        match probe {
            Ok(_) => FetchError::Forbidden { status: 403 },
            Err(_) => FetchError::Unauthorized { status: 403 },
        }
    }

    async fn attempt(&self, url: &Url) -> Result<Fetched, AttemptError> {
        if let Some(limit) = &self.limit {
            let waited = limit.acquire().await;
            crate::telemetry::rate_limit_waited(waited);
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
                crate::telemetry::api_call("error".into());
                return Err(AttemptError::Transient {
                    status: None,
                    retry_after: None,
                    cause: Transient::Request(error),
                });
            }
        };
        let status = response.status();
        crate::telemetry::api_call(status.as_u16().to_string());
        let code = status.as_u16();
        match classify(status, response.headers()) {
            Answer::Record => self.record(code, response).await,
            Answer::NotFound => Ok(Fetched::NotFound),
            Answer::Redirect { to } => Err(AttemptError::Final(FetchError::Permanent {
                status: code,
                message: format!(
                    "a redirect to {to} was not followed: the API key is sent only to {}",
                    self.base.origin().ascii_serialization()
                ),
            })),
            Answer::Refused => Err(AttemptError::Final(FetchError::Unauthorized {
                status: code,
            })),
            Answer::Transient { retry_after } => Err(AttemptError::Transient {
                status: Some(code),
                retry_after,
                cause: Transient::Status(status),
            }),
            Answer::Other => {
                // Read within the same limit as a record: a proxy's error
                // page may be of any size.
                let message = match self.body(response).await {
                    Ok(body) => String::from_utf8_lossy(&body).chars().take(200).collect(),
                    Err(Body::TooLarge) => format!("a body larger than {} bytes", self.max_body),
                    Err(Body::Failed(error)) => format!("a body that failed: {error}"),
                };
                Err(AttemptError::Final(FetchError::Permanent {
                    status: code,
                    message,
                }))
            }
        }
    }

    /// The record in the body of a 200 answer, read within the limit.
    async fn record(
        &self,
        status: u16,
        response: reqwest::Response,
    ) -> Result<Fetched, AttemptError> {
        let body = match self.body(response).await {
            Ok(body) => body,
            Err(Body::TooLarge) => {
                return Err(AttemptError::Final(FetchError::Permanent {
                    status,
                    message: format!(
                        "body larger than {} bytes (MOBARO_API_MAX_BODY)",
                        self.max_body
                    ),
                }))
            }
            Err(Body::Failed(error)) => {
                return Err(AttemptError::Transient {
                    status: None,
                    retry_after: None,
                    cause: Transient::Body(error),
                })
            }
        };
        match serde_json::from_slice::<Value>(&body) {
            Ok(value) => Ok(Fetched::Found(value)),
            Err(error) => Err(AttemptError::Final(FetchError::Permanent {
                status,
                message: format!("body is not json: {error}"),
            })),
        }
    }

    /// The body of `response`, read up to the client's limit.
    async fn body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, Body> {
        if response
            .content_length()
            .is_some_and(|length| length > self.max_body as u64)
        {
            return Err(Body::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(Body::Failed)? {
            if body.len() + chunk.len() > self.max_body {
                return Err(Body::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Redirects followed within the API's origin before giving up.
const MAX_REDIRECTS: usize = 5;

/// Why a body was not read.
enum Body {
    /// Larger than the limit.
    TooLarge,
    /// The connection failed.
    Failed(reqwest::Error),
}

/// True for a URL on this machine (a loopback address or `localhost`),
/// where plain http does not cross a network.
fn is_this_machine(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::answer::retry_after;
    use super::*;
    use reqwest::StatusCode;

    fn endpoint(base: &str, template: &str) -> Endpoint {
        Endpoint {
            base: base.parse().expect("url"),
            key: ApiKey("k".into()),
            path_template: template.into(),
            timeout: Duration::from_secs(5),
            max_body: 1 << 20,
            allow_insecure_http: false,
        }
    }

    fn quick() -> Retry {
        Retry::forever(Duration::from_millis(1), Duration::from_millis(2)).with_attempts(2)
    }

    fn client(template: &str) -> MobaroClient {
        MobaroClient::new(
            endpoint("https://app.mobaro.com/api/customers", template),
            Retry::forever(Duration::from_secs(1), Duration::from_secs(8)).with_attempts(3),
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

    /// Serves `router` on a free local port; its base URL.
    async fn serve(router: axum::Router) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{address}/").parse().expect("url")
    }

    /// A local API: `results/ok` reads, `results/no` is refused with 403,
    /// and with `refuse_all` every record is refused (a revoked key).
    async fn api(refuse_all: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Url {
        use axum::extract::Path;
        use axum::http::StatusCode;
        let router = axum::Router::new().route(
            "/results/{id}",
            axum::routing::get(move |Path(id): Path<String>| {
                let refuse_all = refuse_all.clone();
                async move {
                    if refuse_all.load(std::sync::atomic::Ordering::Relaxed) || id == "no" {
                        (StatusCode::FORBIDDEN, "{}")
                    } else {
                        (StatusCode::OK, r#"{"id":"ok"}"#)
                    }
                }
            }),
        );
        serve(router).await
    }

    #[tokio::test]
    async fn a_403_is_one_refused_object_only_while_another_record_reads() {
        let refuse_all = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client = MobaroClient::new(
            endpoint(api(refuse_all.clone()).await.as_str(), "{collection}/{id}"),
            quick(),
        )
        .expect("client");
        let never = CancellationToken::new();
        // Nothing read yet: a 403 may be the key's.
        let first = client.fetch(Resource::Results, "no", &never).await;
        assert!(
            matches!(first, Err(FetchError::Unauthorized { status: 403 })),
            "{first:?}"
        );
        let read = client.fetch(Resource::Results, "ok", &never).await;
        assert!(matches!(read, Ok((Fetched::Found(_), 1))), "{read:?}");
        // Another record still reads: only this object is refused.
        let refused = client.fetch(Resource::Results, "no", &never).await;
        assert!(
            matches!(refused, Err(FetchError::Forbidden { status: 403 })),
            "{refused:?}"
        );
        // The key itself refused: nothing reads, so it is the key.
        refuse_all.store(true, std::sync::atomic::Ordering::Relaxed);
        let revoked = client.fetch(Resource::Results, "no", &never).await;
        assert!(
            matches!(revoked, Err(FetchError::Unauthorized { status: 403 })),
            "{revoked:?}"
        );
    }

    #[test]
    fn the_key_is_sent_only_to_the_api_and_over_http_only_on_this_machine() {
        let insecure = MobaroClient::new(
            endpoint("http://api.example.com/", "{collection}/{id}"),
            quick(),
        );
        assert!(matches!(insecure, Err(ClientError::Insecure { .. })));
        let mut allowed = endpoint("http://api.example.com/", "{collection}/{id}");
        allowed.allow_insecure_http = true;
        assert!(MobaroClient::new(allowed, quick()).is_ok());
        for local in [
            "http://127.0.0.1:8080/",
            "http://localhost/",
            "http://[::1]/",
        ] {
            assert!(MobaroClient::new(endpoint(local, "{collection}/{id}"), quick()).is_ok());
        }
        let away = MobaroClient::new(
            endpoint(
                "https://app.mobaro.com/api/",
                "https://elsewhere.example/{id}",
            ),
            quick(),
        );
        assert!(matches!(away, Err(ClientError::OffOrigin { .. })));
        let client = client("{collection}/{id}");
        assert!(matches!(
            client.list_url("https://elsewhere.example/results", &[]),
            Err(ClientError::OffOrigin { .. })
        ));
        // A leading `//` is a path under the base, not another host.
        for path in ["/results", "//elsewhere.example/results"] {
            let url = client.list_url(path, &[]).expect("on the origin");
            assert_eq!(url.host_str(), Some("app.mobaro.com"));
        }
    }

    #[test]
    fn each_status_is_taken_as_its_class() {
        use reqwest::header::{HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};
        let none = HeaderMap::new();
        let mut asked = HeaderMap::new();
        asked.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let mut moved = HeaderMap::new();
        moved.insert(
            LOCATION,
            HeaderValue::from_static("https://elsewhere.example/r"),
        );
        let seven = Some(Duration::from_secs(7));
        let table: &[(u16, &HeaderMap, Answer)] = &[
            (200, &none, Answer::Record),
            (404, &none, Answer::NotFound),
            (401, &none, Answer::Refused),
            (403, &none, Answer::Refused),
            (
                302,
                &moved,
                Answer::Redirect {
                    to: "https://elsewhere.example/r".into(),
                },
            ),
            (
                301,
                &none,
                Answer::Redirect {
                    to: "nowhere".into(),
                },
            ),
            (429, &asked, Answer::Transient { retry_after: seven }),
            (429, &none, Answer::Transient { retry_after: None }),
            (408, &none, Answer::Transient { retry_after: None }),
            (500, &none, Answer::Transient { retry_after: None }),
            (503, &asked, Answer::Transient { retry_after: seven }),
            (400, &none, Answer::Other),
            (410, &none, Answer::Other),
            (204, &none, Answer::Other),
        ];
        for (status, headers, expected) in table {
            let status = StatusCode::from_u16(*status).expect("a status");
            assert_eq!(&classify(status, headers), expected, "{status}");
        }
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        assert_eq!(retry_after(" 60 "), Some(Duration::from_secs(60)));
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let wait = retry_after(&soon).expect("a date");
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon"), None);
    }

    /// An API whose record `big` is larger than the client's limit, and
    /// whose record `moved` redirects to `elsewhere`, which records the
    /// keys it receives.
    async fn redirecting_api(elsewhere: &str) -> Url {
        use axum::extract::Path;
        use axum::http::{header, StatusCode};
        use axum::response::IntoResponse;
        let elsewhere = elsewhere.to_string();
        let router = axum::Router::new().route(
            "/results/{id}",
            axum::routing::get(move |Path(id): Path<String>| {
                let elsewhere = elsewhere.clone();
                async move {
                    match id.as_str() {
                        "big" => (StatusCode::OK, "x".repeat(2 << 20)).into_response(),
                        "refused-big" => {
                            (StatusCode::BAD_REQUEST, "x".repeat(2 << 20)).into_response()
                        }
                        "moved" => (
                            StatusCode::FOUND,
                            [(header::LOCATION, format!("{elsewhere}results/moved"))],
                        )
                            .into_response(),
                        "here" => (
                            StatusCode::FOUND,
                            [(header::LOCATION, "/results/ok".to_string())],
                        )
                            .into_response(),
                        _ => (StatusCode::OK, r#"{"id":"ok"}"#.to_string()).into_response(),
                    }
                }
            }),
        );
        serve(router).await
    }

    #[tokio::test]
    async fn redirects_stay_on_the_origin_and_bodies_within_the_limit() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let keys_elsewhere = Arc::new(AtomicUsize::new(0));
        let counter = keys_elsewhere.clone();
        let other = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
            let counter = counter.clone();
            async move {
                if headers.contains_key("x-api-key") {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                "{}"
            }
        });
        let elsewhere = serve(other).await.to_string();
        let api = redirecting_api(&elsewhere).await;
        let client = MobaroClient::new(endpoint(api.as_str(), "{collection}/{id_tail}"), quick())
            .expect("client");
        let never = CancellationToken::new();
        let moved = client
            .fetch(Resource::Results, "results/moved", &never)
            .await;
        assert!(
            matches!(moved, Err(FetchError::Permanent { status: 302, .. })),
            "{moved:?}"
        );
        assert_eq!(keys_elsewhere.load(Ordering::Relaxed), 0);
        let here = client
            .fetch(Resource::Results, "results/here", &never)
            .await;
        assert!(matches!(here, Ok((Fetched::Found(_), 1))), "{here:?}");
        let big = client.fetch(Resource::Results, "results/big", &never).await;
        assert!(
            matches!(&big, Err(FetchError::Permanent { message, .. }) if message.contains("MOBARO_API_MAX_BODY")),
            "{big:?}"
        );
    }

    #[tokio::test]
    async fn an_error_body_is_read_within_the_limit() {
        let api = redirecting_api("http://127.0.0.1:9/").await;
        let client = MobaroClient::new(endpoint(api.as_str(), "{collection}/{id_tail}"), quick())
            .expect("client");
        let refused = client
            .fetch(
                Resource::Results,
                "results/refused-big",
                &CancellationToken::new(),
            )
            .await;
        assert!(
            matches!(&refused, Err(FetchError::Permanent { status: 400, message }) if message.contains("larger than")),
            "{refused:?}"
        );
    }

    #[test]
    fn ids_that_are_dot_segments_are_refused() {
        let client = client("{collection}/{id_tail}");
        for id in ["..", ".", "results/..", "results/.", "results/", ""] {
            assert!(
                matches!(
                    client.record_url(Resource::Results, id),
                    Err(ClientError::UnusableId)
                ),
                "{id:?}"
            );
        }
        let client = self::client("{collection}/{id}");
        assert!(client.record_url(Resource::Results, "..").is_err());
        // Dots inside an id, or an id whose tail is not a dot segment, stay.
        let url = client
            .record_url(Resource::Results, "results/..")
            .expect("one segment");
        assert_eq!(
            url.as_str(),
            "https://app.mobaro.com/api/customers/results/results%2F.."
        );
        assert!(client.record_url(Resource::Results, "1.2-A").is_ok());
    }
}
