//! Leases: work one process at a time should do, claimed with a
//! create-only write that expires.

use object_store::ObjectStoreExt;

use super::{Lake, LakeError, Put};

/// Whether this process holds a lease (see [`Lake::take_lease`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Lease {
    /// Taken now, for its duration.
    Taken,
    /// Another process took it less than its duration ago.
    Held,
}

impl Lake {
    /// Takes the lease `name` for `duration`, unless another process took
    /// it less than `duration` ago: a create-only write of
    /// `_sink_leases/{name}`, an expired one deleted first. For work one
    /// process at a time should do where two at once would only repeat
    /// each other (the upkeep): two processes meeting an expired lease at
    /// the same moment may both take it.
    pub async fn take_lease(
        &self,
        name: &str,
        duration: std::time::Duration,
    ) -> Result<Lease, LakeError> {
        let path = self.path(&format!("{LEASES}/{name}"));
        let duration = chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX);
        for _ in 0..2 {
            if self.create(&path, bytes::Bytes::new()).await? == Put::Created {
                return Ok(Lease::Taken);
            }
            let taken_at = match self.store.head(&path).await {
                Ok(meta) => meta.last_modified,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(error) => return Err(error.into()),
            };
            if chrono::Utc::now() - taken_at < duration {
                return Ok(Lease::Held);
            }
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(Lease::Held)
    }
}

/// Where leases live.
const LEASES: &str = "_sink_leases";
