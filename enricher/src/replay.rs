//! `enricher replay-dead-letters`: puts events the enricher dead-lettered back
//! on the raw topic, e.g. after an API outage longer than the retries.

use std::collections::BTreeMap;

use rdkafka::message::{Headers, OwnedHeaders, OwnedMessage};
use rdkafka::Message;
use runtime::{with_headers, Outgoing};
use schemas::{headers, DeadLetter, Stage};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ReplayArgs};
use crate::EnricherError;

/// What became of one dead letter (in the order printed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ReplayOutcome {
    /// Producing it back failed.
    Failed,
    /// Put back on the raw topic.
    Replayed,
    /// Its class is not among those asked for.
    SkippedClass,
    /// Another stage dead-lettered it.
    SkippedOtherStage,
    /// Its dead-letter headers cannot be read.
    SkippedUnreadableHeaders,
    /// A dry run: it would be put back.
    WouldReplay,
}

impl ReplayOutcome {
    /// The outcome's name, as printed.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ReplayOutcome::Failed => "failed",
            ReplayOutcome::Replayed => "replayed",
            ReplayOutcome::SkippedClass => "skipped_class",
            ReplayOutcome::SkippedOtherStage => "skipped_other_stage",
            ReplayOutcome::SkippedUnreadableHeaders => "skipped_unreadable_headers",
            ReplayOutcome::WouldReplay => "would_replay",
        }
    }
}

impl std::fmt::Display for ReplayOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn header<'a>(message: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    let value = message.headers()?.iter().find(|h| h.key == name)?.value?;
    std::str::from_utf8(value).ok()
}

/// Replays the dead-letter topic as of now; returns a count per outcome.
pub(crate) async fn replay(
    config: &Config,
    args: &ReplayArgs,
) -> Result<BTreeMap<ReplayOutcome, u64>, EnricherError> {
    let context = config.kafka.context().await?;
    let kafka = config.kafka.clone();
    let topic = config.dead_letter_topic.clone();
    let records =
        tokio::task::spawn_blocking(move || runtime::read_topic_to_end(&kafka, context, &topic))
            .await
            .expect("the reader does not panic")?;
    let producer = config
        .kafka
        .producer(&[("acks", "all"), ("enable.idempotence", "true")])
        .await?;
    let mut outcomes = BTreeMap::new();
    for message in &records {
        let outcome = match DeadLetter::from_headers(|name| header(message, name)) {
            Err(error) => {
                tracing::warn!(%error, partition = message.partition(), offset = message.offset(), "skipping a record without readable dead-letter headers");
                ReplayOutcome::SkippedUnreadableHeaders
            }
            Ok(letter) if letter.stage != Stage::Enricher => ReplayOutcome::SkippedOtherStage,
            Ok(letter) if !args.class.is_empty() && !args.class.contains(&letter.class) => {
                ReplayOutcome::SkippedClass
            }
            Ok(_) if args.dry_run => ReplayOutcome::WouldReplay,
            Ok(_) => put_back(config, &producer, message).await,
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    Ok(outcomes)
}

/// Produces a dead-lettered event back to the raw topic with its original
/// headers (event_id, received_at, ...), not the dead-letter ones.
async fn put_back(
    config: &Config,
    producer: &runtime::Producer,
    message: &OwnedMessage,
) -> ReplayOutcome {
    let never = CancellationToken::new();
    let mut kept = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for h in original
            .iter()
            .filter(|h| !h.key.starts_with(headers::DLQ_PREFIX))
        {
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
        headers: with_headers(kept, &[(headers::REPLAYED_FROM, "dead_letter")]),
    };
    match runtime::produce(producer, &outgoing, &never).await {
        Ok(()) => ReplayOutcome::Replayed,
        Err(failure) => {
            tracing::error!(%failure, partition = message.partition(), offset = message.offset(), "replaying a dead letter failed");
            ReplayOutcome::Failed
        }
    }
}
