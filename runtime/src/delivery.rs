//! Producing records that must not be lost: retried until the broker
//! acknowledges them, or until shutdown.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// Appends text headers to `headers`.
pub fn with_headers(mut headers: OwnedHeaders, pairs: &[(&str, &str)]) -> OwnedHeaders {
    for (key, value) in pairs {
        headers = headers.insert(Header {
            key,
            value: Some(*value),
        });
    }
    headers
}

/// A record to produce; `key` and `headers` are optional.
pub struct Outgoing<'a> {
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    pub headers: OwnedHeaders,
}

/// Produces `record` until the broker acknowledges it, backing off between
/// attempts. Returns false when `shutdown` came first: the caller must then not
/// treat the record as delivered.
pub async fn produce_until_acked(
    producer: &FutureProducer,
    record: Outgoing<'_>,
    shutdown: &CancellationToken,
) -> bool {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut future = FutureRecord::to(record.topic)
            .payload(record.payload)
            .headers(record.headers.clone());
        if let Some(key) = record.key {
            future = future.key(key);
        }
        let result = tokio::select! {
            _ = shutdown.cancelled() => return false,
            result = producer.send(future, QUEUE_TIMEOUT) => result,
        };
        match result {
            Ok(_) => return true,
            Err((error, _)) => {
                tracing::warn!(%error, topic = record.topic, retry_in = ?backoff, "produce failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
