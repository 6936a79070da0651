//! The JSON fields of fetched records that no typed column reads: a new
//! field Mobaro added, or the new name of a renamed one. One recorded row in
//! [`SAMPLE_EVERY`] per table is walked; each field path not under a path a
//! column reads is counted in `sink_unmapped_fields_total{table,path}` (the
//! first [`MAX_PATHS`] paths of a table by name of arrival, then `other`)
//! and logged the first time it is seen.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use schemas::{Source, Table};
use serde_json::Value;

use crate::telemetry;

/// One recorded row in this many is walked.
pub(crate) const SAMPLE_EVERY: u64 = 64;

/// Distinct paths named per table; later ones are counted as `other`.
pub(crate) const MAX_PATHS: usize = 50;

/// The label of paths past [`MAX_PATHS`].
const OTHER: &str = "other";

/// The paths each table's columns read, and the unmapped ones seen.
#[derive(Default)]
struct Census {
    seen: HashMap<Table, BTreeSet<String>>,
}

fn census() -> &'static Mutex<Census> {
    static CENSUS: OnceLock<Mutex<Census>> = OnceLock::new();
    CENSUS.get_or_init(Default::default)
}

fn rows_seen() -> &'static AtomicU64 {
    static ROWS: AtomicU64 = AtomicU64::new(0);
    &ROWS
}

/// The JSON pointers `table`'s columns read. A scalar column reads its
/// pointers' fields only: `/checklist` (a checklist given as a bare id)
/// does not cover `/checklist/title`. A list column reads everything under
/// its array, written with a trailing `/`.
pub(crate) fn mapped_paths(table: Table) -> Vec<String> {
    table
        .columns()
        .iter()
        .flat_map(|column| match column.source {
            Source::Record(pointers) => pointers.iter().map(|p| p.to_string()).collect(),
            Source::RecordList(array, _) => vec![format!("{array}/")],
            Source::ResultValues => vec!["/values/".to_string()],
            _ => Vec::new(),
        })
        .collect()
}

/// Notes a recorded row of `table` whose columns read `mapped`; walks one
/// in [`SAMPLE_EVERY`].
pub(crate) fn observe(table: Table, mapped: &[String], json: &str) {
    if !rows_seen()
        .fetch_add(1, Ordering::Relaxed)
        .is_multiple_of(SAMPLE_EVERY)
    {
        return;
    }
    let unmapped = unmapped_in(mapped, json);
    if unmapped.is_empty() {
        return;
    }
    let mut census = census().lock().unwrap_or_else(|p| p.into_inner());
    let seen = census.seen.entry(table).or_default();
    for path in unmapped {
        let label = if seen.contains(&path) {
            path
        } else if seen.len() < MAX_PATHS {
            tracing::warn!(
                table = table.name(),
                path,
                "records hold a field no typed column reads (a new field, or a renamed one); it is kept in record_json"
            );
            seen.insert(path.clone());
            path
        } else {
            OTHER.to_string()
        };
        telemetry::unmapped_field(table, label);
    }
}

/// The field paths of the record `json` that no `mapped` pointer covers
/// (none when it is not JSON).
pub(crate) fn unmapped_in(mapped: &[String], json: &str) -> BTreeSet<String> {
    let mut unmapped = BTreeSet::new();
    if let Ok(record) = serde_json::from_str::<Value>(json) {
        walk(&record, &mut String::new(), mapped, &mut unmapped);
    }
    unmapped
}

/// Collects the leaf paths of `value` under `path` that no `mapped` pointer
/// covers. Array items share one path segment, `*`.
fn walk(value: &Value, path: &mut String, mapped: &[String], out: &mut BTreeSet<String>) {
    let leaf = match value {
        Value::Object(fields) => fields.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => true,
    };
    if covered(path, mapped, leaf) {
        return;
    }
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (key, field) in fields {
                let length = path.len();
                path.push('/');
                path.push_str(&key.replace('~', "~0").replace('/', "~1"));
                walk(field, path, mapped, out);
                path.truncate(length);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let length = path.len();
            path.push_str("/*");
            for item in items {
                walk(item, path, mapped, out);
            }
            path.truncate(length);
        }
        _ if !path.is_empty() => {
            out.insert(path.clone());
        }
        _ => {}
    }
}

/// Whether `path` is read: under a list column's array, or (a `leaf`)
/// exactly at a scalar column's pointer.
fn covered(path: &str, mapped: &[String], leaf: bool) -> bool {
    !path.is_empty()
        && mapped
            .iter()
            .any(|pointer| match pointer.strip_suffix('/') {
                Some(subtree) => {
                    path == subtree
                        || path
                            .strip_prefix(subtree)
                            .is_some_and(|rest| rest.starts_with('/'))
                }
                None => leaf && path == pointer,
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_no_column_reads_are_found_and_read_ones_are_not() {
        let mapped: Vec<String> = ["/checklist/name", "/checklist", "/values/"]
            .map(String::from)
            .to_vec();
        let record: Value = serde_json::from_str(
            r#"{"checklist":{"name":"Daily","title":"Daily"},"values":[{"q":1}],"tags":[{"id":1},{"id":2,"x":true}],"empty":{}}"#,
        )
        .expect("JSON");
        let mut out = BTreeSet::new();
        walk(&record, &mut String::new(), &mapped, &mut out);
        let found: Vec<&str> = out.iter().map(String::as_str).collect();
        assert_eq!(
            found,
            vec!["/checklist/title", "/empty", "/tags/*/id", "/tags/*/x"]
        );
        // A checklist given as a bare id is read by the `/checklist` pointer.
        let bare: Value = serde_json::from_str(r#"{"checklist":"checklists/1-A"}"#).expect("JSON");
        let mut out = BTreeSet::new();
        walk(&bare, &mut String::new(), &mapped, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn every_table_maps_the_paths_its_columns_read() {
        let results = mapped_paths(Table::Records(schemas::Resource::Results));
        assert!(results.iter().any(|p| p == "/values/"));
        assert!(mapped_paths(Table::Events).is_empty());
    }
}
