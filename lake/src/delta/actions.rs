//! The actions the sink writes to a table's log and reads from other
//! writers' entries: its files' `add`s, its partitions' transactions, and
//! the properties of the commits the library makes for it.

use std::collections::HashMap;

use chrono::NaiveDate;
use deltalake_core::kernel::transaction::CommitProperties;
use deltalake_core::kernel::{Add, Transaction};

use crate::data_file::DataFile;
use crate::path::{partition_value, PARTITION_COLUMN};

/// The properties of the commits the library makes for the sink (schema
/// changes, compaction; appends write their entry themselves): at most
/// `retries` retries by the library, and no log cleanup after the commit.
/// The cleanup lists the whole log, a cost that grows with the table's age;
/// it belongs to the upkeep (see `vacuum.rs`). The library's checkpoint
/// every 100 commits stays: without it, each reload of the table replays
/// every commit since the last checkpoint.
pub(crate) fn commit_properties(retries: usize) -> CommitProperties {
    CommitProperties::default()
        .with_max_retries(retries)
        .with_cleanup_expired_logs(Some(false))
}

/// The `add` action of `file`.
pub(crate) fn add_action(file: &DataFile, data_change: bool) -> Add {
    Add {
        path: file.path.in_table(),
        partition_values: partition_values(file.path.date),
        size: file.size as i64,
        modification_time: chrono::Utc::now().timestamp_millis(),
        data_change,
        stats: Some(
            file.stats
                .clone()
                .unwrap_or_else(|| format!(r#"{{"numRecords":{}}}"#, file.rows)),
        ),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    }
}

/// The partition values of a file of `date`.
pub(crate) fn partition_values(date: NaiveDate) -> HashMap<String, Option<String>> {
    HashMap::from([(PARTITION_COLUMN.to_string(), Some(partition_value(date)))])
}

/// The application id of a topic partition's transactions.
pub(crate) fn app_id(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}")
}

/// One line of a log entry, as far as a blind append reads it: whether it
/// changes the table's metadata or protocol, and the transaction it sets
/// (the library's own action type).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryLine {
    meta_data: Option<serde::de::IgnoredAny>,
    protocol: Option<serde::de::IgnoredAny>,
    txn: Option<Transaction>,
}

/// The transactions a log entry sets, or None when it changes the
/// table's metadata or protocol (or does not parse): what a blind append
/// needs to know of another writer's commit.
pub(crate) fn transactions_of(entry: &[u8]) -> Option<Vec<(String, Option<i64>)>> {
    let mut transactions = Vec::new();
    for line in entry
        .split(|b| *b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
    {
        let line: EntryLine = serde_json::from_slice(line).ok()?;
        if line.meta_data.is_some() || line.protocol.is_some() {
            return None;
        }
        if let Some(txn) = line.txn {
            transactions.push((txn.app_id, Some(txn.version)));
        }
    }
    Some(transactions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_says_which_transactions_it_sets_unless_it_changes_the_table() {
        let append = br#"{"commitInfo":{"operation":"WRITE"}}
{"add":{"path":"a.parquet"}}
{"txn":{"appId":"t-0","version":12,"lastUpdated":1}}
"#;
        assert_eq!(
            transactions_of(append),
            Some(vec![("t-0".to_string(), Some(12))])
        );
        let compaction = br#"{"remove":{"path":"a.parquet"}}
{"add":{"path":"b.parquet"}}"#;
        assert_eq!(transactions_of(compaction), Some(vec![]));
        let evolved = br#"{"metaData":{"id":"x"}}"#;
        assert_eq!(transactions_of(evolved), None);
        assert_eq!(transactions_of(b"{not json"), None);
    }
}
