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
use rdkafka::Message;
use runtime::{KafkaArgs, TokenBucket};
use schemas::Resource;
use tokio_util::sync::CancellationToken;

pub use arguments::{BackfillArgs, ListApi};
pub use comparison::{Compared, Loaded};
pub use error::BackfillError;

use crate::config::Config;
use checkpoint::Checkpoint;
use scan::Scan;

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
