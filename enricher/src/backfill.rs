//! `enricher backfill`: Mobaro's records through its list endpoints, as one
//! enriched `Snapshot` record per object on the enriched topic, so that the
//! lake holds the history from before the pipeline and what webhooks missed.
//!
//! **Order and windows.** Pages are requested in ascending update time,
//! always from the latest update time seen so far (less an overlap), at
//! offset 0. A record edited during the scan gets a newer update time and so
//! moves ahead of the cursor, where a later page lists it: nothing is skipped,
//! whatever moves. Records listed twice (the overlap) carry the same
//! `event_id` and are produced once per run. When a full page falls inside
//! the overlap (many edits within it), the next page starts at the cursor
//! itself; only records sharing one exact update time, more than a page of
//! them, are paged by offset (where an edit among them could shift one past
//! the scan: the one case offset paging cannot rule out).
//!
//! **Resuming.** After each page's records are acknowledged, the position is
//! written to a compacted checkpoint topic, keyed by resource: a run killed at
//! any point fetches at most one page again.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::message::{OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::Message;
use runtime::{produce, with_headers, Failure, KafkaArgs, Outgoing, TokenBucket};
use schemas::{headers, EnrichedRecord, EventKind, FetchStatus, Resource, WebhookEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::client::{FetchError, Fetched, MobaroClient};
use crate::config::Config;

/// What `enricher backfill` loads.
#[derive(Debug, Clone, clap::Args)]
pub struct BackfillArgs {
    /// Resources to load, comma separated (Results, Users, Locations,
    /// Assignments, Notes, Downtimes).
    #[arg(long = "resource", value_delimiter = ',', required = true)]
    pub resources: Vec<Resource>,

    /// Only records updated at or after this time (ISO-8601 UTC).
    #[arg(long, conflicts_with = "since")]
    pub updated_after: Option<DateTime<Utc>>,

    /// Only records updated before this time (ISO-8601 UTC). Without it the
    /// scan runs until it has caught up with now, so that records edited
    /// while it runs are included too.
    #[arg(long)]
    pub updated_before: Option<DateTime<Utc>>,

    /// Only records updated in this last stretch, e.g. `1d`: the
    /// reconciliation run, repeated on a schedule.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,

    /// Records per list request (Mobaro allows up to 20 on ordinary
    /// endpoints and 128 on bulk ones).
    #[arg(long, env = "BACKFILL_PAGE_SIZE", default_value_t = 128)]
    pub page_size: usize,

    /// List requests per second: the backfill's own share of the account's
    /// rate limit, separate from the live enricher's.
    #[arg(long, env = "BACKFILL_RATE_LIMIT", default_value_t = 2.0)]
    pub rate_limit: f64,

    /// How far before the latest update time seen each page starts again, so
    /// that an exclusive or second-precision filter cannot skip a record.
    #[arg(long, env = "BACKFILL_OVERLAP", default_value = "1s", value_parser = humantime::parse_duration)]
    pub overlap: Duration,

    /// Fetch each listed record by id (the enricher's record path) instead
    /// of taking the list item as the record: for list endpoints that answer
    /// summaries. Costs one request per object more.
    #[arg(long, env = "BACKFILL_FETCH_EACH")]
    pub fetch_each: bool,

    /// Compare what is listed with the lake at this location (as `LAKE_URL`):
    /// the run then reports how many objects were new to the lake and how
    /// many changed since its latest row. Reads the `object_id` and
    /// `event_timestamp` columns of every file of the resource's table.
    #[arg(long, env = "BACKFILL_COMPARE_LAKE")]
    pub compare_lake: Option<String>,

    /// Count pages and objects without producing anything.
    #[arg(long)]
    pub dry_run: bool,

    /// Start over instead of resuming an unfinished run.
    #[arg(long)]
    pub restart: bool,

    /// Compacted topic holding each resource's position.
    #[arg(long, env = "BACKFILL_CHECKPOINT_TOPIC", default_value = schemas::topics::BACKFILL_CHECKPOINTS)]
    pub checkpoint_topic: String,

    /// The shape of the list endpoints.
    #[command(flatten)]
    pub api: ListApi,
}

/// How the list endpoints are called and answer. Mobaro does not publish
/// the parameter names or the envelope: every part is configurable.
#[derive(Debug, Clone, clap::Args)]
pub struct ListApi {
    /// Path of a list endpoint under MOBARO_API_URL; `{collection}` is the
    /// resource's lower-case plural.
    #[arg(
        long = "list-path",
        env = "BACKFILL_LIST_PATH",
        default_value = "{collection}"
    )]
    pub path: String,
    /// Query parameter for the page size.
    #[arg(long, env = "BACKFILL_LIMIT_PARAM", default_value = "limit")]
    pub limit_param: String,
    /// Query parameter for the offset.
    #[arg(long, env = "BACKFILL_OFFSET_PARAM", default_value = "offset")]
    pub offset_param: String,
    /// Query parameter for "updated at or after".
    #[arg(
        long,
        env = "BACKFILL_UPDATED_AFTER_PARAM",
        default_value = "updatedAfter"
    )]
    pub updated_after_param: String,
    /// Query parameter for "updated before".
    #[arg(
        long,
        env = "BACKFILL_UPDATED_BEFORE_PARAM",
        default_value = "updatedBefore"
    )]
    pub updated_before_param: String,
    /// Query parameter for the order.
    #[arg(long, env = "BACKFILL_ORDER_PARAM", default_value = "orderBy")]
    pub order_param: String,
    /// Its value: ascending update time.
    #[arg(long, env = "BACKFILL_ORDER", default_value = "updated:asc")]
    pub order: String,
    /// JSON pointer to the items in a page.
    #[arg(long, env = "BACKFILL_ITEMS_PATH", default_value = "/items")]
    pub items_path: String,
    /// JSON pointer to the total count in a page (for progress only).
    #[arg(long, env = "BACKFILL_TOTAL_PATH", default_value = "/total")]
    pub total_path: String,
    /// JSON pointer to an item's id.
    #[arg(long, env = "BACKFILL_ID_FIELD", default_value = "/id")]
    pub id_field: String,
    /// JSON pointers to an item's update time, the first present wins.
    #[arg(
        long,
        env = "BACKFILL_UPDATED_FIELDS",
        value_delimiter = ',',
        default_value = "/updated,/updatedAt"
    )]
    pub updated_fields: Vec<String>,
}

/// Why a backfill stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// The list endpoint's answer does not have the configured shape.
    #[error("the list endpoint {url} answered a page the configuration does not read: {problem}; answer starts with {sample}")]
    Envelope {
        /// The request.
        url: String,
        /// What does not match.
        problem: String,
        /// The answer's first characters.
        sample: String,
    },
    /// The API refused or failed the list request for good.
    #[error("listing {resource}: {source}")]
    Api {
        /// The resource listed.
        resource: &'static str,
        /// The API's error.
        source: FetchError,
    },
    /// The broker refused the records or the checkpoint.
    #[error("producing to {topic}: {message}")]
    Produce {
        /// The topic.
        topic: String,
        /// Why.
        message: String,
    },
    /// Kafka configuration or a Kafka call failed.
    #[error(transparent)]
    Kafka(#[from] runtime::KafkaError),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Http(reqwest::Error),
    /// The lake to compare with could not be read.
    #[error("comparing with the lake: {0}")]
    Lake(lake::ReadError),
    /// A list URL could not be built.
    #[error("invalid list url: {0}")]
    Url(#[from] url::ParseError),
}

impl From<rdkafka::error::KafkaError> for BackfillError {
    fn from(error: rdkafka::error::KafkaError) -> Self {
        BackfillError::Kafka(error.into())
    }
}

/// Where a resource's scan is, as stored in the checkpoint topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Checkpoint {
    resource: Resource,
    updated_after: Option<DateTime<Utc>>,
    updated_before: Option<DateTime<Utc>>,
    /// The latest update time seen: the next page starts there.
    cursor: Option<DateTime<Utc>>,
    /// The page starts exactly at the cursor, without the overlap: a full
    /// page inside the overlap made no progress.
    #[serde(default)]
    tight: bool,
    /// Offset among records sharing the cursor's exact update time (only when
    /// more than a page share it).
    offset: usize,
    pages: u64,
    objects: u64,
    done: bool,
}

impl Checkpoint {
    /// Moves past a page of `listed` records, the newest updated at
    /// `newest`, `fresh` of them new to this run.
    fn advance(
        &mut self,
        listed: usize,
        newest: Option<DateTime<Utc>>,
        fresh: usize,
        limit: usize,
    ) {
        self.pages += 1;
        self.objects += fresh as u64;
        if listed < limit {
            self.done = true;
        } else if newest > self.cursor {
            self.cursor = newest;
            self.tight = false;
            self.offset = 0;
        } else if !self.tight {
            // A full page inside the overlap: start at the cursor itself.
            self.tight = true;
        } else {
            // More than a page share one update time: only an offset moves
            // on among them.
            self.offset += limit;
        }
    }
}

/// What a run did for one resource.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// List requests answered.
    pub pages: u64,
    /// Objects produced (or counted, in a dry run).
    pub objects: u64,
    /// With `--compare-lake`: objects the lake did not have, and objects
    /// listed with a later update time than the lake's latest row.
    pub compared: Option<Compared>,
}

/// Listed objects against the lake.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Compared {
    /// Not in the lake at all.
    pub new: u64,
    /// Updated after the lake's latest row of the object.
    pub changed: u64,
}

impl std::fmt::Display for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} objects in {} pages", self.objects, self.pages)?;
        if let Some(compared) = &self.compared {
            write!(
                f,
                "; compared with the lake: {} new, {} changed",
                compared.new, compared.changed
            )?;
        }
        Ok(())
    }
}

/// What the lake holds of a resource, and what a run found against it.
struct LakeComparison {
    latest: std::collections::HashMap<String, DateTime<Utc>>,
    counted: HashSet<String>,
    found: Compared,
}

impl LakeComparison {
    async fn load(location: &str, resource: Resource) -> Result<Self, BackfillError> {
        let lake = lake::Lake::open(location)
            .map_err(|error| BackfillError::Lake(lake::ReadError::Store(error)))?;
        let latest = lake::latest_per_object(&lake, schemas::table_for(resource))
            .await
            .map_err(BackfillError::Lake)?;
        tracing::info!(%resource, objects = latest.len(), lake = lake.describe(), "read the lake's latest row per object");
        Ok(LakeComparison {
            latest,
            counted: HashSet::new(),
            found: Compared::default(),
        })
    }

    /// Counts each object once per run: new, or changed since the lake.
    fn count(&mut self, items: &[Item]) {
        for item in items {
            if !self.counted.insert(item.id.clone()) {
                continue;
            }
            match self.latest.get(&item.id) {
                None => self.found.new += 1,
                Some(latest) if item.updated > *latest => self.found.changed += 1,
                Some(_) => {}
            }
        }
    }
}

/// Runs the backfill for every requested resource in turn.
pub async fn backfill(
    config: &Config,
    args: &BackfillArgs,
    shutdown: &CancellationToken,
) -> Result<Vec<(Resource, Loaded)>, BackfillError> {
    if !args.dry_run && config.create_topics {
        runtime::ensure_topics(&config.kafka, &[&config.enriched_topic]).await?;
        runtime::ensure_compacted_topic(&config.kafka, &args.checkpoint_topic).await?;
    }
    let share = TokenBucket::new(args.rate_limit.max(0.01), 1);
    let client = crate::api_client(config, Some(share)).map_err(BackfillError::Http)?;
    let producer = crate::enriched_producer(config)?;
    let stored = if args.dry_run || args.restart {
        Vec::new()
    } else {
        stored_checkpoints(&config.kafka, &args.checkpoint_topic).await?
    };
    let mut results = vec![];
    for resource in &args.resources {
        let scan = Scan {
            client: &client,
            producer: &producer,
            config,
            args,
            resource: *resource,
            shutdown,
        };
        // The latest checkpoint of the resource, if its run did not finish.
        let resumed = stored
            .iter()
            .rev()
            .find(|c| c.resource == *resource)
            .filter(|c| !c.done)
            .cloned();
        let loaded = scan.run(resumed).await?;
        results.push((*resource, loaded));
        if shutdown.is_cancelled() {
            break;
        }
    }
    Ok(results)
}

/// The checkpoints stored so far, oldest first.
async fn stored_checkpoints(
    kafka: &KafkaArgs,
    topic: &str,
) -> Result<Vec<Checkpoint>, BackfillError> {
    let (kafka, topic) = (kafka.clone(), topic.to_string());
    let messages: Vec<OwnedMessage> =
        tokio::task::spawn_blocking(move || runtime::read_topic_to_end(&kafka, &topic))
            .await
            .expect("the reader does not panic")?;
    Ok(messages
        .iter()
        .filter_map(|m| serde_json::from_slice(m.payload()?).ok())
        .collect())
}

/// One resource's scan.
struct Scan<'a> {
    client: &'a MobaroClient,
    producer: &'a FutureProducer,
    config: &'a Config,
    args: &'a BackfillArgs,
    resource: Resource,
    shutdown: &'a CancellationToken,
}

impl Scan<'_> {
    async fn run(&self, resumed: Option<Checkpoint>) -> Result<Loaded, BackfillError> {
        let mut checkpoint = match resumed {
            Some(checkpoint) => {
                tracing::info!(resource = %self.resource, cursor = ?checkpoint.cursor, offset = checkpoint.offset, objects = checkpoint.objects, "resuming an unfinished backfill");
                checkpoint
            }
            None => {
                let after = match (self.args.updated_after, self.args.since) {
                    (Some(after), _) => Some(after),
                    (None, Some(since)) => chrono::Duration::from_std(since)
                        .ok()
                        .map(|since| Utc::now() - since),
                    (None, None) => None,
                };
                Checkpoint {
                    resource: self.resource,
                    updated_after: after,
                    updated_before: self.args.updated_before,
                    cursor: after,
                    tight: false,
                    offset: 0,
                    pages: 0,
                    objects: 0,
                    done: false,
                }
            }
        };
        let run_start = (checkpoint.pages, checkpoint.objects);
        let started = Instant::now();
        let mut progress = Progress::new(self.resource);
        let mut comparison = match &self.args.compare_lake {
            Some(location) => Some(LakeComparison::load(location, self.resource).await?),
            None => None,
        };
        let mut total = None;
        // Records produced from the previous page: the overlap lists them again.
        let mut previous: HashSet<(String, DateTime<Utc>)> = HashSet::new();
        let limit = self.args.page_size.max(1);
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            let (url, page) = self.page(&checkpoint, limit).await?;
            let items = self.items(&url, &page)?;
            if total.is_none() {
                total = self.args.api.total_path_value(&page);
            }
            let (listed, newest) = (items.len(), items.iter().map(|i| i.updated).max());
            let listed_now: HashSet<(String, DateTime<Utc>)> =
                items.iter().map(|i| (i.id.clone(), i.updated)).collect();
            let mut fresh: Vec<Item> = items
                .into_iter()
                .filter(|i| !previous.contains(&(i.id.clone(), i.updated)))
                .collect();
            if !self.args.dry_run {
                if self.args.fetch_each {
                    self.fetch_each(&mut fresh).await?;
                }
                self.produce(&fresh).await?;
            }
            if let Some(comparison) = &mut comparison {
                comparison.count(&fresh);
            }
            checkpoint.advance(listed, newest, fresh.len(), limit);
            tracing::debug!(%url, listed, fresh = fresh.len(), cursor = ?checkpoint.cursor, "page");
            previous = listed_now;
            if !self.args.dry_run {
                self.save(&checkpoint).await?;
            }
            if checkpoint.done {
                break;
            }
            if progress.due(checkpoint.objects - run_start.1, total) {
                self.report(&checkpoint, run_start.1, started, total);
            }
        }
        progress.finish();
        self.report(&checkpoint, run_start.1, started, total);
        Ok(Loaded {
            pages: checkpoint.pages - run_start.0,
            objects: checkpoint.objects - run_start.1,
            compared: comparison.map(|c| c.found),
        })
    }

    /// One list request from the checkpoint's position.
    async fn page(
        &self,
        checkpoint: &Checkpoint,
        limit: usize,
    ) -> Result<(url::Url, Value), BackfillError> {
        let api = &self.args.api;
        let mut query = vec![
            (api.limit_param.as_str(), limit.to_string()),
            (api.offset_param.as_str(), checkpoint.offset.to_string()),
            (api.order_param.as_str(), api.order.clone()),
        ];
        let overlap = if checkpoint.tight {
            chrono::Duration::zero()
        } else {
            chrono::Duration::from_std(self.args.overlap).unwrap_or_default()
        };
        let from = match (checkpoint.cursor, checkpoint.updated_after) {
            (Some(cursor), Some(after)) => Some((cursor - overlap).max(after)),
            (Some(cursor), None) => Some(cursor - overlap),
            (None, after) => after,
        };
        if let Some(from) = from {
            query.push((api.updated_after_param.as_str(), iso(from)));
        }
        if let Some(before) = checkpoint.updated_before {
            query.push((api.updated_before_param.as_str(), iso(before)));
        }
        let path = api.path.replace("{collection}", self.resource.collection());
        let url = self.client.list_url(&path, &query)?;
        let (page, _) = self
            .client
            .list(&url, self.shutdown)
            .await
            .map_err(|source| BackfillError::Api {
                resource: self.resource.as_str(),
                source,
            })?;
        Ok((url, page))
    }

    /// The page's items, or why the page does not have the configured shape.
    fn items(&self, url: &url::Url, page: &Value) -> Result<Vec<Item>, BackfillError> {
        let api = &self.args.api;
        let problem = |problem: String| BackfillError::Envelope {
            url: url.to_string(),
            problem,
            sample: page.to_string().chars().take(200).collect(),
        };
        let items = page
            .pointer(&api.items_path)
            .and_then(Value::as_array)
            .ok_or_else(|| problem(format!("no array at {}", api.items_path)))?;
        items
            .iter()
            .map(|item| {
                let id = item
                    .pointer(&api.id_field)
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        problem(format!("an item without a text id at {}", api.id_field))
                    })?;
                let updated = api
                    .updated_fields
                    .iter()
                    .find_map(|f| item.pointer(f)?.as_str()?.parse::<DateTime<Utc>>().ok())
                    .ok_or_else(|| {
                        problem(format!(
                            "item {id} has no update time at {}",
                            api.updated_fields.join(" or ")
                        ))
                    })?;
                Ok(Item {
                    id: id.to_string(),
                    updated,
                    record: item.clone(),
                })
            })
            .collect()
    }

    /// Replaces each item by its full record, fetched by id (a few at a
    /// time); a record deleted since it was listed is left as listed.
    async fn fetch_each(&self, items: &mut [Item]) -> Result<(), BackfillError> {
        use futures::StreamExt;
        let fetched: Vec<_> = futures::stream::iter(items.iter())
            .map(|item| self.client.fetch(self.resource, &item.id, self.shutdown))
            .buffered(self.config.concurrency.max(1))
            .collect()
            .await;
        for (item, fetched) in items.iter_mut().zip(fetched) {
            match fetched {
                Ok((Fetched::Found(record), _)) => item.record = record,
                Ok((Fetched::NotFound, _)) => {}
                Err(source) => {
                    return Err(BackfillError::Api {
                        resource: self.resource.as_str(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Produces one Snapshot record per item and waits for every ack.
    async fn produce(&self, items: &[Item]) -> Result<(), BackfillError> {
        let now = Utc::now();
        let records: Vec<(EnrichedRecord, Vec<u8>)> = items
            .iter()
            .map(|item| {
                let event = WebhookEvent {
                    resource: self.resource,
                    event: EventKind::Snapshot,
                    object_id: item.id.clone(),
                    timestamp: item.updated,
                };
                let record = EnrichedRecord::new(&event, None, FetchStatus::Found)
                    .with_record(item.record.clone(), now);
                let value = serde_json::to_vec(&record).expect("enriched records serialize");
                (record, value)
            })
            .collect();
        let sends = records.iter().map(|(record, value)| {
            let outgoing = Outgoing {
                topic: &self.config.enriched_topic,
                key: Some(record.object_id.as_bytes()),
                payload: value,
                headers: with_headers(
                    OwnedHeaders::new(),
                    &[(headers::EVENT_ID, record.event_id.as_str())],
                ),
            };
            async move { produce(self.producer, &outgoing, self.shutdown).await }
        });
        for result in futures::future::join_all(sends).await {
            match result {
                Ok(()) => {}
                Err(Failure::Stopped) => {
                    return Err(BackfillError::Produce {
                        topic: self.config.enriched_topic.clone(),
                        message: "stopped before every record was acknowledged".into(),
                    })
                }
                Err(failure) => {
                    return Err(BackfillError::Produce {
                        topic: self.config.enriched_topic.clone(),
                        message: failure.to_string(),
                    })
                }
            }
        }
        crate::telemetry::backfilled(items.len());
        Ok(())
    }

    async fn save(&self, checkpoint: &Checkpoint) -> Result<(), BackfillError> {
        let value = serde_json::to_vec(checkpoint).expect("checkpoints serialize");
        let outgoing = Outgoing {
            topic: &self.args.checkpoint_topic,
            key: Some(self.resource.collection().as_bytes()),
            payload: &value,
            headers: OwnedHeaders::new(),
        };
        produce(self.producer, &outgoing, &CancellationToken::new())
            .await
            .map_err(|failure| BackfillError::Produce {
                topic: self.args.checkpoint_topic.clone(),
                message: failure.to_string(),
            })
    }

    fn report(
        &self,
        checkpoint: &Checkpoint,
        objects_before: u64,
        started: Instant,
        total: Option<u64>,
    ) {
        let objects = checkpoint.objects - objects_before;
        let rate = objects as f64 / started.elapsed().as_secs_f64().max(0.001);
        let eta = total
            .filter(|_| !checkpoint.done && rate > 0.0)
            .map(|t| Duration::from_secs_f64(t.saturating_sub(objects) as f64 / rate));
        tracing::info!(
            resource = %self.resource,
            pages = checkpoint.pages,
            objects = checkpoint.objects,
            per_second = format!("{rate:.1}"),
            total = ?total,
            eta = ?eta.map(|d| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()),
            done = checkpoint.done,
            dry_run = self.args.dry_run,
            "backfill progress"
        );
    }
}

impl ListApi {
    fn total_path_value(&self, page: &Value) -> Option<u64> {
        page.pointer(&self.total_path)?.as_u64()
    }
}

/// A progress bar on a terminal; otherwise a log line every 5 s.
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines { last: Instant },
}

impl Progress {
    fn new(resource: Resource) -> Progress {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Progress::Lines {
                last: Instant::now(),
            };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} objects, {per_sec}, ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(resource.as_str());
        Progress::Bar(bar)
    }

    /// Moves the bar to `objects`; whether a log line is due instead.
    fn due(&mut self, objects: u64, total: Option<u64>) -> bool {
        match self {
            Progress::Bar(bar) => {
                if let Some(total) = total {
                    bar.set_length(total.max(objects));
                }
                bar.set_position(objects);
                false
            }
            Progress::Lines { last } => {
                let due = last.elapsed() >= Duration::from_secs(5);
                if due {
                    *last = Instant::now();
                }
                due
            }
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish();
        }
    }
}

/// One listed record.
struct Item {
    id: String,
    updated: DateTime<Utc>,
    record: Value,
}

fn iso(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, updated: &str) -> Item {
        Item {
            id: id.into(),
            updated: updated.parse().expect("a time"),
            record: Value::Null,
        }
    }

    /// Advances past `items` as the scan does.
    fn advance(checkpoint: &mut Checkpoint, items: &[Item], fresh: usize, limit: usize) {
        let newest = items.iter().map(|i| i.updated).max();
        checkpoint.advance(items.len(), newest, fresh, limit);
    }

    fn start() -> Checkpoint {
        Checkpoint {
            resource: Resource::Results,
            updated_after: None,
            updated_before: None,
            cursor: None,
            tight: false,
            offset: 0,
            pages: 0,
            objects: 0,
            done: false,
        }
    }

    #[test]
    fn the_cursor_follows_update_times_and_offsets_only_move_among_equal_ones() {
        let mut checkpoint = start();
        let t1 = "2025-01-01T00:00:01Z";
        let t2 = "2025-01-01T00:00:02Z";
        advance(&mut checkpoint, &[item("a", t1), item("b", t2)], 2, 2);
        assert_eq!(checkpoint.cursor, Some(t2.parse().expect("time")));
        assert!(!checkpoint.tight && checkpoint.offset == 0);

        // A full page inside the overlap: start at the cursor itself...
        advance(&mut checkpoint, &[item("b", t2), item("c", t2)], 1, 2);
        assert!(checkpoint.tight && checkpoint.offset == 0);
        // ...and when a page still shares the cursor's exact time, page on.
        advance(&mut checkpoint, &[item("c", t2), item("d", t2)], 1, 2);
        assert_eq!(checkpoint.offset, 2);
        // Progress resets both.
        advance(
            &mut checkpoint,
            &[item("e", "2025-01-01T00:00:03Z"), item("f", t2)],
            2,
            2,
        );
        assert!(!checkpoint.tight && checkpoint.offset == 0);

        // A short page is the end.
        advance(&mut checkpoint, &[item("g", "2025-01-01T00:00:04Z")], 1, 2);
        assert!(checkpoint.done);
        assert_eq!((checkpoint.pages, checkpoint.objects), (5, 7));
    }
}
