//! One resource's scan through its list endpoint.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::message::OwnedHeaders;
use runtime::{produce, with_headers, Failure, Outgoing};
use schemas::{headers, EnrichedRecord, EventKind, FetchStatus, Resource, WebhookEvent};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::arguments::BackfillArgs;
use super::checkpoint::{Checkpoint, Turn};
use super::comparison::{LakeComparison, Loaded};
use super::error::BackfillError;
use super::page::{iso, items, Item};
use super::pipeline::Pipeline;
use super::progress::Progress;
use super::Target;
use crate::client::{FetchError, Fetched};

/// One resource's scan.
pub(super) struct Scan<'a> {
    pub(super) target: &'a Target<'a>,
    pub(super) args: &'a BackfillArgs,
    pub(super) resource: Resource,
    pub(super) shutdown: &'a CancellationToken,
}

/// One list request: its URL and the update time it starts from.
struct Request {
    url: url::Url,
    from: Option<DateTime<Utc>>,
}

/// Slack below a page's start time and above its end before an item counts
/// as outside the filter: an API may compare at whole seconds.
const FILTER_SLACK: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

impl Scan<'_> {
    pub(super) async fn run(&self, resumed: Option<Checkpoint>) -> Result<Loaded, BackfillError> {
        let mut checkpoint = self.starting_point(resumed);
        let before = (checkpoint.pages, checkpoint.objects);
        let started = Instant::now();
        let mut progress = Progress::new(self.resource);
        let mut comparison = match &self.args.compare_lake {
            Some(location) => Some(LakeComparison::load(location, self.resource).await?),
            None => None,
        };
        // Items listed at or after the next page's start: the overlap lists
        // them again, and they are produced once.
        let mut seen: HashSet<(String, DateTime<Utc>)> = HashSet::new();
        let mut pipeline = Pipeline::new(self);
        let mut asked = self.request(&checkpoint)?;
        let mut page = self.list(&asked.url).await?;
        loop {
            let first = pipeline.pushed == 0;
            let fresh = self
                .accept(
                    &asked,
                    page,
                    first,
                    &mut checkpoint,
                    &mut seen,
                    &mut comparison,
                )
                .await?;
            let last = checkpoint.done || self.shutdown.is_cancelled();
            // This page's records go to the broker while the next page is
            // asked for; the position is stored only once every record up to
            // it is acknowledged, so a kill lists and produces at most
            // `pages_in_flight` pages again.
            pipeline.push(fresh, checkpoint.clone());
            let next = match last {
                true => None,
                false => Some(self.request(&checkpoint)?),
            };
            let fetch = async {
                match &next {
                    Some(next) => Some(self.list(&next.url).await),
                    None => None,
                }
            };
            let fetched = pipeline.drive_while(fetch).await?;
            if progress.due(checkpoint.objects - before.1, checkpoint.total) {
                self.report(&checkpoint, before.1, started);
            }
            let (Some(next), Some(fetched)) = (next, fetched) else {
                break;
            };
            asked = next;
            page = pipeline.stored_before(fetched).await?;
        }
        pipeline.drain().await?;
        progress.finish();
        self.report(&checkpoint, before.1, started);
        self.outcome(&checkpoint, before, started, comparison)
    }

    /// The position a run starts from: a resumed checkpoint, or the start
    /// of the window the arguments ask for.
    fn starting_point(&self, resumed: Option<Checkpoint>) -> Checkpoint {
        if let Some(checkpoint) = resumed {
            tracing::info!(resource = %self.resource, run = %checkpoint.run, cursor = ?checkpoint.cursor, offset = checkpoint.offset, objects = checkpoint.objects, "resuming an unfinished backfill with the same parameters");
            return checkpoint;
        }
        let after = match (self.args.updated_after, self.args.since) {
            (Some(after), _) => Some(after),
            (None, Some(since)) => chrono::Duration::from_std(since)
                .ok()
                .map(|since| Utc::now() - since),
            (None, None) => None,
        };
        Checkpoint::start(
            self.resource,
            self.args.run_key(self.resource, self.target.client.base()),
            after,
            self.args.updated_before,
            self.args.page_size,
        )
    }

    /// One listed page, checked against what was asked, reduced to the
    /// items not produced yet (fetched whole with `--fetch-each`), counted
    /// against the lake; the checkpoint advanced past it.
    async fn accept(
        &self,
        asked: &Request,
        page: Value,
        first: bool,
        checkpoint: &mut Checkpoint,
        seen: &mut HashSet<(String, DateTime<Utc>)>,
        comparison: &mut Option<LakeComparison>,
    ) -> Result<Vec<Item>, BackfillError> {
        if checkpoint.pages == 0 {
            checkpoint.total = self.args.api.total_path_value(&page);
        }
        let listed = items(&self.args.api, &asked.url, page)?;
        self.verify(asked, &listed.items)?;
        if first {
            if let Some(rejected) = listed.rejected.first() {
                // The first page read here checks the configuration.
                return Err(BackfillError::Envelope {
                    url: asked.url.to_string(),
                    problem: rejected.problem.clone(),
                    sample: rejected.sample.clone(),
                });
            }
        }
        for rejected in &listed.rejected {
            tracing::warn!(resource = %self.resource, url = %asked.url, position = rejected.index, problem = %rejected.problem, item = %rejected.sample, "skipped an item");
            crate::telemetry::backfill_skipped(self.resource);
        }
        checkpoint.skipped += listed.rejected.len() as u64;
        let count = listed.len();
        let newest = listed.items.iter().map(|i| i.updated).max();
        let mut fresh: Vec<Item> = listed
            .items
            .into_iter()
            .filter(|item| seen.insert((item.id.clone(), item.updated)))
            .collect();
        if self.args.fetch_each && !self.args.dry_run {
            fresh = self.fetch_each(fresh, &asked.url, checkpoint).await?;
        }
        if let Some(comparison) = comparison {
            comparison.count(&fresh);
        }
        let turn = checkpoint.advance(count, newest, fresh.len());
        self.announce(turn, asked, checkpoint);
        tracing::debug!(url = %asked.url, listed = count, fresh = fresh.len(), cursor = ?checkpoint.cursor, "page");
        if let Some(from) = self.start_of(checkpoint) {
            seen.retain(|(_, updated)| *updated >= from);
        }
        Ok(fresh)
    }

    /// Says when the scan changed how it pages.
    fn announce(&self, turn: Turn, asked: &Request, checkpoint: &Checkpoint) {
        match turn {
            Turn::Plain => {}
            Turn::CapAdopted(cap) => {
                tracing::warn!(resource = %self.resource, url = %asked.url, asked = self.args.page_size, cap, "the endpoint answers at most {cap} items where {} were asked, and more followed: asking for {cap} from now on", self.args.page_size)
            }
            Turn::ByOffset => {
                tracing::warn!(resource = %self.resource, url = %asked.url, offset = checkpoint.offset, "a full page brought nothing past the latest update time: more records share the overlap than a page holds, paging by offset among them (an edit among them while this runs could shift one past the scan; the final report says how many pages were paged so)")
            }
        }
    }

    /// What a scan that left its loop loaded: an error when shutdown cut it
    /// short or when it listed fewer objects than the endpoint said it has.
    fn outcome(
        &self,
        checkpoint: &Checkpoint,
        (pages_before, objects_before): (u64, u64),
        started: Instant,
        comparison: Option<LakeComparison>,
    ) -> Result<Loaded, BackfillError> {
        if !checkpoint.done {
            // Only shutdown ends the loop before the list does.
            return Err(self.interrupted());
        }
        if let Some(total) = checkpoint.total {
            if checkpoint.objects + checkpoint.skipped < total {
                return Err(BackfillError::Incomplete {
                    resource: self.resource.as_str(),
                    listed: checkpoint.objects,
                    total,
                });
            }
        }
        Ok(Loaded {
            pages: checkpoint.pages - pages_before,
            objects: checkpoint.objects - objects_before,
            scanning: started.elapsed(),
            skipped: checkpoint.skipped,
            offset_pages: checkpoint.offset_pages,
            compared: comparison.map(|c| c.found),
        })
    }

    /// Where the next page starts: an overlap before the cursor (or the
    /// window's start), so that an inclusive and an exclusive filter both
    /// list the records at the cursor's exact time.
    fn start_of(&self, checkpoint: &Checkpoint) -> Option<DateTime<Utc>> {
        let overlap = chrono::Duration::from_std(self.args.overlap)
            .unwrap_or_default()
            .max(chrono::Duration::milliseconds(1));
        match (checkpoint.cursor, checkpoint.updated_after) {
            (Some(cursor), Some(after)) => Some(cursor.max(after) - overlap),
            (Some(cursor), None) => Some(cursor - overlap),
            (None, after) => after.map(|after| after - overlap),
        }
    }

    /// The list request at the checkpoint's position.
    fn request(&self, checkpoint: &Checkpoint) -> Result<Request, BackfillError> {
        let api = &self.args.api;
        let mut query = vec![
            (
                api.limit_param.as_str(),
                checkpoint.limit.max(1).to_string(),
            ),
            (api.offset_param.as_str(), checkpoint.offset.to_string()),
            (api.order_param.as_str(), api.order.clone()),
        ];
        let from = self.start_of(checkpoint);
        if let Some(from) = from {
            query.push((api.updated_after_param.as_str(), iso(from)));
        }
        if let Some(before) = checkpoint.updated_before {
            query.push((api.updated_before_param.as_str(), iso(before)));
        }
        let path = api.path.replace("{collection}", self.resource.collection());
        let url = self.target.client.list_url(&path, &query)?;
        Ok(Request { url, from })
    }

    /// One list page.
    async fn list(&self, url: &url::Url) -> Result<Value, BackfillError> {
        let (page, _) = self
            .target
            .client
            .list(url, self.shutdown)
            .await
            .map_err(|source| match source {
                FetchError::Stopped(_) => self.interrupted(),
                source => BackfillError::Api {
                    resource: self.resource.as_str(),
                    source,
                },
            })?;
        Ok(page)
    }

    /// The error of a scan that shutdown stopped before the list's end.
    fn interrupted(&self) -> BackfillError {
        BackfillError::Interrupted {
            resource: self.resource.as_str(),
        }
    }

    /// Checks that the endpoint applied the order and the filter asked for:
    /// a scan over an endpoint that ignores either cannot list every
    /// record, so it stops, naming the setting.
    fn verify(&self, asked: &Request, items: &[Item]) -> Result<(), BackfillError> {
        let api = &self.args.api;
        let ignored = |what, asked_for: String, got: String, setting| BackfillError::Ignored {
            url: asked.url.to_string(),
            what,
            asked: asked_for,
            got,
            setting,
        };
        for pair in items.windows(2) {
            if pair[1].updated < pair[0].updated {
                return Err(ignored(
                    "the order",
                    format!("{}={}", api.order_param, api.order),
                    format!(
                        "{} (updated {}) after {} (updated {})",
                        pair[1].id,
                        iso(pair[1].updated),
                        pair[0].id,
                        iso(pair[0].updated)
                    ),
                    "BACKFILL_ORDER_PARAM and BACKFILL_ORDER",
                ));
            }
        }
        if let Some(from) = asked.from {
            if let Some(item) = items.iter().find(|i| i.updated < from - FILTER_SLACK) {
                return Err(ignored(
                    "the update-time filter",
                    format!("{}={}", api.updated_after_param, iso(from)),
                    format!("{} updated {}", item.id, iso(item.updated)),
                    "BACKFILL_UPDATED_AFTER_PARAM",
                ));
            }
        }
        if let Some(before) = self.args.updated_before {
            if let Some(item) = items.iter().find(|i| i.updated > before + FILTER_SLACK) {
                return Err(ignored(
                    "the updated-before filter",
                    format!("{}={}", api.updated_before_param, iso(before)),
                    format!("{} updated {}", item.id, iso(item.updated)),
                    "BACKFILL_UPDATED_BEFORE_PARAM",
                ));
            }
        }
        Ok(())
    }

    /// Replaces each item by its full record, fetched by id (a few at a
    /// time); a record deleted since it was listed is left as listed, one
    /// refused to the key (or failing for good) is skipped and counted.
    async fn fetch_each(
        &self,
        items: Vec<Item>,
        url: &url::Url,
        checkpoint: &mut Checkpoint,
    ) -> Result<Vec<Item>, BackfillError> {
        use futures::StreamExt;
        let fetched: Vec<_> = futures::stream::iter(items.iter())
            .map(|item| {
                self.target
                    .client
                    .fetch(self.resource, &item.id, self.shutdown)
            })
            .buffered(self.target.concurrency.max(1))
            .collect()
            .await;
        let mut kept = Vec::with_capacity(items.len());
        for (mut item, fetched) in items.into_iter().zip(fetched) {
            match fetched {
                Ok((Fetched::Found(record), _)) => {
                    item.record = record;
                    kept.push(item);
                }
                Ok((Fetched::NotFound, _)) => kept.push(item),
                Err(
                    error @ (FetchError::Forbidden { .. }
                    | FetchError::Permanent { .. }
                    | FetchError::Url(_)),
                ) => {
                    tracing::warn!(resource = %self.resource, url = %url, id = %item.id, %error, "skipped an item");
                    crate::telemetry::backfill_skipped(self.resource);
                    checkpoint.skipped += 1;
                }
                Err(FetchError::Stopped(_)) => return Err(self.interrupted()),
                Err(source) => {
                    return Err(BackfillError::Api {
                        resource: self.resource.as_str(),
                        source,
                    })
                }
            }
        }
        Ok(kept)
    }

    /// Produces one Snapshot record per item and waits for every ack
    /// (nothing in a dry run).
    pub(super) async fn produce(&self, items: Vec<Item>) -> Result<(), BackfillError> {
        if self.args.dry_run || items.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let count = items.len();
        let records: Vec<(EnrichedRecord, Vec<u8>)> = items
            .into_iter()
            .filter_map(|item| {
                let event = WebhookEvent {
                    resource: self.resource,
                    event: EventKind::Snapshot,
                    object_id: item.id,
                    timestamp: item.updated,
                };
                let record = EnrichedRecord::in_account(
                    self.target.account,
                    &event,
                    None,
                    FetchStatus::Found,
                )
                .with_record(item.record, now);
                let value = serde_json::to_vec(&record).expect("enriched records serialize");
                // A forgotten person's own record is not produced.
                let value = crate::screened(self.target.erasures, value)?;
                Some((record, value))
            })
            .collect();
        let keys: Vec<String> = records
            .iter()
            .map(|(record, _)| schemas::object_key(&record.account, &record.object_id))
            .collect();
        let sends = records.iter().zip(&keys).map(|((record, value), key)| {
            let outgoing = Outgoing {
                topic: self.target.enriched_topic,
                key: Some(key.as_bytes()),
                payload: value,
                headers: with_headers(OwnedHeaders::new(), &headers::enriched(&record.event_id)),
            };
            async move { produce(self.target.producer, &outgoing, self.shutdown).await }
        });
        for result in futures::future::join_all(sends).await {
            match result {
                Ok(()) => {}
                Err(Failure::Stopped) => return Err(self.interrupted()),
                Err(failure) => {
                    return Err(BackfillError::Produce {
                        topic: self.target.enriched_topic.to_string(),
                        source: failure,
                    })
                }
            }
        }
        crate::telemetry::backfilled(count);
        Ok(())
    }

    /// Stores the position, keyed by resource and run (nothing in a dry
    /// run).
    pub(super) async fn save(&self, checkpoint: &Checkpoint) -> Result<(), BackfillError> {
        if self.args.dry_run {
            return Ok(());
        }
        let value = serde_json::to_vec(checkpoint).expect("checkpoints serialize");
        let key = format!("{}/{}", self.resource.collection(), checkpoint.run);
        let outgoing = Outgoing {
            topic: &self.args.checkpoint_topic,
            key: Some(key.as_bytes()),
            payload: &value,
            headers: OwnedHeaders::new(),
        };
        // Stored even after shutdown came, so that a rerun starts after
        // what was acknowledged; within a bounded time, and given up at
        // once where the broker refuses access to the topic.
        runtime::produce_within(self.target.producer, &outgoing, CHECKPOINT_SAVE)
            .await
            .map_err(|source| BackfillError::Produce {
                topic: self.args.checkpoint_topic.clone(),
                source,
            })
    }

    fn report(&self, checkpoint: &Checkpoint, objects_before: u64, started: Instant) {
        let objects = checkpoint.objects - objects_before;
        let rate = objects as f64 / started.elapsed().as_secs_f64().max(0.001);
        let eta = checkpoint
            .total
            .filter(|_| !checkpoint.done && rate > 0.0)
            .map(|t| Duration::from_secs_f64(t.saturating_sub(checkpoint.objects) as f64 / rate));
        tracing::info!(
            resource = %self.resource,
            pages = checkpoint.pages,
            objects = checkpoint.objects,
            skipped = checkpoint.skipped,
            pages_by_offset = checkpoint.offset_pages,
            page_size = checkpoint.limit,
            per_second = format!("{rate:.1}"),
            total = ?checkpoint.total,
            eta = ?eta.map(|d| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()),
            done = checkpoint.done,
            dry_run = self.args.dry_run,
            "backfill progress"
        );
    }
}

/// How long storing a position may be retried, shutdown or not.
const CHECKPOINT_SAVE: Duration = Duration::from_secs(20);
