//! The consume → fetch → produce loop.
//!
//! Offsets are stored (and then committed by librdkafka's auto-commit, and
//! synchronously at shutdown) only after the event's enriched or dead-letter
//! record was acknowledged by the broker, so a crash replays events instead of
//! losing them. Duplicates carry the same `event_id`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use std::sync::Arc;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, OwnedHeaders};
use rdkafka::producer::FutureProducer;
use rdkafka::Message;
use runtime::{produce_until_acked, with_headers, Outgoing, Readiness};
use schemas::{headers, EnrichedRecord, EventKind, FetchStatus, WebhookEvent};
use tokio_util::sync::CancellationToken;

use crate::client::{FetchError, Fetched, MobaroClient};
use crate::config::Config;

/// Why an event went to the dead-letter topic.
struct DeadLetter {
    class: &'static str,
    error: String,
    status: Option<u16>,
    attempts: u32,
}

/// What became of one raw event.
enum Outcome {
    Enriched(Box<EnrichedRecord>),
    DeadLetter(DeadLetter),
    /// Shutdown arrived while waiting; the event stays uncommitted.
    Interrupted,
}

pub struct Enrichment {
    pub consumer: Arc<StreamConsumer>,
    pub producer: FutureProducer,
    pub client: MobaroClient,
    pub config: Config,
    pub readiness: Readiness,
}

const PAUSE_START: Duration = Duration::from_secs(2);
const PAUSE_MAX: Duration = Duration::from_secs(60);
const COMMIT_DEADLINE: Duration = Duration::from_secs(10);

impl Enrichment {
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), rdkafka::error::KafkaError> {
        self.consumer.subscribe(&[&self.config.raw_topic])?;
        self.readiness.set("mobaro_api", Ok(()));
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                message = self.consumer.recv() => message,
            };
            let message = match message {
                Ok(m) => m,
                Err(error) => {
                    tracing::warn!(%error, "consumer error");
                    continue;
                }
            };
            let outcome = self.enrich(&message, &shutdown).await;
            let delivered = match outcome {
                Outcome::Interrupted => break,
                Outcome::Enriched(record) => self.emit(&message, &record, &shutdown).await,
                Outcome::DeadLetter(letter) => self.dead_letter(&message, letter, &shutdown).await,
            };
            if !delivered {
                break;
            }
            self.consumer.store_offset_from_message(&message)?;
        }
        if let Err(error) = runtime::commit(&self.consumer, None, COMMIT_DEADLINE).await {
            tracing::warn!(%error, "final offset commit failed; the uncommitted events will be enriched again");
        }
        Ok(())
    }

    async fn enrich(&self, message: &BorrowedMessage<'_>, shutdown: &CancellationToken) -> Outcome {
        let payload = message.payload().unwrap_or_default();
        let event = match WebhookEvent::from_json(payload) {
            Ok(event) => event,
            Err(error) => {
                return Outcome::DeadLetter(DeadLetter {
                    class: "unparsable",
                    error: error.to_string(),
                    status: None,
                    attempts: 0,
                })
            }
        };
        let received_at = header(message, headers::RECEIVED_AT)
            .and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
            .map(|t| t.with_timezone(&Utc));
        if event.event == EventKind::Deleted {
            return self.enriched(&event, received_at, FetchStatus::Deleted);
        }
        if !self.config.enrich.contains(&event.resource) {
            return self.enriched(&event, received_at, FetchStatus::NotFetched);
        }
        let mut pause = PAUSE_START;
        loop {
            match self.client.fetch(event.resource, &event.object_id).await {
                Ok((Fetched::Found(value), _)) => {
                    self.readiness.set("mobaro_api", Ok(()));
                    let record = EnrichedRecord::new(&event, received_at, FetchStatus::Found)
                        .with_record(value, Utc::now());
                    metrics::counter!("enricher_events_total", "outcome" => "found").increment(1);
                    return Outcome::Enriched(Box::new(record));
                }
                Ok((Fetched::NotFound, _)) => {
                    self.readiness.set("mobaro_api", Ok(()));
                    return self.enriched(&event, received_at, FetchStatus::NotFound);
                }
                Err(error @ FetchError::Unauthorized { .. }) => {
                    // A bad key fails every event alike: stop and wait for a fix
                    // rather than dead-letter the whole stream.
                    tracing::error!(%error, retry_in = ?pause, "enrichment paused");
                    self.readiness.set("mobaro_api", Err(error.to_string()));
                    metrics::counter!("enricher_paused_total").increment(1);
                    tokio::select! {
                        _ = shutdown.cancelled() => return Outcome::Interrupted,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(PAUSE_MAX);
                }
                Err(error) => {
                    let attempts = match &error {
                        FetchError::Exhausted { attempts, .. } => *attempts,
                        _ => 1,
                    };
                    return Outcome::DeadLetter(DeadLetter {
                        class: error.class(),
                        status: error.status(),
                        error: error.to_string(),
                        attempts,
                    });
                }
            }
        }
    }

    fn enriched(
        &self,
        event: &WebhookEvent,
        received_at: Option<DateTime<Utc>>,
        status: FetchStatus,
    ) -> Outcome {
        metrics::counter!("enricher_events_total", "outcome" => status.as_str()).increment(1);
        Outcome::Enriched(Box::new(EnrichedRecord::new(event, received_at, status)))
    }

    async fn emit(
        &self,
        message: &BorrowedMessage<'_>,
        record: &EnrichedRecord,
        shutdown: &CancellationToken,
    ) -> bool {
        let value = serde_json::to_vec(record).expect("enriched records serialize");
        let outgoing = Outgoing {
            topic: &self.config.enriched_topic,
            key: message.key(),
            payload: &value,
            headers: with_headers(
                OwnedHeaders::new(),
                &[(headers::EVENT_ID, record.event_id.as_str())],
            ),
        };
        produce_until_acked(&self.producer, outgoing, shutdown).await
    }

    async fn dead_letter(
        &self,
        message: &BorrowedMessage<'_>,
        letter: DeadLetter,
        shutdown: &CancellationToken,
    ) -> bool {
        tracing::warn!(
            class = letter.class,
            error = %letter.error,
            partition = message.partition(),
            offset = message.offset(),
            "event dead-lettered"
        );
        metrics::counter!("enricher_events_total", "outcome" => "dead_letter").increment(1);
        let status = letter.status.map(|s| s.to_string()).unwrap_or_default();
        let attempts = letter.attempts.to_string();
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let original = message.headers().map(|h| h.detach()).unwrap_or_default();
        let headers = with_headers(
            original,
            &[
                (headers::DLQ_STAGE, "enricher"),
                (headers::DLQ_ERROR_CLASS, letter.class),
                (headers::DLQ_ERROR, letter.error.as_str()),
                (headers::DLQ_HTTP_STATUS, status.as_str()),
                (headers::DLQ_ATTEMPTS, attempts.as_str()),
                (headers::DLQ_ORIGINAL_TOPIC, message.topic()),
                (headers::DLQ_ORIGINAL_PARTITION, partition.as_str()),
                (headers::DLQ_ORIGINAL_OFFSET, offset.as_str()),
            ],
        );
        let outgoing = Outgoing {
            topic: &self.config.dead_letter_topic,
            key: message.key(),
            payload: message.payload().unwrap_or_default(),
            headers,
        };
        produce_until_acked(&self.producer, outgoing, shutdown).await
    }
}

fn header(message: &BorrowedMessage<'_>, name: &str) -> Option<String> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
