//! List endpoints: `GET /api/customers/{collection}?limit=&offset=&...` over a
//! catalogue of `--objects` records per collection, in the envelope seen in
//! public client code (`items`, `total`, `amount`).
//!
//! Paging follows Mobaro's support articles: `limit` 1 to 128 (a bulk
//! endpoint), `offset`, `updatedAfter` (inclusive) and `updatedBefore`
//! (exclusive) in ISO-8601 UTC, and `orderBy=field:asc|desc` on `updated`,
//! `created` or `id`. Parameter names are matched case-insensitively.
//! Records can change while a client scans: `touch` gives records a new
//! `updated` time and `revision`, as an edit in Mobaro would.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::api::ListFaults;
use crate::records;

/// Largest page a list request may ask for.
pub const MAX_LIMIT: usize = 128;
const DEFAULT_LIMIT: usize = 20;

/// One catalogue entry: what listing filters and sorts on.
#[derive(Clone)]
struct Entry {
    id: String,
    created: DateTime<Utc>,
    updated: DateTime<Utc>,
}

/// The records of every collection, with the edits made since start.
pub struct Catalogue {
    objects: u32,
    entries: Mutex<HashMap<String, Vec<Entry>>>,
    /// Edits: id → (new `updated`, revision).
    edits: Mutex<HashMap<String, (DateTime<Utc>, u64)>>,
}

/// The id of the `n`th object of a collection, as the webhook sender makes them.
pub fn object_id(collection: &str, n: u32) -> String {
    let tag = ["A", "B", "C"][n as usize % 3];
    format!("{collection}/{}-{tag}", 1000 + n)
}

fn timestamp(record: &Value, field: &str) -> Option<DateTime<Utc>> {
    record[field].as_str()?.parse().ok()
}

impl Catalogue {
    /// A catalogue of `objects` records per collection.
    pub fn new(objects: u32) -> Self {
        Catalogue {
            objects,
            entries: Mutex::new(HashMap::new()),
            edits: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self, collection: &str) -> Option<Vec<Entry>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if !entries.contains_key(collection) {
            let mut list = Vec::with_capacity(self.objects as usize);
            for n in 0..self.objects {
                let id = object_id(collection, n);
                let record = records::record(collection, &id)?;
                list.push(Entry {
                    created: timestamp(&record, "created")?,
                    updated: timestamp(&record, "updated")?,
                    id,
                });
            }
            entries.insert(collection.to_string(), list);
        }
        let mut list = entries.get(collection)?.clone();
        let edits = self.edits.lock().unwrap_or_else(|p| p.into_inner());
        for entry in &mut list {
            if let Some((updated, _)) = edits.get(&entry.id) {
                entry.updated = *updated;
            }
        }
        Some(list)
    }

    /// The record with its edits applied.
    pub fn record(&self, collection: &str, id: &str) -> Option<Value> {
        let mut record = records::record(collection, id)?;
        let id = records::canonical_id(collection, id);
        let edits = self.edits.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((updated, revision)) = edits.get(&id) {
            record["updated"] = updated
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into();
            record["revision"] = (*revision).into();
        }
        Some(record)
    }

    /// Edits `count` records of a collection now, round-robin through it,
    /// all at one instant when `same_time`; their ids.
    pub fn touch(&self, collection: &str, count: u64, same_time: bool) -> Vec<String> {
        if self.objects == 0 {
            return Vec::new();
        }
        let mut touched = vec![];
        let mut edits = self.edits.lock().unwrap_or_else(|p| p.into_inner());
        let start = edits.len() as u64;
        let instant = Utc::now();
        for k in 0..count {
            // A stride that visits every object before repeating one.
            let n = ((start + k) * 7919 % u64::from(self.objects)) as u32;
            let id = object_id(collection, n);
            let now = if same_time { instant } else { Utc::now() };
            let entry = edits.entry(id.clone()).or_insert((now, 0));
            *entry = (now, entry.1 + 1);
            touched.push(id);
        }
        touched
    }

    /// One page, or the reason the request is refused (answered 400).
    pub fn page(
        &self,
        collection: &str,
        query: &HashMap<String, String>,
        faults: &ListFaults,
    ) -> Result<Value, String> {
        let get = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let limit = match get("limit") {
            Some(l) => l
                .parse::<usize>()
                .map_err(|_| format!("limit {l:?} is not a number"))?,
            None => DEFAULT_LIMIT,
        };
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(format!("limit must be 1 to {MAX_LIMIT}"));
        }
        let offset = match get("offset") {
            Some(o) => o
                .parse::<usize>()
                .map_err(|_| format!("offset {o:?} is not a number"))?,
            None => 0,
        };
        let time = |name: &str| -> Result<Option<DateTime<Utc>>, String> {
            get(name)
                .map(|t| {
                    t.parse()
                        .map_err(|_| format!("{name} {t:?} is not ISO-8601"))
                })
                .transpose()
        };
        let (after, before) = (time("updatedAfter")?, time("updatedBefore")?);
        let mut entries = self
            .entries(collection)
            .ok_or_else(|| format!("no list endpoint for {collection:?}"))?;
        let after = after.filter(|_| !faults.ignore_after);
        entries.retain(|e| {
            let from = match after {
                Some(a) if faults.exclusive_after => e.updated > a,
                Some(a) => e.updated >= a,
                None => true,
            };
            from && before.is_none_or(|b| e.updated < b)
        });
        let order = get("orderBy").unwrap_or("updated:asc");
        let (field, direction) = order.split_once(':').unwrap_or((order, "asc"));
        match field.to_ascii_lowercase().as_str() {
            "updated" | "updatedat" => {
                entries.sort_by(|a, b| (a.updated, &a.id).cmp(&(b.updated, &b.id)))
            }
            "created" | "createdat" => {
                entries.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)))
            }
            "id" => entries.sort_by(|a, b| a.id.cmp(&b.id)),
            other => return Err(format!("cannot order by {other:?}")),
        }
        if direction.eq_ignore_ascii_case("desc") {
            entries.reverse();
        }
        if faults.ignore_order {
            entries.sort_by(|a, b| a.id.cmp(&b.id));
        }
        let limit = faults.page_cap.map_or(limit, |cap| limit.min(cap));
        let total = entries.len();
        let items: Vec<Value> = entries
            .iter()
            .skip(offset)
            .take(limit)
            .filter_map(|e| {
                let mut record = self.record(collection, &e.id)?;
                if faults.without_updated.contains(&e.id) {
                    if let Some(fields) = record.as_object_mut() {
                        fields.remove("updated");
                    }
                }
                Some(record)
            })
            .collect();
        Ok(json!({ "items": items, "total": total, "amount": items.len() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pages_cover_the_catalogue_in_update_order_and_edits_move_to_the_end() {
        let catalogue = Catalogue::new(50);
        let mut seen = vec![];
        for offset in (0..50).step_by(20) {
            let page = catalogue
                .page(
                    "users",
                    &query(&[("Limit", "20"), ("offset", &offset.to_string())]),
                    &ListFaults::default(),
                )
                .expect("a page");
            assert_eq!(page["total"], 50);
            for item in page["items"].as_array().expect("items") {
                seen.push(item["id"].as_str().expect("id").to_string());
            }
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 50);
        catalogue.touch("users", 1, false);
        let last = catalogue
            .page(
                "users",
                &query(&[("limit", "1"), ("offset", "49")]),
                &ListFaults::default(),
            )
            .expect("a page");
        assert_eq!(last["items"][0]["revision"], 1);
        assert!(catalogue
            .page("users", &query(&[("limit", "500")]), &ListFaults::default(),)
            .is_err());
    }
}
