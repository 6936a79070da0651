//! What an HTTP answer means for a fetch, from its status and headers
//! alone.

use std::time::Duration;

use reqwest::StatusCode;

/// What an answer's status and headers say, before its body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// 200: the record is the body.
    Record,
    /// 404: the record was deleted since the event.
    NotFound,
    /// A redirect the client did not follow (off the origin, or too many).
    Redirect {
        /// Where it led.
        to: String,
    },
    /// 401 or 403: the key, or this record, is refused.
    Refused,
    /// 429, 408 or 5xx: worth another attempt, after the wait asked for.
    Transient {
        /// The `Retry-After` asked for, if readable.
        retry_after: Option<Duration>,
    },
    /// Any other status: final; the body says why.
    Other,
}

/// How the client takes an answer of `status` with `headers`.
pub(super) fn classify(status: StatusCode, headers: &reqwest::header::HeaderMap) -> Answer {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    match status {
        StatusCode::OK => Answer::Record,
        StatusCode::NOT_FOUND => Answer::NotFound,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Answer::Refused,
        s if s.is_redirection() => Answer::Redirect {
            to: header(reqwest::header::LOCATION)
                .unwrap_or("nowhere")
                .to_string(),
        },
        s if s == StatusCode::TOO_MANY_REQUESTS
            || s == StatusCode::REQUEST_TIMEOUT
            || s.is_server_error() =>
        {
            Answer::Transient {
                retry_after: header(reqwest::header::RETRY_AFTER).and_then(retry_after),
            }
        }
        _ => Answer::Other,
    }
}

/// A `Retry-After` value: seconds, or an HTTP date.
pub(super) fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or_default(),
    )
}
