//! `enricher backfill`: Mobaro's records through its list endpoints, as one
//! enriched `Snapshot` record per object on the enriched topic, so that the
//! lake holds the history from before the pipeline and what webhooks missed.
//!
//! **Order and windows.** Pages are requested in ascending update time,
//! from the latest update time seen so far less an overlap, at offset 0. A
//! record edited during the scan gets a newer update time and so moves ahead
//! of the cursor, where a later page lists it. The overlap makes an
//! inclusive and an exclusive filter list the same records; records listed
//! twice carry the same `event_id` and are produced once per run. Only when
//! a full page brings nothing past the cursor are pages asked by offset
//! from the same start (where an edit among those records could shift one
//! past the scan: counted and reported). Every page is checked against what
//! was asked (order, filter, page cap); see `scan`.
//!
//! **Resuming.** After each page's records are acknowledged, the position is
//! written to a compacted checkpoint topic, keyed by resource and the run's
//! parameters: the same command, killed at any point, fetches at most one
//! page again; another command starts its own run.

mod arguments;
mod checkpoint;
mod comparison;
mod error;
mod page;
mod pipeline;
mod progress;
mod scan;

use rdkafka::message::OwnedMessage;
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
    /// The erasure ledger, when the backfill consults it.
    pub erasures: Option<&'a lake::Erasures>,
    /// The account loaded.
    pub account: &'a str,
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
    pub producer: &'a runtime::Producer,
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
        // The latest checkpoint of this command's run, if it did not finish.
        let run = args.run_key(*resource, target.client.base());
        let resumed = stored
            .iter()
            .rev()
            .find(|c| c.resource == *resource && c.run == run)
            .filter(|c| !c.done)
            .cloned();
        for other in unfinished_others(&stored, *resource, &run) {
            tracing::warn!(%resource, run = %other.run, updated_after = ?other.updated_after, updated_before = ?other.updated_before, objects = other.objects, "another backfill of this resource, with other parameters, did not finish: this run does not resume it (run that command again to finish it)");
        }
        let loaded = scan.run(resumed).await?;
        results.push((*resource, loaded));
        if shutdown.is_cancelled() {
            break;
        }
    }
    Ok(results)
}

/// The latest checkpoint of each other run of `resource` that did not
/// finish.
fn unfinished_others<'a>(
    stored: &'a [Checkpoint],
    resource: Resource,
    run: &str,
) -> Vec<&'a Checkpoint> {
    let mut latest: std::collections::BTreeMap<&str, &Checkpoint> = Default::default();
    for checkpoint in stored
        .iter()
        .filter(|c| c.resource == resource && c.run != run)
    {
        latest.insert(&checkpoint.run, checkpoint);
    }
    latest.into_values().filter(|c| !c.done).collect()
}

/// The checkpoints stored so far, oldest first.
async fn stored_checkpoints(
    kafka: &KafkaArgs,
    topic: &str,
) -> Result<Vec<Checkpoint>, BackfillError> {
    let context = kafka.context().await?;
    let (kafka, topic) = (kafka.clone(), topic.to_string());
    let messages: Vec<OwnedMessage> =
        tokio::task::spawn_blocking(move || runtime::read_topic_to_end(&kafka, context, &topic))
            .await
            .expect("the reader does not panic")?;
    Ok(messages
        .iter()
        .filter_map(|m| serde_json::from_slice(m.payload()?).ok())
        .collect())
}
