//! Listed objects against what the lake holds (`--compare-lake`).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use schemas::Resource;

use super::error::BackfillError;
use super::page::Item;

/// What a run did for one resource.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// List requests answered.
    pub pages: u64,
    /// Objects produced (or counted, in a dry run).
    pub objects: u64,
    /// From the first list request to the last acknowledgement.
    pub scanning: std::time::Duration,
    /// Listed items skipped over the whole run (malformed, or refused with
    /// `--fetch-each`).
    pub skipped: u64,
    /// Pages asked by offset among records within the overlap, over the
    /// whole run: where an edit during the scan could shift one past it.
    pub offset_pages: u64,
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
        let seconds = self.scanning.as_secs_f64();
        write!(
            f,
            "{} objects in {} pages, {seconds:.1} s ({:.0}/s)",
            self.objects,
            self.pages,
            self.objects as f64 / seconds.max(0.001)
        )?;
        if self.skipped > 0 {
            write!(f, "; {} items skipped", self.skipped)?;
        }
        if self.offset_pages > 0 {
            write!(
                f,
                "; {} pages by offset among records sharing update times (an edit among them during those pages could have shifted one past the scan: a run with --since covering them lists it)",
                self.offset_pages
            )?;
        }
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
pub(super) struct LakeComparison {
    pub(super) latest: std::collections::HashMap<String, DateTime<Utc>>,
    pub(super) counted: HashSet<String>,
    pub(super) found: Compared,
}

impl LakeComparison {
    pub(super) async fn load(location: &str, resource: Resource) -> Result<Self, BackfillError> {
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
    pub(super) fn count(&mut self, items: &[Item]) {
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
