//! Flush intents: before a batch's files are written, an empty object named by
//! its offset range is created under `_sink_intents/{topic}/{partition}/`.
//!
//! After a crash between writing and committing, the restarted sink (or the
//! instance that took the partition over) finds the intent and cuts its batch
//! at exactly the same offsets, so the files it writes have exactly the same
//! names: the create-only puts find them done, and no row is written twice.

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectStore;
use object_store::ObjectStoreExt;

use crate::offsets::OffsetRange;
use crate::store::{Lake, LakeError};

const DIRECTORY: &str = "_sink_intents";

/// The flush intents of one topic's partitions.
#[derive(Debug, Clone)]
pub(crate) struct Intents {
    lake: Lake,
    topic: String,
}

impl Intents {
    /// The intents of `topic` in `lake`.
    pub(crate) fn new(lake: Lake, topic: &str) -> Self {
        Intents {
            lake,
            topic: topic.to_string(),
        }
    }

    /// The intent of `range`: `{first:020}+{last:020}`.
    fn path_of(&self, partition: i32, range: OffsetRange) -> Path {
        let OffsetRange { first, last } = range;
        self.directory(partition)
            .join(format!("{first:020}+{last:020}"))
    }

    fn directory(&self, partition: i32) -> Path {
        self.lake
            .path(&format!("{DIRECTORY}/{}/{partition}", self.topic))
    }

    /// Records the intent to write `[first, last]`; idempotent.
    pub(crate) async fn record(&self, partition: i32, range: OffsetRange) -> Result<(), LakeError> {
        let path = self.path_of(partition, range);
        self.lake
            .create(&path, bytes::Bytes::new())
            .await
            .map(|_| ())
    }

    /// Ranges with an intent that end at or after `from`, in offset order.
    pub(crate) async fn from(
        &self,
        partition: i32,
        from: i64,
    ) -> Result<Vec<OffsetRange>, LakeError> {
        let prefix = self.directory(partition);
        let objects: Vec<_> = self.lake.store().list(Some(&prefix)).try_collect().await?;
        let mut ranges: Vec<OffsetRange> = objects
            .iter()
            .filter_map(|o| parse(o.location.filename()?))
            .filter(|range| range.last >= from)
            .collect();
        ranges.sort_unstable();
        Ok(ranges)
    }

    /// Deletes the intent of `[first, last]`; best effort.
    pub(crate) async fn forget(&self, partition: i32, range: OffsetRange) {
        let path = self.path_of(partition, range);
        if let Err(error) = self.lake.store().delete(&path).await {
            tracing::debug!(%error, %path, "removing a flush intent failed");
        }
    }

    /// Deletes intents of ranges wholly below `offset` (committed); best effort.
    pub(crate) async fn forget_below(&self, partition: i32, offset: i64) {
        let prefix = self.directory(partition);
        let Ok(objects) = self
            .lake
            .store()
            .list(Some(&prefix))
            .try_collect::<Vec<_>>()
            .await
        else {
            return;
        };
        for object in objects {
            let done = object
                .location
                .filename()
                .and_then(parse)
                .is_some_and(|range| range.last < offset);
            if done {
                let _ = self.lake.store().delete(&object.location).await;
            }
        }
    }
}

/// A flush intent left in `lake`, of any topic: (topic, partition, range).
pub(crate) async fn any_left(lake: &Lake) -> Result<Option<(String, i32, OffsetRange)>, LakeError> {
    let mut listed = lake.store().list(Some(&lake.path(DIRECTORY)));
    while let Some(object) = listed.try_next().await? {
        let parts: Vec<String> = object
            .location
            .parts()
            .map(|part| part.as_ref().to_string())
            .collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let found = match parts.as_slice() {
            [.., topic, partition, name] => partition
                .parse()
                .ok()
                .zip(parse(name))
                .map(|(partition, range)| (topic.to_string(), partition, range)),
            _ => None,
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

fn parse(name: &str) -> Option<OffsetRange> {
    let (first, last) = name.split_once('+')?;
    Some(OffsetRange::new(first.parse().ok()?, last.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn intents_are_listed_in_order_and_forgotten_once_committed() {
        let lake = Lake::open("memory:///lake").expect("opens");
        let intents = Intents::new(lake, "t");
        intents
            .record(1, OffsetRange::new(10, 19))
            .await
            .expect("records");
        intents
            .record(1, OffsetRange::new(0, 9))
            .await
            .expect("records");
        intents
            .record(1, OffsetRange::new(0, 9))
            .await
            .expect("idempotent");
        intents
            .record(2, OffsetRange::new(0, 4))
            .await
            .expect("records");
        assert_eq!(intents.from(1, 0).await.expect("lists"), [(0, 9), (10, 19)]);
        assert_eq!(intents.from(1, 10).await.expect("lists"), [(10, 19)]);
        intents.forget_below(1, 10).await;
        assert_eq!(intents.from(1, 0).await.expect("lists"), [(10, 19)]);
    }
}
