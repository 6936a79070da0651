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
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::records;

/// List endpoints that read the paging parameters otherwise than the
/// simulator's default (all unknown of Mobaro's real API).
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
pub struct ListFaults {
    /// `updatedAfter` is exclusive (strictly after).
    #[serde(default)]
    pub exclusive_after: bool,
    /// Pages hold at most this many items, whatever the limit asked.
    pub page_cap: Option<usize>,
    /// `orderBy` is ignored: items come in id order.
    #[serde(default)]
    pub ignore_order: bool,
    /// `updatedAfter` is ignored.
    #[serde(default)]
    pub ignore_after: bool,
    /// Items of these ids come without their update time.
    #[serde(default)]
    pub without_updated: Vec<String>,
}

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

/// A record as generated, and its JSON text once a page has served it.
struct Generated {
    record: Value,
    text: OnceLock<String>,
}

/// An entry as listed: its update time with the edits applied.
struct Listed<'a> {
    updated: DateTime<Utc>,
    created: DateTime<Utc>,
    id: &'a str,
}

/// The records of every collection, with the edits made since start.
pub struct Catalogue {
    objects: u32,
    park: records::Park,
    entries: Mutex<HashMap<String, Vec<Entry>>>,
    /// Edits: id → (new `updated`, revision).
    edits: Mutex<HashMap<String, (DateTime<Utc>, u64)>>,
    /// Records as generated, and as JSON text, by canonical id: generating
    /// and serializing one costs more than a real API's lookup.
    generated: Mutex<HashMap<String, Arc<Generated>>>,
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
    /// A catalogue of `objects` records per collection of `park`.
    pub fn new(objects: u32, park: records::Park) -> Self {
        Catalogue {
            objects,
            park,
            entries: Mutex::new(HashMap::new()),
            edits: Mutex::new(HashMap::new()),
            generated: Mutex::new(HashMap::new()),
        }
    }

    /// The ids of one collection's entries that pass `keep`, in `order`,
    /// with the edits applied: (updated, created, id) of each.
    fn listed(
        &self,
        collection: &str,
        keep: impl Fn(DateTime<Utc>) -> bool,
        mut order: impl FnMut(&Listed<'_>, &Listed<'_>) -> std::cmp::Ordering,
        window: (usize, usize),
    ) -> Option<(usize, Vec<String>)> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if !entries.contains_key(collection) {
            let mut list = Vec::with_capacity(self.objects as usize);
            for n in 0..self.objects {
                let id = object_id(collection, n);
                let record = self.generated(collection, &id)?;
                list.push(Entry {
                    created: timestamp(&record.record, "created")?,
                    updated: timestamp(&record.record, "updated")?,
                    id,
                });
            }
            entries.insert(collection.to_string(), list);
        }
        let edits = self.edits.lock().unwrap_or_else(|p| p.into_inner());
        let mut listed: Vec<Listed<'_>> = entries
            .get(collection)?
            .iter()
            .map(|e| Listed {
                updated: edits.get(&e.id).map_or(e.updated, |(updated, _)| *updated),
                created: e.created,
                id: &e.id,
            })
            .filter(|l| keep(l.updated))
            .collect();
        let total = listed.len();
        let (offset, limit) = window;
        let end = offset.saturating_add(limit);
        if end < listed.len() {
            // Only the entries up to the page's end need their order.
            listed.select_nth_unstable_by(end, &mut order);
            listed.truncate(end);
        }
        listed.sort_unstable_by(order);
        let page = listed
            .iter()
            .skip(offset)
            .take(limit)
            .map(|l| l.id.to_string())
            .collect();
        Some((total, page))
    }

    /// The record with its edits applied.
    pub fn record(&self, collection: &str, id: &str) -> Option<Value> {
        let id = records::canonical_id(collection, id);
        let mut record = self.generated(collection, &id)?.record.clone();
        let edits = self.edits.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((updated, revision)) = edits.get(&id) {
            record["updated"] = updated
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into();
            record["revision"] = (*revision).into();
        }
        Some(record)
    }

    /// The record as generated (cached, its text made on first use).
    fn generated(&self, collection: &str, id: &str) -> Option<Arc<Generated>> {
        let mut generated = self.generated.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(record) = generated.get(id) {
            return Some(record.clone());
        }
        let record = self.park.record(collection, id)?;
        let record = Arc::new(Generated {
            record,
            text: OnceLock::new(),
        });
        generated.insert(id.to_string(), record.clone());
        Some(record)
    }

    /// The record's JSON text with its edits applied.
    fn record_text(&self, collection: &str, id: &str, without_updated: bool) -> Option<String> {
        let id = records::canonical_id(collection, id);
        let edited = self
            .edits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&id);
        if !edited && !without_updated {
            let generated = self.generated(collection, &id)?;
            return Some(
                generated
                    .text
                    .get_or_init(|| generated.record.to_string())
                    .clone(),
            );
        }
        let mut record = self.record(collection, &id)?;
        if without_updated {
            if let Some(fields) = record.as_object_mut() {
                fields.remove("updated");
            }
        }
        Some(record.to_string())
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

    /// One page as JSON text, or the reason the request is refused
    /// (answered 400).
    pub fn page(
        &self,
        collection: &str,
        query: &HashMap<String, String>,
        faults: &ListFaults,
    ) -> Result<String, String> {
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
        let after = after.filter(|_| !faults.ignore_after);
        let keep = |updated: DateTime<Utc>| {
            let from = match after {
                Some(a) if faults.exclusive_after => updated > a,
                Some(a) => updated >= a,
                None => true,
            };
            from && before.is_none_or(|b| updated < b)
        };
        let order = get("orderBy").unwrap_or("updated:asc");
        let (field, direction) = order.split_once(':').unwrap_or((order, "asc"));
        let field = field.to_ascii_lowercase();
        if !["updated", "updatedat", "created", "createdat", "id"].contains(&field.as_str()) {
            return Err(format!("cannot order by {field:?}"));
        }
        let descending = direction.eq_ignore_ascii_case("desc");
        let compare = |a: &Listed<'_>, b: &Listed<'_>| {
            let ordering = if faults.ignore_order {
                return a.id.cmp(b.id);
            } else if field == "id" {
                a.id.cmp(b.id)
            } else if field.starts_with("created") {
                (a.created, a.id).cmp(&(b.created, b.id))
            } else {
                (a.updated, a.id).cmp(&(b.updated, b.id))
            };
            if descending {
                ordering.reverse()
            } else {
                ordering
            }
        };
        let limit = faults.page_cap.map_or(limit, |cap| limit.min(cap));
        let (total, ids) = self
            .listed(collection, keep, compare, (offset, limit))
            .ok_or_else(|| format!("no list endpoint for {collection:?}"))?;
        let items: Vec<String> = ids
            .iter()
            .filter_map(|id| self.record_text(collection, id, faults.without_updated.contains(id)))
            .collect();
        Ok(format!(
            r#"{{"items":[{}],"total":{total},"amount":{}}}"#,
            items.join(","),
            items.len()
        ))
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
        let catalogue = Catalogue::new(50, records::Park::default());
        let mut seen = vec![];
        for offset in (0..50).step_by(20) {
            let page = catalogue
                .page(
                    "users",
                    &query(&[("Limit", "20"), ("offset", &offset.to_string())]),
                    &ListFaults::default(),
                )
                .map(|text| serde_json::from_str::<Value>(&text).expect("json"))
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
            .map(|text| serde_json::from_str::<Value>(&text).expect("json"))
            .expect("a page");
        assert_eq!(last["items"][0]["revision"], 1);
        assert!(catalogue
            .page("users", &query(&[("limit", "500")]), &ListFaults::default(),)
            .is_err());
    }
}
