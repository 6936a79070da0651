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
use rdkafka::Message;
use runtime::checks;
use runtime::{produce, with_headers, Failure, Outgoing, Readiness, Retry, Verdict};
use schemas::{
    headers, DeadLetter, DeadLetterClass, EnrichedRecord, EventKind, EventParseError, FetchStatus,
    Position, Resource, Stage, WebhookEvent,
};
use serde_json::Value;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::accounts::{Account, Registry};
use crate::cache::RecordCache;
use crate::client::{FetchError, Fetched};
use crate::config::Config;

/// While the API refuses the key: first pause 2 s, doubling up to a minute.
const KEY_PAUSE: Retry = Retry::forever(Duration::from_secs(2), Duration::from_secs(60));

/// A raw event taken from Kafka.
pub(crate) struct Job {
    pub message: OwnedMessage,
    event: Result<WebhookEvent, EventParseError>,
    /// What its headers say: its account, when ingest received it.
    headers: headers::RawHeaders,
}

impl Job {
    pub(crate) fn new(message: OwnedMessage) -> Self {
        let event = WebhookEvent::from_json(message.payload().unwrap_or_default());
        let headers = headers::RawHeaders::decode(|name| {
            let value = message.headers()?.iter().find(|h| h.key == name)?.value?;
            std::str::from_utf8(value).ok()
        });
        Job {
            message,
            event,
            headers,
        }
    }

    /// The queue this job belongs to: its account's object (the Kafka key).
    pub(crate) fn key(&self) -> String {
        match &self.event {
            Ok(event) => schemas::object_key(self.account(), &event.object_id),
            Err(_) => String::from_utf8_lossy(self.message.key().unwrap_or_default()).into_owned(),
        }
    }

    /// The account the event came from.
    fn account(&self) -> &str {
        self.headers.account()
    }

    fn received_at(&self) -> Option<DateTime<Utc>> {
        self.headers.received_at
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
    /// The accounts, each with its API client and fetches at once.
    pub accounts: Arc<Registry>,
    pub producer: runtime::Producer,
    pub config: Config,
    pub readiness: Readiness,
    pub user_cache: Option<RecordCache>,
    queues: Mutex<HashMap<String, VecDeque<Job>>>,
    /// (partition, offset) of each event whose record the broker acknowledged.
    done: mpsc::UnboundedSender<(i32, i64)>,
    /// Cancelled when the drain deadline passes at shutdown.
    stop: CancellationToken,
    /// The erasure ledger, when the enricher consults it.
    erasures: Option<Arc<lake::Erasures>>,
}

impl Enricher {
    pub(crate) fn new(
        accounts: Arc<Registry>,
        producer: runtime::Producer,
        config: Config,
        readiness: Readiness,
        done: mpsc::UnboundedSender<(i32, i64)>,
        stop: CancellationToken,
        erasures: Option<Arc<lake::Erasures>>,
    ) -> Self {
        let user_cache =
            (!config.user_cache_ttl.is_zero()).then(|| RecordCache::new(config.user_cache_ttl));
        Enricher {
            accounts,
            producer,
            config,
            readiness,
            user_cache,
            queues: Mutex::new(HashMap::new()),
            done,
            stop,
            erasures,
        }
    }

    /// Whether the API refuses every account's key, as it changes:
    /// consumption pauses while it does (one account's refused key holds up
    /// that account's events only).
    pub(crate) fn key_refused(&self) -> tokio::sync::watch::Receiver<bool> {
        self.accounts.all_refused()
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

    /// The account and resource of the fetch `job` needs, if any; None too
    /// while its account is unknown (it is resolved when handled).
    fn needs_fetch(&self, job: &Job) -> Option<(Arc<Account>, Resource)> {
        let event = job.event.as_ref().ok()?;
        let account = self.accounts.get(job.account())?;
        let resource = account.needs_fetch(event)?;
        Some((account, resource))
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
        if let Some((_, resource)) = self.needs_fetch(&first) {
            group.push(first);
            while queue
                .front()
                .is_some_and(|next| self.needs_fetch(next).map(|(_, r)| r) == Some(resource))
            {
                group.extend(queue.pop_front());
            }
        } else {
            group.push(first);
        }
        Some(group)
    }

    /// The account whose fetch the head of `key`'s queue needs, if any.
    fn head_needs_fetch(&self, key: &str) -> Option<Arc<Account>> {
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let head = queues.get(key).and_then(VecDeque::front)?;
        self.needs_fetch(head).map(|(account, _)| account)
    }

    async fn work_through(self: Arc<Self>, key: String) {
        loop {
            // Wait for an API slot before taking the group, so that every event
            // that arrived meanwhile shares the fetch.
            let permit = match self.head_needs_fetch(&key) {
                Some(account) => match account.permits.clone().acquire_owned().await {
                    Ok(permit) => Some(permit),
                    Err(_) => return,
                },
                None => None,
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
        mut permit: Option<OwnedSemaphorePermit>,
    ) -> Result<(), Unsettled> {
        let account = self.account_of(&group[0]).await?;
        let fetched = match (&group[0].event, account.as_ref()) {
            (Ok(event), Some(account)) => match account.needs_fetch(event) {
                Some(resource) => {
                    if group.len() > 1 {
                        crate::telemetry::coalesced(group.len() - 1);
                    }
                    if permit.is_none() {
                        permit = account.permits.clone().acquire_owned().await.ok();
                    }
                    let outcome = self.fetch(account, resource, &event.object_id).await;
                    // The permits bound concurrent API calls; producing needs none.
                    drop(permit);
                    match outcome {
                        FetchOutcome::Interrupted => return Err(Unsettled),
                        outcome => Some(outcome),
                    }
                }
                None => None,
            },
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

    /// The account of `job`'s event, waiting while the configuration does
    /// not have it (an account added to ingest's file before this one's
    /// reload, or removed with events still on the topic): its events wait
    /// for it like those of a refused key. None for an unreadable event,
    /// which needs no account.
    async fn account_of(&self, job: &Job) -> Result<Option<Arc<Account>>, Unsettled> {
        if job.event.is_err() {
            return Ok(None);
        }
        let id = job.account();
        let found = KEY_PAUSE
            .run(
                &self.stop,
                |_| std::future::ready(self.accounts.get(id).ok_or(())),
                |_, attempt| {
                    if attempt == 1 {
                        tracing::error!(account = %id, "an event of an account the configuration does not have: its events wait until the accounts file names it");
                        self.readiness
                            .set(checks::MOBARO_API, Err(format!("events of unknown account {id} wait")));
                    }
                    Verdict::Retry
                },
            )
            .await;
        match found {
            Ok(account) => Ok(Some(account)),
            Err(_) => Err(Unsettled),
        }
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
        let record = EnrichedRecord::in_account(
            job.account(),
            event,
            job.received_at(),
            status(event, fetched),
        );
        let record = match fetched {
            Some(FetchOutcome::Found(value, at)) => record.with_record(value.clone(), *at),
            _ => record,
        };
        crate::telemetry::event(&record.account, record.status.as_str());
        self.emit(job, &record).await
    }

    async fn fetch(
        &self,
        account: &Arc<Account>,
        resource: Resource,
        object_id: &str,
    ) -> FetchOutcome {
        let cache = self
            .user_cache
            .as_ref()
            .filter(|_| resource == Resource::Users);
        let cache_key = schemas::object_key(&account.id, object_id);
        if let Some(value) = cache.and_then(|c| c.get(&cache_key)) {
            crate::telemetry::cache_hit();
            return FetchOutcome::Found(value, Utc::now());
        }
        // A refused key fails every event of its account alike: wait for a
        // fix, retrying with a growing pause, rather than dead-letter the
        // account's stream. Other accounts go on. Each attempt takes the
        // account as configured now: a key fixed in the accounts file is
        // the next attempt's.
        let used = std::sync::Mutex::new(account.clone());
        let fetched = KEY_PAUSE
            .run(
                &self.stop,
                |_| {
                    let current = self.accounts.get(&account.id).unwrap_or_else(|| account.clone());
                    *used.lock().unwrap_or_else(|p| p.into_inner()) = current.clone();
                    async move { current.client.fetch(resource, object_id, &self.stop).await }
                },
                |error, _| match error {
                    FetchError::Unauthorized { status } => {
                        let account = used.lock().unwrap_or_else(|p| p.into_inner()).clone();
                        tracing::error!(account = %account.id, %error, "enrichment paused for the account");
                        // A 403 before the key has read any record may be
                        // this object's alone: the account's other events go
                        // on, so that a record the key reads can tell the
                        // two apart.
                        if *status == 401 || account.client.has_read_a_record() {
                            self.accounts.set_refused(&account, true);
                        }
                        crate::telemetry::paused(&account.id);
                        Verdict::Retry
                    }
                    _ => Verdict::GiveUp,
                },
            )
            .await;
        let account = used.into_inner().unwrap_or_else(|p| p.into_inner());
        match fetched {
            Ok((Fetched::Found(value), _)) => {
                self.resume(&account);
                if let Some(cache) = cache {
                    cache.put(&cache_key, &value);
                }
                FetchOutcome::Found(value, Utc::now())
            }
            Ok((Fetched::NotFound, _)) => {
                self.resume(&account);
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

    fn resume(&self, account: &Account) {
        if self.accounts.set_refused(account, false) {
            tracing::info!(account = %account.id, "mobaro api accepts the account's key again; its enrichment resumed");
        }
    }

    /// Produces the enriched record; one the broker refuses for good (too
    /// large) goes to the dead-letter topic instead.
    async fn emit(&self, job: &Job, record: &EnrichedRecord) -> Result<(), Unsettled> {
        let value = serde_json::to_vec(record).expect("enriched records serialize");
        // A forgotten person's own record is not produced: the event is done.
        let Some(value) = crate::screened(self.erasures.as_deref(), value) else {
            return Ok(());
        };
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
        crate::telemetry::event(job.account(), "dead_letter");
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
