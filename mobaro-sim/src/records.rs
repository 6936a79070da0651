//! Generated Mobaro records, shaped as far as Mobaro's public material shows
//! them. The same id always yields the same record, so a test can fetch a record
//! again and compare it with what reached the lake.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// The resources' collection names in API paths.
pub const COLLECTIONS: [&str; 6] = [
    "users",
    "locations",
    "results",
    "assignments",
    "notes",
    "downtimes",
];

const FIRST: [&str; 8] = [
    "Ava", "Noah", "Mia", "Liam", "Emma", "Lucas", "Sofie", "Oliver",
];
const LAST: [&str; 8] = [
    "Hansen", "Smith", "Jensen", "Garcia", "Nielsen", "Brown", "Larsen", "Miller",
];
const RIDES: [&str; 8] = [
    "Dragon Coaster",
    "Log Flume",
    "Ferris Wheel",
    "Haunted Mine",
    "Sky Swing",
    "Bumper Cars",
    "Wave Pool",
    "Carousel",
];
const CHECKLISTS: [&str; 4] = [
    "Daily Opening Inspection",
    "Weekly Brake Check",
    "Restraint Test",
    "Closing Walkthrough",
];
const GROUPS: [&str; 4] = ["Operators", "Maintenance", "Supervisors", "Lifeguards"];
const REASONS: [&str; 4] = [
    "Weather",
    "Technical fault",
    "Guest incident",
    "Planned maintenance",
];

fn seed(collection: &str, id: &str) -> u64 {
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in collection.bytes().chain([0]).chain(id.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

fn ref_id(rng: &mut StdRng, collection: &str) -> String {
    format!(
        "{collection}/{}-{}",
        rng.random_range(1..99_999),
        pick(rng, &["A", "B", "C"])
    )
}

fn instant(rng: &mut StdRng, base: DateTime<Utc>, max_minutes: i64) -> DateTime<Utc> {
    base + Duration::minutes(rng.random_range(0..max_minutes.max(1)))
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One of the first eight Users (the ids webhooks and listings use), as
/// other records name people (`{id, name}`): who inspected, who is
/// assigned, who wrote a note.
fn person(rng: &mut StdRng) -> Value {
    let id = crate::listing::object_id("users", rng.random_range(0..8));
    let name = record("users", &id)
        .and_then(|user| user["name"].as_str().map(str::to_string))
        .unwrap_or_default();
    json!({"id": id, "name": name})
}

/// The canonical id of a record: ids in Mobaro's API look like `users/112899-C`;
/// a bare id (`112899-C`, or a UUID) gets the collection prefix.
pub fn canonical_id(collection: &str, id: &str) -> String {
    if id.starts_with(&format!("{collection}/")) {
        id.to_string()
    } else {
        format!("{collection}/{id}")
    }
}

/// A Result as after an unannounced change of the API: the checklist's
/// `name` renamed `title`, and a new field `shift`.
pub fn drift(result: &mut Value) {
    if let Some(checklist) = result.get_mut("checklist").and_then(Value::as_object_mut) {
        if let Some(name) = checklist.remove("name") {
            checklist.insert("title".into(), name);
        }
    }
    result["shift"] = "early".into();
}

/// The record with this id, or `None` for an unknown collection.
pub fn record(collection: &str, id: &str) -> Option<Value> {
    let id = canonical_id(collection, id);
    let mut rng = StdRng::seed_from_u64(seed(collection, &id));
    let epoch = Utc
        .with_ymd_and_hms(2025, 1, 1, 6, 0, 0)
        .single()
        .expect("valid date");
    let created = instant(&mut rng, epoch, 60 * 24 * 300);
    let updated = instant(&mut rng, created, 60 * 24 * 20);
    let location = json!({"id": ref_id(&mut rng, "locations"), "name": pick(&mut rng, &RIDES)});
    let value = match collection {
        "users" => {
            let first = pick(&mut rng, &FIRST);
            let last = pick(&mut rng, &LAST);
            json!({
                "id": id,
                "name": format!("{first} {last}"),
                "email": format!("{}.{}@park.example", first.to_lowercase(), last.to_lowercase()),
                "username": format!("{}{}", first.to_lowercase(), rng.random_range(1..99)),
                "userGroups": [{"id": ref_id(&mut rng, "usergroups"), "name": pick(&mut rng, &GROUPS)}],
                "roles": [pick(&mut rng, &["Operator", "Inspector", "Admin"])],
                "locations": [location],
                "archived": rng.random_bool(0.05),
                "created": iso(created),
                "updated": iso(updated),
            })
        }
        "results" => {
            let started = instant(&mut rng, created, 60);
            let questions = rng.random_range(8..16);
            let values: Vec<Value> = (0..questions)
                .map(|q| {
                    json!({
                        "question": format!("elements/{}-A", 1000 + q),
                        "answers": [pick(&mut rng, &["Yes", "No", "N/A", "OK", "Needs attention"])],
                        "answered": iso(started + Duration::seconds(30 * i64::from(q))),
                    })
                })
                .collect();
            json!({
                "id": id,
                "checklist": {"id": ref_id(&mut rng, "checklists"), "name": pick(&mut rng, &CHECKLISTS)},
                "location": location,
                "asset": {"id": ref_id(&mut rng, "assets"), "name": format!("{} car {}", pick(&mut rng, &RIDES), rng.random_range(1..12))},
                "user": person(&mut rng),
                "started": iso(started),
                "answered": iso(started + Duration::minutes(10)),
                "submitted": iso(started + Duration::minutes(11)),
                // Outcomes and Mobaro's Result types in one field: a guess
                // the dbt package's variables can remap.
                "status": pick(&mut rng, &["Passed", "Passed", "Passed", "Failed", "Passed with remarks", "Missed", "Invalidated"]),
                "score": f64::from(rng.random_range(50..=100u32)) / 100.0,
                "values": values,
                "created": iso(created),
                "updated": iso(updated),
            })
        }
        "locations" => json!({
            "id": id,
            "name": pick(&mut rng, &RIDES),
            "parent": {"id": ref_id(&mut rng, "locations"), "name": "Adventure Land"},
            "created": iso(created),
            "updated": iso(updated),
        }),
        "assignments" => json!({
            "id": id,
            "title": format!("Inspect {}", pick(&mut rng, &RIDES)),
            "location": location,
            "status": pick(&mut rng, &["Open", "Started", "Finished", "Reopened"]),
            "priority": pick(&mut rng, &["Low", "High"]),
            "critical": rng.random_bool(0.2),
            "due": iso(updated + Duration::days(2)),
            "assignee": person(&mut rng),
            "created": iso(created),
            "updated": iso(updated),
        }),
        "notes" => {
            let author = person(&mut rng);
            json!({
                "id": id,
                "title": "Shift note",
                "text": format!("Queue line at {} closed for cleaning. Reported by {}.", pick(&mut rng, &RIDES), author["name"].as_str().unwrap_or_default()),
                "author": author,
                "location": location,
                "created": iso(created),
                "updated": iso(updated),
            })
        }
        "downtimes" => {
            let status = pick(
                &mut rng,
                &["Resolved", "Closed", "Closed", "Open", "Blocking"],
            );
            let mut downtime = json!({
                "id": id,
                "location": location,
                "reason": {"id": ref_id(&mut rng, "downtimereasons"), "name": pick(&mut rng, &REASONS)},
                "status": status,
                "start": iso(created),
                "end": iso(created + Duration::minutes(rng.random_range(5..240))),
                "created": iso(created),
                "updated": iso(updated),
            });
            // Open and blocking downtimes have not ended.
            if matches!(status, "Open" | "Blocking") {
                if let Some(fields) = downtime.as_object_mut() {
                    fields.remove("end");
                }
            }
            downtime
        }
        _ => return None,
    };
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_deterministic_and_accept_both_id_forms() {
        assert_eq!(record("users", "users/1-A"), record("users", "1-A"));
        assert_ne!(record("users", "users/1-A"), record("users", "users/2-A"));
        assert!(record("widgets", "1").is_none());
        for collection in COLLECTIONS {
            let value = record(collection, "7-B").expect("known collection");
            assert_eq!(value["id"], format!("{collection}/7-B"));
        }
    }
}
