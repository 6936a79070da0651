//! The last day each Delta table's compaction has closed, published beside
//! the tables as `_lake_status/{table}.json`, so that readers (the dbt
//! package's marts) can tell final days from provisional ones without
//! knowing the sink's settings:
//!
//! ```json
//! {"table": "downtimes", "final_through": "2026-12-04",
//!  "compaction_grace_hours": 48.0, "published_at": "2026-12-07T06:00:00Z"}
//! ```
//!
//! `final_through` is the last `dt` (UTC day) that a compaction run closed
//! without a failure or a conflict in that table: events of later days may
//! still arrive in the grace. It is null until the first such run.

use chrono::{DateTime, NaiveDate, Utc};
use object_store::path::Path;
use schemas::Table;

use crate::store::{Lake, LakeError};

const DIRECTORY: &str = "_lake_status";

/// What a table publishes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FinalThrough {
    /// The table's name.
    pub table: String,
    /// The last UTC day compaction has closed; none yet when null.
    pub final_through: Option<NaiveDate>,
    /// The grace after a day's end before compaction closes it.
    pub compaction_grace_hours: Option<f64>,
    /// When it was published.
    pub published_at: DateTime<Utc>,
}

fn location(lake: &Lake, table: Table) -> Path {
    lake.path(DIRECTORY).join(format!("{}.json", table.name()))
}

/// The document `table` publishes: final through `through`, closed
/// after `grace`; none yet before the first compaction.
fn document(
    table: Table,
    through: Option<NaiveDate>,
    grace: Option<std::time::Duration>,
) -> bytes::Bytes {
    let status = FinalThrough {
        table: table.name().to_string(),
        final_through: through,
        compaction_grace_hours: grace.map(|g| g.as_secs_f64() / 3600.0),
        published_at: Utc::now(),
    };
    bytes::Bytes::from(serde_json::to_vec(&status).unwrap_or_default())
}

/// Publishes that `table` is final through `through` (overwriting the
/// previous publication).
pub(crate) async fn publish(
    lake: &Lake,
    table: Table,
    through: NaiveDate,
    grace: std::time::Duration,
) -> Result<(), LakeError> {
    let document = document(table, Some(through), Some(grace));
    lake.replace(&location(lake, table), document).await
}

/// Creates the publication of `table`, with no day final yet, unless one
/// exists: readers find it before the first compaction.
pub(crate) async fn create_missing(lake: &Lake, table: Table) -> Result<(), LakeError> {
    let document = document(table, None, None);
    lake.create(&location(lake, table), document)
        .await
        .map(|_| ())
}

/// What `table` publishes, when it does.
pub async fn read(lake: &Lake, table: Table) -> Result<Option<FinalThrough>, LakeError> {
    Ok(lake
        .read_if_exists(&location(lake, table))
        .await?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_publication_starts_empty_and_is_replaced_by_each_closing() {
        let lake = Lake::open("memory:///lake").expect("opens");
        let table = Table::Events;
        create_missing(&lake, table).await.expect("created");
        let first = read(&lake, table).await.expect("reads").expect("exists");
        assert_eq!(first.final_through, None);
        let day = NaiveDate::from_ymd_opt(2026, 12, 4).expect("a date");
        let grace = std::time::Duration::from_secs(48 * 3600);
        publish(&lake, table, day, grace).await.expect("published");
        create_missing(&lake, table).await.expect("left alone");
        let published = read(&lake, table).await.expect("reads").expect("exists");
        assert_eq!(published.final_through, Some(day));
        assert_eq!(published.compaction_grace_hours, Some(48.0));
    }
}
