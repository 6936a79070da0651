//! Whether a forgotten person is found again: the User ids of the typed
//! columns that hold them (`users`, the `events` about Users, `results`'
//! `user_id`), compared with the ledger's hashes.

use std::collections::BTreeMap;

use object_store::path::Path;
use schemas::{Resource, Table};

use super::{active, ErasureError, Ledger};
use crate::delta::log::DeltaTables;
use crate::reading::{each_batch, texts};

/// Rows naming a forgotten person, per table and person (the ledger's
/// hash): empty when every erasure holds.
pub async fn found_again(
    tables: &DeltaTables,
    ledger: &Ledger,
) -> Result<BTreeMap<(String, String), usize>, ErasureError> {
    let mut found = BTreeMap::new();
    if ledger.is_empty() {
        return Ok(found);
    }
    let checked: [(Table, &str); 3] = [
        (Table::Events, "object_id"),
        (Table::Records(Resource::Users), "object_id"),
        (Table::Records(Resource::Results), "user_id"),
    ];
    let lake = tables.lake();
    for (table, column) in checked {
        let Some(current) = tables.latest(table).await? else {
            continue;
        };
        let files: Vec<(Path, u64)> = active(&current, table)?
            .into_iter()
            .map(|f| f.located(lake, table))
            .collect();
        each_batch(lake, &files, &[column, "resource"], |_, batch| {
            let ids = batch.column_by_name(column).map(texts).unwrap_or_default();
            let resources = batch.column_by_name("resource").map(texts);
            for (row, id) in ids.iter().enumerate() {
                let about_user = table != Table::Events
                    || resources
                        .as_ref()
                        .and_then(|r| r[row])
                        .is_some_and(|r| r == Resource::Users.as_str());
                if let Some(id) = id.filter(|id| about_user && ledger.forgets(id)) {
                    let person = ledger.hash(id).unwrap_or_default();
                    *found.entry((table.name().to_string(), person)).or_insert(0) += 1;
                }
            }
            true
        })
        .await
        .map_err(|error| ErasureError::File {
            table: table.name(),
            path: "(active files)".into(),
            reason: error.to_string(),
        })?;
    }
    Ok(found)
}
