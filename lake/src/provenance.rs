//! Where the lake's records of a source came from: the identity of the
//! system that served the source (for a Kafka topic, its cluster's id),
//! recorded by the first writer that met it, under
//! `_sink_sources/{source}`.
//!
//! Offsets alone cannot tell a topic on a new cluster (or created again)
//! that has already grown past the old offsets from the old one; its
//! identity can. A lake written before identities were recorded gets the
//! identity of the first source met afterwards.

use object_store::path::Path;

use crate::store::{Lake, LakeError, Put};

const DIRECTORY: &str = "_sink_sources";

/// How the source met now compares with the one the lake's records of it
/// came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Provenance {
    /// Nothing was recorded: the identity met now is, from here on.
    Recorded,
    /// The same source.
    Same,
    /// Another source under the same name.
    Other {
        /// The identity recorded.
        recorded: String,
    },
}

/// Compares `identity` with the one recorded for `source` in `lake`,
/// recording it when none is.
pub(crate) async fn compare(
    lake: &Lake,
    source: &str,
    identity: &str,
) -> Result<Provenance, LakeError> {
    let path = location(lake, source);
    if let Some(recorded) = lake.read_if_exists(&path).await? {
        return Ok(judge(&recorded, identity));
    }
    match lake
        .create(&path, bytes::Bytes::from(identity.to_string()))
        .await?
    {
        Put::Created => Ok(Provenance::Recorded),
        // Another writer recorded it in between.
        Put::AlreadyExisted => Ok(match lake.read_if_exists(&path).await? {
            Some(recorded) => judge(&recorded, identity),
            None => Provenance::Recorded,
        }),
    }
}

fn judge(recorded: &[u8], identity: &str) -> Provenance {
    let recorded = String::from_utf8_lossy(recorded).trim().to_string();
    if recorded == identity {
        Provenance::Same
    } else {
        Provenance::Other { recorded }
    }
}

/// Where `source`'s identity is recorded in `lake`.
pub(crate) fn location(lake: &Lake, source: &str) -> Path {
    lake.path(DIRECTORY).join(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_identity_is_recorded_and_others_are_told_apart() {
        let lake = Lake::open("memory:///lake").expect("opens");
        let first = compare(&lake, "mobaro.enriched", "cluster-a").await;
        assert_eq!(first.expect("records"), Provenance::Recorded);
        let same = compare(&lake, "mobaro.enriched", "cluster-a").await;
        assert_eq!(same.expect("reads"), Provenance::Same);
        let other = compare(&lake, "mobaro.enriched", "cluster-b").await;
        assert_eq!(
            other.expect("reads"),
            Provenance::Other {
                recorded: "cluster-a".into()
            }
        );
        let renamed = compare(&lake, "cluster-b-enriched", "cluster-b").await;
        assert_eq!(renamed.expect("records"), Provenance::Recorded);
    }
}
