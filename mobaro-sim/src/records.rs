//! Generated Mobaro records, shaped as far as Mobaro's public material shows
//! them. The same id always yields the same record, so a test can fetch a record
//! again and compare it with what reached the lake.
//!
//! Records belong to a [`Park`]: a fixed set of locations, each with its
//! time zone and opening hours (one in another zone, one open around the
//! clock, planned closures), and Downtimes, Results and Assignments at those
//! locations over the park's history, which ends at its anchor.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
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

/// Locations the other records refer to: the first this many Location ids.
pub const PARK_LOCATIONS: u32 = 8;

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
    "Park Services",
    "Liberty Carousel",
];
/// Checklists; the first is critical for operation (done before opening).
const CHECKLISTS: [&str; 4] = [
    "Daily Opening Inspection",
    "Weekly Brake Check",
    "Restraint Test",
    "Closing Walkthrough",
];
const GROUPS: [&str; 4] = ["Operators", "Maintenance", "Supervisors", "Lifeguards"];
const REASONS: [&str; 4] = [
    "Sensor fault",
    "Lightning nearby",
    "Guest incident",
    "Awaiting inspection",
];
const CATEGORIES: [&str; 5] = [
    "Technical",
    "Weather",
    "Guest related",
    "Operational",
    "Inspection",
];

/// The park the records describe: its history ends at `anchor` and reaches
/// `history_days` back.
#[derive(Debug, Clone, Copy)]
pub struct Park {
    /// The end of the history: nothing happens after it.
    pub anchor: DateTime<Utc>,
    /// How many days the history reaches back.
    pub history_days: u32,
}

impl Default for Park {
    /// A history across 2025 (what tests that need closed days use).
    fn default() -> Self {
        Park {
            anchor: Utc
                .with_ymd_and_hms(2025, 10, 28, 6, 0, 0)
                .single()
                .expect("valid date"),
            history_days: 300,
        }
    }
}

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Opening and closing time of one weekday, local.
type Hours = (NaiveTime, NaiveTime);

/// One location of the park, as its Location record tells it.
pub struct Site {
    /// The Location's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its time zone.
    pub zone: Tz,
    /// Opening hours Monday to Sunday (`None`: closed that weekday); no
    /// calendar at all when `None` (open around the clock).
    pub weekly: Option<[Option<Hours>; 7]>,
    /// Local days the location is closed (planned closures).
    pub closures: Vec<NaiveDate>,
}

fn hm(hour: u32, minute: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(hour, minute, 0).expect("valid time")
}

/// The UTC instant of a local time (the first, around a DST change; the
/// hour after a gap).
fn local(zone: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let naive = date.and_time(time);
    zone.from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            zone.from_local_datetime(&(naive + Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&naive))
}

impl Site {
    /// The opening window of a local day: `None` when closed; the whole
    /// local day without a calendar.
    pub fn window(&self, date: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let Some(weekly) = &self.weekly else {
            return Some((
                local(self.zone, date, NaiveTime::MIN),
                local(self.zone, date + Duration::days(1), NaiveTime::MIN),
            ));
        };
        if self.closures.contains(&date) {
            return None;
        }
        let (open, close) = weekly[date.weekday().num_days_from_monday() as usize]?;
        Some((local(self.zone, date, open), local(self.zone, date, close)))
    }

    /// The hours a day would have without closures, to place events on
    /// closed days too.
    fn usual_window(&self, date: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
        self.window(date).unwrap_or_else(|| {
            (
                local(self.zone, date, hm(10, 0)),
                local(self.zone, date, hm(18, 0)),
            )
        })
    }

    fn json(&self) -> Value {
        let hours = self.weekly.map(|weekly| {
            let days: Vec<Value> = weekly
                .iter()
                .enumerate()
                .filter_map(|(day, hours)| {
                    let (open, close) = (*hours)?;
                    Some(json!({
                        "weekday": WEEKDAYS[day],
                        "opens": open.format("%H:%M").to_string(),
                        "closes": close.format("%H:%M").to_string(),
                    }))
                })
                .collect();
            let closures: Vec<Value> = self
                .closures
                .iter()
                .map(|date| json!({"date": date.to_string(), "reason": "Planned maintenance"}))
                .collect();
            json!({"weekly": days, "closures": closures})
        });
        json!({
            "timeZone": self.zone.name(),
            "openingHours": hours,
        })
    }
}

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

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn minutes(rng: &mut StdRng, range: std::ops::Range<i64>) -> Duration {
    Duration::minutes(rng.random_range(range))
}

/// The number in an id made by `listing::object_id` (`locations/1003-A` → 3).
fn number(id: &str) -> u32 {
    id.rsplit('/')
        .next()
        .and_then(|rest| rest.split('-').next())
        .and_then(|n| n.parse::<u32>().ok())
        .map_or(0, |n| n.saturating_sub(1000))
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

/// The record with this id in the default park, or `None` for an unknown
/// collection.
pub fn record(collection: &str, id: &str) -> Option<Value> {
    Park::default().record(collection, id)
}

impl Park {
    /// The park's local date of the anchor at its main zone.
    fn today(&self) -> NaiveDate {
        self.anchor
            .with_timezone(&chrono_tz::Europe::Copenhagen)
            .date_naive()
    }

    /// The `n`th location of the park (`n` modulo [`PARK_LOCATIONS`] decides
    /// its kind): the eighth in New York, the seventh open around the
    /// clock, the fourth closed on Tuesdays; each with one planned closure.
    pub fn site(&self, n: u32) -> Site {
        let kind = n % PARK_LOCATIONS;
        let zone = if kind == 7 {
            chrono_tz::America::New_York
        } else {
            chrono_tz::Europe::Copenhagen
        };
        let weekly = (kind != 6).then(|| {
            std::array::from_fn(|day| match day {
                1 if kind == 3 => None,
                5 | 6 => Some((hm(9, 0), hm(20, 0))),
                _ => Some((hm(10, 0), hm(18, 0))),
            })
        });
        let name = if n < PARK_LOCATIONS {
            RIDES[kind as usize].to_string()
        } else {
            format!("{} {}", RIDES[kind as usize], n / PARK_LOCATIONS + 1)
        };
        Site {
            id: crate::listing::object_id("locations", n),
            name,
            zone,
            weekly,
            closures: vec![self.today() - Duration::days(5 + 4 * i64::from(kind))],
        }
    }

    /// The record with this id, or `None` for an unknown collection.
    pub fn record(&self, collection: &str, id: &str) -> Option<Value> {
        let id = canonical_id(collection, id);
        let mut rng = StdRng::seed_from_u64(seed(collection, &id));
        let history = i64::from(self.history_days.max(1));
        let created = self.anchor - minutes(&mut rng, 0..history * 24 * 60);
        let updated = (created + minutes(&mut rng, 0..60 * 24 * 20)).min(self.anchor);
        let site = self.site(number(&id) % PARK_LOCATIONS);
        let location = json!({"id": site.id, "name": site.name});
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
            "results" => self.result(&mut rng, &id, &site),
            "locations" => {
                let site = self.site(number(&id));
                let mut value = json!({
                    "id": id,
                    "name": site.name,
                    "parent": {"id": "locations/1-P", "name": "Adventure Land"},
                    "created": iso(created),
                    "updated": iso(updated),
                });
                if let (Some(fields), Value::Object(calendar)) =
                    (value.as_object_mut(), site.json())
                {
                    fields.extend(calendar);
                }
                value
            }
            "assignments" => self.assignment(&mut rng, &id, created, location),
            "notes" => {
                let author = self.person(&mut rng);
                json!({
                    "id": id,
                    "title": "Shift note",
                    "text": format!("Queue line at {} closed for cleaning. Reported by {}.", site.name, author["name"].as_str().unwrap_or_default()),
                    "author": author,
                    "location": location,
                    "created": iso(created),
                    "updated": iso(updated),
                })
            }
            "downtimes" => self.downtime(&mut rng, &id, &site),
            _ => return None,
        };
        Some(value)
    }

    /// One of the first eight Users (the ids webhooks and listings use), as
    /// other records name people (`{id, name}`): who inspected, who is
    /// assigned, who wrote a note.
    fn person(&self, rng: &mut StdRng) -> Value {
        let id = crate::listing::object_id("users", rng.random_range(0..8));
        let name = self
            .record("users", &id)
            .and_then(|user| user["name"].as_str().map(str::to_string))
            .unwrap_or_default();
        json!({"id": id, "name": name})
    }

    /// A local day of the history, and a time on it no later than the
    /// anchor (a week earlier when it would lie ahead).
    fn day(&self, rng: &mut StdRng) -> NaiveDate {
        self.today() - Duration::days(rng.random_range(0..i64::from(self.history_days.max(1))))
    }

    fn not_ahead(&self, mut at: DateTime<Utc>, lasting: Duration) -> DateTime<Utc> {
        while at + lasting > self.anchor {
            at -= Duration::days(7);
        }
        at
    }

    /// A Downtime at `site`: inside opening hours, across closing, across
    /// midnight or after hours; open when it has not ended by the anchor;
    /// some edited days after they closed.
    fn downtime(&self, rng: &mut StdRng, id: &str, site: &Site) -> Value {
        let date = self.day(rng);
        let (open, close) = site.usual_window(date);
        let (start, lasting) = match rng.random_range(0..10) {
            0..=5 => {
                let span = (close - open).num_minutes().max(20);
                (open + minutes(rng, 0..span - 10), minutes(rng, 5..120))
            }
            6 => (close - minutes(rng, 15..60), minutes(rng, 60..180)),
            7 => (
                local(site.zone, date, hm(22, 0)) + minutes(rng, 0..90),
                minutes(rng, 600..780),
            ),
            8 => (close + minutes(rng, 30..120), minutes(rng, 20..60)),
            _ => (open + minutes(rng, 0..60), minutes(rng, 120..300)),
        };
        // Downtimes of the last hours may still be open at the anchor.
        let start = self.not_ahead(start, Duration::zero());
        let end = start + lasting;
        let is_open = end > self.anchor;
        let category = rng.random_range(0..CATEGORIES.len());
        let reason = pick(rng, &REASONS);
        let edited = !is_open && rng.random_bool(0.15);
        let updated = if edited {
            (end + minutes(rng, 60 * 24..60 * 24 * 5)).min(self.anchor)
        } else {
            end.min(self.anchor)
        };
        let mut downtime = json!({
            "id": id,
            "location": {"id": site.id, "name": site.name},
            "category": {"id": format!("downtimecategories/{}-A", 100 + category), "name": CATEGORIES[category]},
            "reason": {"id": ref_id(rng, "downtimereasons"), "name": reason},
            "status": if is_open { pick(rng, &["Open", "Blocking"]) } else { pick(rng, &["Resolved", "Closed", "Closed"]) },
            "start": iso(start),
            "end": iso(end),
            "created": iso(start),
            "updated": iso(updated),
        });
        if let Some(fields) = downtime.as_object_mut() {
            if is_open {
                fields.remove("end");
            }
            if edited {
                fields.insert("revision".into(), 2.into());
            }
        }
        downtime
    }

    /// A Result of a checklist at `site`: the opening inspection (critical
    /// for operation) in the Calendar slot before opening, the others in
    /// Calendar, Ad Hoc or Continuous schedules; Calendar and Ad Hoc slots
    /// can be missed (then approved or rescheduled).
    fn result(&self, rng: &mut StdRng, id: &str, site: &Site) -> Value {
        let date = self.day(rng);
        let (open, close) = site.usual_window(date);
        let checklist = rng.random_range(0..CHECKLISTS.len());
        let critical = checklist == 0;
        let kind = if critical {
            "Calendar"
        } else {
            pick(rng, &["Calendar", "Calendar", "Ad Hoc", "Continuous"])
        };
        let slot = if critical && site.weekly.is_some() {
            open - Duration::minutes(30)
        } else if critical {
            local(site.zone, date, hm(6, 0))
        } else {
            let span = (close - open).num_minutes().max(20);
            open + minutes(rng, 0..span)
        };
        let slot = self.not_ahead(slot, Duration::minutes(60));
        let statuses: &[&str] = if kind == "Continuous" {
            &[
                "Passed",
                "Passed",
                "Passed",
                "Failed",
                "Passed with remarks",
                "Invalidated",
            ]
        } else {
            &[
                "Passed",
                "Passed",
                "Passed",
                "Failed",
                "Passed with remarks",
                "Missed",
                "Missed",
                "Invalidated",
            ]
        };
        let status = pick(rng, statuses);
        let checklist_ref = json!({
            "id": format!("checklists/{}-A", 2000 + checklist),
            "name": CHECKLISTS[checklist],
            "criticalForOperation": critical,
        });
        let mut result = json!({
            "id": id,
            "checklist": checklist_ref,
            "location": {"id": site.id, "name": site.name},
            "asset": {"id": ref_id(rng, "assets"), "name": format!("{} car {}", site.name, rng.random_range(1..12))},
            "user": self.person(rng),
            "schedule": {"kind": kind, "slot": iso(slot)},
            "status": status,
            "created": iso(slot),
            "updated": iso(slot),
        });
        if status == "Missed" {
            let handling = pick(rng, &["Approved", "Rescheduled", "Pending"]);
            result["missed"] = json!({"handling": handling});
            return result;
        }
        let started = slot + minutes(rng, -25..30);
        let questions = rng.random_range(8..16);
        let values: Vec<Value> = (0..questions)
            .map(|q| {
                json!({
                    "question": format!("elements/{}-A", 1000 + q),
                    "answers": [pick(rng, &["Yes", "No", "N/A", "OK", "Needs attention"])],
                    "answered": iso(started + Duration::seconds(30 * i64::from(q))),
                })
            })
            .collect();
        let submitted = started + Duration::minutes(11);
        result["started"] = iso(started).into();
        result["answered"] = iso(started + Duration::minutes(10)).into();
        result["submitted"] = iso(submitted).into();
        // Outcomes and Mobaro's Result types in one field: a guess the dbt
        // package's variables can remap.
        result["score"] = (f64::from(rng.random_range(50..=100u32)) / 100.0).into();
        result["values"] = values.into();
        result["updated"] = iso(submitted.min(self.anchor)).into();
        result
    }

    /// An Assignment at a location: created over the history, due days
    /// later, most resolved by the anchor.
    fn assignment(
        &self,
        rng: &mut StdRng,
        id: &str,
        created: DateTime<Utc>,
        location: Value,
    ) -> Value {
        let due = created + minutes(rng, 60 * 24..60 * 24 * 7);
        let resolved = rng
            .random_bool(0.85)
            .then(|| created + minutes(rng, 30..60 * 24 * 6))
            .filter(|at| *at <= self.anchor);
        let site_name = location["name"].as_str().unwrap_or_default().to_string();
        let mut assignment = json!({
            "id": id,
            "title": format!("Inspect {site_name}"),
            "location": location,
            "status": if resolved.is_some() { "Finished" } else { pick(rng, &["Open", "Started", "Reopened"]) },
            "priority": pick(rng, &["Low", "Medium", "High"]),
            "critical": rng.random_bool(0.2),
            "due": iso(due),
            "assignee": self.person(rng),
            "created": iso(created),
            "updated": iso(resolved.unwrap_or(created)),
        });
        if let Some(resolved) = resolved {
            assignment["resolved"] = iso(resolved).into();
        }
        assignment
    }
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

    #[test]
    fn the_park_refers_to_its_own_locations_and_nothing_lies_ahead() {
        let park = Park {
            anchor: Utc
                .with_ymd_and_hms(2025, 11, 5, 12, 0, 0)
                .single()
                .expect("date"),
            history_days: 42,
        };
        let locations: Vec<String> = (0..PARK_LOCATIONS)
            .map(|n| crate::listing::object_id("locations", n))
            .collect();
        let mut kinds = std::collections::BTreeSet::new();
        for n in 0..200 {
            for collection in ["results", "downtimes", "assignments"] {
                let value = park
                    .record(collection, &crate::listing::object_id(collection, n))
                    .expect("a record");
                assert!(locations.contains(
                    &value["location"]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                ));
                for field in [
                    "created",
                    "updated",
                    "start",
                    "end",
                    "submitted",
                    "resolved",
                ] {
                    if let Some(at) = value[field].as_str() {
                        let at: DateTime<Utc> = at.parse().expect("a time");
                        assert!(at <= park.anchor, "{collection} {n} {field} {at}");
                        assert!(
                            at >= park.anchor - Duration::days(44),
                            "{collection} {n} {field} {at}"
                        );
                    }
                }
                if collection == "results" {
                    kinds.insert(
                        value["schedule"]["kind"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
            }
        }
        assert_eq!(kinds.len(), 3, "{kinds:?}");
        let new_york = park
            .record("locations", "locations/1007-A")
            .expect("a location");
        assert_eq!(new_york["timeZone"], "America/New_York");
        assert!(park
            .record("locations", "locations/1006-A")
            .expect("a location")["openingHours"]
            .is_null());
        // Copenhagen's DST change lies in the history: 25 hours that day.
        let (from, to) = park
            .site(6)
            .window(NaiveDate::from_ymd_opt(2025, 10, 26).expect("date"))
            .expect("open");
        assert_eq!((to - from).num_minutes(), 25 * 60);
    }
}
