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

mod arguments;
mod checkpoint;
mod comparison;
mod error;
mod page;
mod progress;
mod scan;

use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::Message;
use runtime::KafkaArgs;
use schemas::Resource;
use tokio_util::sync::CancellationToken;

pub use arguments::{BackfillArgs, ListApi};
pub use comparison::{Compared, Loaded};
pub use error::BackfillError;

use crate::client::MobaroClient;
use checkpoint::Checkpoint;
use scan::Scan;

/// Where a backfill's records go and how it reaches Mobaro: the enricher's
/// own settings, given by the caller.
pub struct Target<'a> {
    /// The broker.
    pub kafka: &'a KafkaArgs,
    /// Topic of the enriched records.
    pub enriched_topic: &'a str,
    /// Create missing topics first.
    pub create_topics: bool,
    /// Record requests in flight at once (with `--fetch-each`).
    pub concurrency: usize,
    /// The API client, with the backfill's rate share
    /// ([`BackfillArgs::rate_share`]).
    pub client: &'a MobaroClient,
    /// The producer of enriched records and checkpoints.
    pub producer: &'a FutureProducer,
}

/// Runs the backfill for every requested resource in turn.
pub async fn backfill(
    target: &Target<'_>,
    args: &BackfillArgs,
    shutdown: &CancellationToken,
) -> Result<Vec<(Resource, Loaded)>, BackfillError> {
    if !args.dry_run && target.create_topics {
        runtime::ensure_topics(target.kafka, &[target.enriched_topic]).await?;
        runtime::ensure_compacted_topic(target.kafka, &args.checkpoint_topic).await?;
    }
    let stored = if args.dry_run || args.restart {
        Vec::new()
    } else {
        stored_checkpoints(target.kafka, &args.checkpoint_topic).await?
    };
    let mut results = vec![];
    for resource in &args.resources {
        let scan = Scan {
            target,
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
