//! `enricher replay-dead-letters`: puts events the enricher dead-lettered back
//! on the raw topic, e.g. after an API outage longer than the retries.

use std::collections::BTreeMap;

use rdkafka::message::{Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::Message;
use runtime::{with_headers, Outgoing};
use schemas::headers;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ReplayArgs};
use crate::EnricherError;

fn header<'a>(message: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    let value = message.headers()?.iter().find(|h| h.key == name)?.value?;
    std::str::from_utf8(value).ok()
}

/// Replays the dead-letter topic as of now; returns a count per outcome.
pub async fn replay(
    config: &Config,
    args: &ReplayArgs,
) -> Result<BTreeMap<String, u64>, EnricherError> {
    let kafka = config.kafka.clone();
    let topic = config.dead_letter_topic.clone();
    let records = tokio::task::spawn_blocking(move || runtime::read_topic_to_end(&kafka, &topic))
        .await
        .expect("the reader does not panic")?;
    let producer: FutureProducer = config
        .kafka
        .client_config(&[("acks", "all"), ("enable.idempotence", "true")])?
        .create()?;
    let never = CancellationToken::new();
    let mut outcomes = BTreeMap::new();
    for message in &records {
        let outcome = if header(message, headers::DLQ_STAGE) != Some("enricher") {
            "skipped_other_stage"
        } else if !args.class.is_empty()
            && !header(message, headers::DLQ_ERROR_CLASS)
                .is_some_and(|c| args.class.iter().any(|a| a == c))
        {
            "skipped_class"
        } else if args.dry_run {
            "would_replay"
        } else {
            // The original headers (event_id, received_at, ...) travel back;
            // the dead-letter ones do not.
            let mut kept = OwnedHeaders::new();
            if let Some(original) = message.headers() {
                for h in original.iter().filter(|h| !h.key.starts_with("dlq_")) {
                    kept = kept.insert(rdkafka::message::Header {
                        key: h.key,
                        value: h.value,
                    });
                }
            }
            let outgoing = Outgoing {
                topic: &config.raw_topic,
                key: message.key(),
                payload: message.payload().unwrap_or_default(),
                headers: with_headers(kept, &[("replayed_from", "dead_letter")]),
            };
            match runtime::produce(&producer, &outgoing, &never).await {
                Ok(()) => "replayed",
                Err(failure) => {
                    tracing::error!(%failure, partition = message.partition(), offset = message.offset(), "replaying a dead letter failed");
                    "failed"
                }
            }
        };
        *outcomes.entry(outcome.to_string()).or_default() += 1;
    }
    Ok(outcomes)
}
