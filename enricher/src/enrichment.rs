//! Enrichment of raw events, object by object.
//!
//! Events are queued per objectId. One task at a time works through an
//! object's queue, in offset order, so an object's records are emitted in the
//! order its events arrived; different objects proceed in parallel, with the
//! API calls in flight bounded by a semaphore. When several events of an object wait for a fetch, one API call
//! serves them all (coalescing): each still yields its own record.
//!
//! An event is reported done (and its offset may then be committed) only after
//! its enriched or dead-letter record was acknowledged by the broker.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::message::{Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::Message;
use runtime::checks;
use runtime::{produce, with_headers, Failure, Outgoing, Readiness, Retry, Verdict};
use schemas::{
    headers, DeadLetter, DeadLetterClass, EnrichedRecord, EventKind, EventParseError, FetchStatus,
    Position, Resource, Stage, WebhookEvent,
};
use serde_json::Value;
use tokio::sync::{mpsc, Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::cache::RecordCache;
use crate::client::{FetchError, Fetched, MobaroClient};
use crate::config::Config;

/// While the API refuses the key: first pause 2 s, doubling up to a minute.
const KEY_PAUSE: Retry = Retry::forever(Duration::from_secs(2), Duration::from_secs(60));

/// A raw event taken from Kafka.
pub(crate) struct Job {
    pub message: OwnedMessage,
    event: Result<WebhookEvent, EventParseError>,
}

impl Job {
    pub(crate) fn new(message: OwnedMessage) -> Self {
        let event = WebhookEvent::from_json(message.payload().unwrap_or_default());
        Job { message, event }
    }

    /// The queue this job belongs to: its objectId (the Kafka key).
    pub(crate) fn key(&self) -> String {
        match &self.event {
            Ok(event) => event.object_id.clone(),
            Err(_) => String::from_utf8_lossy(self.message.key().unwrap_or_default()).into_owned(),
        }
    }

    fn received_at(&self) -> Option<DateTime<Utc>> {
        let found = self.message.headers()?;
        headers::RawHeaders::decode(|name| {
            let value = found.iter().find(|h| h.key == name)?.value?;
            std::str::from_utf8(value).ok()
        })
        .received_at
    }
}

/// Why an event goes to the dead-letter topic (its position comes from the
/// event itself).
#[derive(Clone)]
struct GaveUp {
    class: DeadLetterClass,
    error: String,
    status: Option<u16>,
    attempts: u32,
}

/// The shared result of one fetch for a group of events.
enum FetchOutcome {
    Found(Value, DateTime<Utc>),
    NotFound,
    GaveUp(GaveUp),
    /// Stopped while paused; the events stay uncommitted.
    Interrupted,
}

/// What the lake records about an event, given its fetch.
fn status(event: &WebhookEvent, fetched: Option<&FetchOutcome>) -> FetchStatus {
    match fetched {
        Some(FetchOutcome::Found(..)) => FetchStatus::Found,
        Some(_) => FetchStatus::NotFound,
        None if event.event == EventKind::Deleted => FetchStatus::Deleted,
        None => FetchStatus::NotFetched,
    }
}

/// Everything the per-object tasks share.
pub(crate) struct Enricher {
    pub client: MobaroClient,
    pub producer: FutureProducer,
    pub config: Config,
    pub readiness: Readiness,
    pub user_cache: Option<RecordCache>,
    permits: Semaphore,
    queues: Mutex<HashMap<String, VecDeque<Job>>>,
    /// True while the API refuses the key: consumption pauses.
    key_refused: tokio::sync::watch::Sender<bool>,
    /// (partition, offset) of each event whose record the broker acknowledged.
    done: mpsc::UnboundedSender<(i32, i64)>,
    /// Cancelled when the drain deadline passes at shutdown.
    stop: CancellationToken,
}

impl Enricher {
    pub(crate) fn new(
        client: MobaroClient,
        producer: FutureProducer,
        config: Config,
        readiness: Readiness,
        done: mpsc::UnboundedSender<(i32, i64)>,
        stop: CancellationToken,
    ) -> Self {
        let user_cache =
            (!config.user_cache_ttl.is_zero()).then(|| RecordCache::new(config.user_cache_ttl));
        Enricher {
            client,
            producer,
            permits: Semaphore::new(config.concurrency.max(1)),
            config,
            readiness,
            user_cache,
            queues: Mutex::new(HashMap::new()),
            key_refused: tokio::sync::watch::Sender::new(false),
            done,
            stop,
        }
    }

    /// Whether the API refuses the key, as it changes: consumption pauses
    /// while it does.
    pub(crate) fn key_refused(&self) -> tokio::sync::watch::Receiver<bool> {
        self.key_refused.subscribe()
    }

    /// Queues a job behind the earlier events of its object, starting a task
    /// for the object when none is working on it.
    pub(crate) fn enqueue(self: &Arc<Self>, job: Job) {
        let key = job.key();
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let start = !queues.contains_key(&key);
        queues.entry(key.clone()).or_default().push_back(job);
        if start {
            let enricher = Arc::clone(self);
            tokio::spawn(async move { enricher.work_through(key).await });
        }
    }

    fn needs_fetch(&self, job: &Job) -> Option<Resource> {
        let event = job.event.as_ref().ok()?;
        (event.event != EventKind::Deleted && self.config.enrich.contains(&event.resource))
            .then_some(event.resource)
    }

    /// The next jobs of `key` to handle together: every waiting event that
    /// needs the same fetch, or a single job that needs none. Removes the queue
    /// when it is empty, ending the task.
    fn next_group(&self, key: &str) -> Option<Vec<Job>> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let queue = queues.get_mut(key)?;
        let Some(first) = queue.pop_front() else {
            queues.remove(key);
            return None;
        };
        let mut group = vec![];
        if let Some(resource) = self.needs_fetch(&first) {
            group.push(first);
            while queue
                .front()
                .is_some_and(|next| self.needs_fetch(next) == Some(resource))
            {
                group.extend(queue.pop_front());
            }
        } else {
            group.push(first);
        }
        Some(group)
    }

    fn head_needs_fetch(&self, key: &str) -> bool {
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues
            .get(key)
            .and_then(VecDeque::front)
            .is_some_and(|job| self.needs_fetch(job).is_some())
    }

    async fn work_through(self: Arc<Self>, key: String) {
        loop {
            // Wait for an API slot before taking the group, so that every event
            // that arrived meanwhile shares the fetch.
            let permit = if self.head_needs_fetch(&key) {
                match self.permits.acquire().await {
                    Ok(permit) => Some(permit),
                    Err(_) => return,
                }
            } else {
                None
            };
            let Some(group) = self.next_group(&key) else {
                return;
            };
            if self.handle(group, permit).await.is_err() {
                // Stopped: the rest of this object's events stay uncommitted.
                self.queues
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
                return;
            }
        }
    }

    /// Handles a group (events sharing one fetch, or a single event needing
    /// none); [`Unsettled`] before every record was delivered.
    async fn handle(
        &self,
        group: Vec<Job>,
        permit: Option<SemaphorePermit<'_>>,
    ) -> Result<(), Unsettled> {
        let fetched = match (self.needs_fetch(&group[0]), &group[0].event) {
            (Some(resource), Ok(event)) => {
                if group.len() > 1 {
                    crate::telemetry::coalesced(group.len() - 1);
                }
                let outcome = self.fetch(resource, &event.object_id).await;
                // The permits bound concurrent API calls; producing needs none.
                drop(permit);
                match outcome {
                    FetchOutcome::Interrupted => return Err(Unsettled),
                    outcome => Some(outcome),
                }
            }
            _ => None,
        };
        for job in &group {
            self.deliver(job, fetched.as_ref()).await?;
            let _ = self
                .done
                .send((job.message.partition(), job.message.offset()));
        }
        Ok(())
    }

    /// Produces one event's enriched record, or its dead letter.
    async fn deliver(&self, job: &Job, fetched: Option<&FetchOutcome>) -> Result<(), Unsettled> {
        let event = match (&job.event, fetched) {
            (Err(error), _) => {
                let unparsable = GaveUp {
                    class: DeadLetterClass::Unparsable,
                    error: error.to_string(),
                    status: None,
                    attempts: 0,
                };
                return self.dead_letter(job, unparsable).await;
            }
            (Ok(_), Some(FetchOutcome::GaveUp(gave_up))) => {
                return self.dead_letter(job, gave_up.clone()).await;
            }
            (Ok(event), _) => event,
        };
        let record = EnrichedRecord::new(event, job.received_at(), status(event, fetched));
        let record = match fetched {
            Some(FetchOutcome::Found(value, at)) => record.with_record(value.clone(), *at),
            _ => record,
        };
        crate::telemetry::event(record.status.as_str());
        self.emit(job, &record).await
    }

    async fn fetch(&self, resource: Resource, object_id: &str) -> FetchOutcome {
        let cache = self
            .user_cache
            .as_ref()
            .filter(|_| resource == Resource::Users);
        if let Some(value) = cache.and_then(|c| c.get(object_id)) {
            crate::telemetry::cache_hit();
            return FetchOutcome::Found(value, Utc::now());
        }
        // A refused key fails every event alike: wait for a fix, retrying
        // with a growing pause, rather than dead-letter the whole stream.
        let fetched = KEY_PAUSE
            .run(
                &self.stop,
                |_| self.client.fetch(resource, object_id, &self.stop),
                |error, _| match error {
                    FetchError::Unauthorized { status } => {
                        tracing::error!(%error, "enrichment paused");
                        self.readiness
                            .set(checks::MOBARO_API, Err(error.to_string()));
                        // A 403 before the key has read any record may be
                        // this object's alone: consumption goes on, so that
                        // a record the key reads can tell the two apart.
                        if *status == 401 || self.client.has_read_a_record() {
                            self.key_refused.send_replace(true);
                        }
                        crate::telemetry::paused();
                        Verdict::Retry
                    }
                    _ => Verdict::GiveUp,
                },
            )
            .await;
        match fetched {
            Ok((Fetched::Found(value), _)) => {
                self.resume();
                if let Some(cache) = cache {
                    cache.put(object_id, &value);
                }
                FetchOutcome::Found(value, Utc::now())
            }
            Ok((Fetched::NotFound, _)) => {
                self.resume();
                FetchOutcome::NotFound
            }
            Err(Failure::Stopped) | Err(Failure::Permanent(FetchError::Stopped(_))) => {
                FetchOutcome::Interrupted
            }
            Err(Failure::Permanent(error) | Failure::Exhausted { error, .. }) => {
                let Some(class) = error.class() else {
                    return FetchOutcome::Interrupted;
                };
                let attempts = match &error {
                    FetchError::Exhausted { attempts, .. } => *attempts,
                    _ => 1,
                };
                FetchOutcome::GaveUp(GaveUp {
                    class,
                    status: error.status(),
                    error: error.to_string(),
                    attempts,
                })
            }
        }
    }

    fn resume(&self) {
        if self.key_refused.send_replace(false) {
            tracing::info!("mobaro api accepts the key again; enrichment resumed");
        }
        self.readiness.set(checks::MOBARO_API, Ok(()));
    }

    /// Produces the enriched record; one the broker refuses for good (too
    /// large) goes to the dead-letter topic instead.
    async fn emit(&self, job: &Job, record: &EnrichedRecord) -> Result<(), Unsettled> {
        let value = serde_json::to_vec(record).expect("enriched records serialize");
        let outgoing = Outgoing {
            topic: &self.config.enriched_topic,
            key: job.message.key(),
            payload: &value,
            headers: with_headers(OwnedHeaders::new(), &headers::enriched(&record.event_id)),
        };
        match produce(&self.producer, &outgoing, &self.stop).await {
            Ok(()) => Ok(()),
            Err(Failure::Permanent(error)) | Err(Failure::Exhausted { error, .. }) => {
                let letter = GaveUp {
                    class: DeadLetterClass::RefusedByBroker,
                    error: format!("enriched record of {} bytes refused: {error}", value.len()),
                    status: None,
                    attempts: 1,
                };
                self.dead_letter(job, letter).await
            }
            Err(Failure::Stopped) => Err(Unsettled),
        }
    }

    async fn dead_letter(&self, job: &Job, gave_up: GaveUp) -> Result<(), Unsettled> {
        let message = &job.message;
        tracing::warn!(
            class = %gave_up.class,
            error = %gave_up.error,
            partition = message.partition(),
            offset = message.offset(),
            "event dead-lettered"
        );
        crate::telemetry::event("dead_letter");
        let letter = DeadLetter {
            stage: Stage::Enricher,
            class: gave_up.class,
            error: gave_up.error,
            http_status: gave_up.status,
            attempts: gave_up.attempts,
            original: Position {
                topic: message.topic().to_string(),
                partition: message.partition(),
                offset: message.offset(),
            },
        };
        let headers = with_headers(
            message.headers().cloned().unwrap_or_default(),
            &letter.headers(),
        );
        let outgoing = Outgoing {
            topic: &self.config.dead_letter_topic,
            key: message.key(),
            payload: message.payload().unwrap_or_default(),
            headers,
        };
        match produce(&self.producer, &outgoing, &self.stop).await {
            Ok(()) => {
                self.readiness.set(checks::DEAD_LETTER_TOPIC, Ok(()));
                Ok(())
            }
            Err(Failure::Stopped) => Err(Unsettled),
            Err(failure) => {
                // The raw event came through the same broker, so this is
                // rare; the event stays uncommitted rather than dropped.
                tracing::error!(%failure, partition = message.partition(), offset = message.offset(), "the dead-letter topic refused the event; it stays uncommitted");
                self.readiness
                    .set(checks::DEAD_LETTER_TOPIC, Err(failure.to_string()));
                Err(Unsettled)
            }
        }
    }
}

/// An event's work was cut short, so the event stays uncommitted: shutdown
/// came, or no topic accepted its record.
#[derive(Debug)]
pub(crate) struct Unsettled;
