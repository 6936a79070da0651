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
use super::checkpoint::Checkpoint;
use super::comparison::{LakeComparison, Loaded};
use super::error::BackfillError;
use super::page::{iso, items, Item};
use super::progress::Progress;
use super::Target;
use crate::client::Fetched;

/// One resource's scan.
pub(super) struct Scan<'a> {
    pub(super) target: &'a Target<'a>,
    pub(super) args: &'a BackfillArgs,
    pub(super) resource: Resource,
    pub(super) shutdown: &'a CancellationToken,
}

impl Scan<'_> {
    pub(super) async fn run(&self, resumed: Option<Checkpoint>) -> Result<Loaded, BackfillError> {
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
            let items = items(&self.args.api, &url, &page)?;
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
    pub(super) async fn page(
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
        let url = self.target.client.list_url(&path, &query)?;
        let (page, _) = self
            .target
            .client
            .list(&url, self.shutdown)
            .await
            .map_err(|source| BackfillError::Api {
                resource: self.resource.as_str(),
                source,
            })?;
        Ok((url, page))
    }

    /// Replaces each item by its full record, fetched by id (a few at a
    /// time); a record deleted since it was listed is left as listed.
    pub(super) async fn fetch_each(&self, items: &mut [Item]) -> Result<(), BackfillError> {
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
    pub(super) async fn produce(&self, items: &[Item]) -> Result<(), BackfillError> {
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
                topic: self.target.enriched_topic,
                key: Some(record.object_id.as_bytes()),
                payload: value,
                headers: with_headers(OwnedHeaders::new(), &headers::enriched(&record.event_id)),
            };
            async move { produce(self.target.producer, &outgoing, self.shutdown).await }
        });
        for result in futures::future::join_all(sends).await {
            match result {
                Ok(()) => {}
                Err(Failure::Stopped) => {
                    return Err(BackfillError::Produce {
                        topic: self.target.enriched_topic.to_string(),
                        message: "stopped before every record was acknowledged".into(),
                    })
                }
                Err(failure) => {
                    return Err(BackfillError::Produce {
                        topic: self.target.enriched_topic.to_string(),
                        message: failure.to_string(),
                    })
                }
            }
        }
        crate::telemetry::backfilled(items.len());
        Ok(())
    }

    pub(super) async fn save(&self, checkpoint: &Checkpoint) -> Result<(), BackfillError> {
        let value = serde_json::to_vec(checkpoint).expect("checkpoints serialize");
        let outgoing = Outgoing {
            topic: &self.args.checkpoint_topic,
            key: Some(self.resource.collection().as_bytes()),
            payload: &value,
            headers: OwnedHeaders::new(),
        };
        produce(self.target.producer, &outgoing, &CancellationToken::new())
            .await
            .map_err(|failure| BackfillError::Produce {
                topic: self.args.checkpoint_topic.clone(),
                message: failure.to_string(),
            })
    }

    pub(super) fn report(
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
