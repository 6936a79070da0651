//! The dbt package's numbers: the simulator's park (opening hours, two time
//! zones, a DST change, planned closures, downtimes across midnight and
//! after hours, downtimes edited after they closed, Calendar, Ad Hoc and
//! Continuous schedules) goes through the sink into a Delta lake, as
//! webhooks and as a backfill's snapshots; `scripts/dbt build` builds and
//! tests the marts; each mart is compared row by row with the same figures
//! computed by `marts_expected.py`, plain Python over the records that
//! shares nothing with the SQL.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use chrono::{DateTime, Utc};
use end_to_end::{duckdb, free_port, log_dir, unique, wait_until_ready, Process, Services};
use mobaro_sim::listing::object_id;
use mobaro_sim::records::Park;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};

/// The end of the park's history, and the moment the marts judge at.
const AS_OF: &str = "2025-11-05T12:00:00Z";

/// One enriched record as the enricher produces it.
struct Event {
    resource: &'static str,
    kind: &'static str,
    object_id: String,
    at: DateTime<Utc>,
    record: Option<Value>,
}

impl Event {
    fn json(&self, index: usize) -> String {
        json!({
            "event_id": format!("{index:032x}"),
            "resource": self.resource,
            "event": self.kind,
            "object_id": self.object_id,
            "event_timestamp": self.at.to_rfc3339(),
            "received_at": self.at.to_rfc3339(),
            "fetched_at": self.at.to_rfc3339(),
            "status": if self.record.is_some() { "found" } else { "deleted" },
            "record": self.record,
        })
        .to_string()
    }

    fn of(resource: &'static str, kind: &'static str, at: DateTime<Utc>, record: Value) -> Self {
        Event {
            resource,
            kind,
            object_id: record["id"].as_str().unwrap_or_default().to_string(),
            at,
            record: Some(record),
        }
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

fn time(value: &Value) -> Option<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|at| at.with_timezone(&Utc))
}

fn park() -> anyhow::Result<Park> {
    Ok(Park {
        anchor: DateTime::parse_from_rfc3339(AS_OF)?.with_timezone(&Utc),
        history_days: 42,
    })
}

/// Six weeks of the park: its 8 Locations as a backfill's snapshots (the
/// first renamed and its hours changed three weeks before the end), 8
/// Users, 400 Results (every tenth first failed, the last deleted), 160
/// Downtimes (those edited after they closed first with another end and
/// category) and 100 Assignments (first open, then as now).
fn fixture(park: &Park) -> anyhow::Result<Vec<Event>> {
    let record = |collection: &str, n: u32| {
        park.record(collection, &object_id(collection, n))
            .context("the simulator serves the collection")
    };
    let start = park.anchor - chrono::Duration::days(43);
    let mut events = Vec::new();
    for n in 0..8 {
        let location = record("locations", n)?;
        if n == 0 {
            // Renamed, and its hours changed from 11-17 to the season's,
            // three weeks before the end of the history.
            let mut earlier = location.clone();
            earlier["name"] = json!("Dragon Coaster (old)");
            for day in earlier["openingHours"]["weekly"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                day["opens"] = json!("11:00");
                day["closes"] = json!("17:00");
            }
            events.push(Event::of("Locations", "Snapshot", start, earlier));
            events.push(Event::of(
                "Locations",
                "Updated",
                park.anchor - chrono::Duration::days(20),
                location,
            ));
        } else {
            events.push(Event::of("Locations", "Snapshot", start, location));
        }
        events.push(Event::of("Users", "Updated", start, record("users", n)?));
    }
    for n in 0..400 {
        let current = record("results", n)?;
        let at = time(&current["updated"]).context("updated")?;
        if n % 10 == 0 {
            let mut earlier = current.clone();
            earlier["status"] = json!("Failed");
            events.push(Event::of(
                "Results",
                "Created",
                at - chrono::Duration::hours(1),
                earlier,
            ));
        }
        events.push(Event::of("Results", "Updated", at, current.clone()));
        if n == 399 {
            events.push(Event {
                resource: "Results",
                kind: "Deleted",
                object_id: current["id"].as_str().unwrap_or_default().to_string(),
                at: at + chrono::Duration::hours(1),
                record: None,
            });
        }
    }
    for n in 0..160 {
        let current = record("downtimes", n)?;
        let at = time(&current["updated"]).context("updated")?;
        if current.get("revision").is_some() {
            let mut earlier = current.clone();
            let end = time(&current["end"]).context("end")? - chrono::Duration::minutes(30);
            earlier["end"] = json!(end.to_rfc3339());
            earlier["category"] = json!({"id": "downtimecategories/999-A", "name": "Reported"});
            events.push(Event::of(
                "Downtimes",
                "Updated",
                at - chrono::Duration::days(1),
                earlier,
            ));
        }
        events.push(Event::of("Downtimes", "Updated", at, current));
    }
    for n in 0..100 {
        let current = record("assignments", n)?;
        let created = time(&current["created"]).context("created")?;
        let mut earlier = current.clone();
        earlier["status"] = json!("Open");
        if let Some(fields) = earlier.as_object_mut() {
            fields.remove("resolved");
        }
        events.push(Event::of("Assignments", "Created", created, earlier));
        let updated = time(&current["updated"]).context("updated")?;
        if updated > created {
            events.push(Event::of("Assignments", "Updated", updated, current));
        }
    }
    Ok(events)
}

/// The current record of each object: its latest event's, None when deleted.
fn current(events: &[Event], resource: &str) -> Vec<Value> {
    let mut latest: BTreeMap<&str, &Event> = BTreeMap::new();
    for event in events.iter().filter(|e| e.resource == resource) {
        let entry = latest.entry(&event.object_id).or_insert(event);
        if event.at > entry.at {
            *entry = event;
        }
    }
    latest
        .values()
        .filter_map(|event| event.record.clone())
        .collect()
}

/// Whether two values of a mart's column agree: numbers to a hundredth
/// (both sides round differently), the rest exactly.
fn same(found: &Value, expected: &Value) -> bool {
    match (found.as_f64(), expected.as_f64()) {
        (Some(f), Some(e)) => (f - e).abs() < 0.011,
        _ => found == expected,
    }
}

/// Compares a mart with the rows `marts_expected.py` computed: the same
/// keys, and each column of `columns` equal.
fn compare(
    name: &str,
    found: &[BTreeMap<String, Value>],
    expected: &[Value],
    keys: &[&str],
    columns: &[&str],
) -> anyhow::Result<()> {
    let key = |row: &dyn Fn(&str) -> Value| -> String {
        keys.iter()
            .map(|k| match row(k) {
                Value::String(text) => text,
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let found: BTreeMap<String, &BTreeMap<String, Value>> = found
        .iter()
        .map(|row| (key(&|c| row.get(c).cloned().unwrap_or(Value::Null)), row))
        .collect();
    let expected: BTreeMap<String, &Value> = expected
        .iter()
        .map(|row| (key(&|c| row[c].clone()), row))
        .collect();
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !found.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = found
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .take(5)
        .collect();
    ensure!(
        missing.is_empty() && extra.is_empty(),
        "{name}: {} rows, {} expected; missing {missing:?}, unexpected {extra:?}",
        found.len(),
        expected.len()
    );
    let mut differences = vec![];
    for (k, want) in &expected {
        let got = found[k];
        for column in columns {
            let value = got.get(*column).cloned().unwrap_or(Value::Null);
            if !same(&value, &want[*column]) {
                differences.push(format!(
                    "{k} {column}: {value} found, {} expected",
                    want[*column]
                ));
            }
        }
    }
    ensure!(
        differences.is_empty(),
        "{name}: {} differences, first: {:#?}",
        differences.len(),
        &differences[..differences.len().min(8)]
    );
    eprintln!("{name}: {} rows equal", expected.len());
    Ok(())
}

/// Runs the sink on `topic` into the folder `lake` until every table of
/// the fixture holds its rows.
async fn write_lake(
    services: &Services,
    topic: &str,
    lake: &Path,
    events: &[Event],
) -> anyhow::Result<()> {
    end_to_end::create_topics(&services.brokers, &[topic], 3).await?;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &services.brokers)
        .set("linger.ms", "5")
        .create()?;
    for (index, event) in events.iter().enumerate() {
        producer
            .send(
                FutureRecord::to(topic)
                    .key(&event.object_id)
                    .payload(&event.json(index)),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(error, _)| error)?;
    }
    let ops = format!("127.0.0.1:{}", free_port());
    let logs = log_dir("marts-logs-")?;
    let lake_url = lake.display().to_string();
    let group = unique("marts");
    let sink = Process::start(
        "sink",
        &[],
        &[
            ("KAFKA_BROKERS", services.brokers.as_str()),
            ("ENRICHED_TOPIC", topic),
            ("DEAD_LETTER_TOPIC", "marts-tests.deadletter"),
            ("SINK_GROUP_ID", &group),
            ("SINK_OPS_LISTEN", &ops),
            ("LAKE_URL", &lake_url),
            ("SINK_MAX_FILE_AGE", "1s"),
        ],
        &logs,
    )?;
    wait_until_ready(&format!("http://{ops}/healthz"), Duration::from_secs(30)).await?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let rows = if lake.join("events/_delta_log").exists() {
            duckdb(
                &services.python,
                &format!("SELECT count(*) AS n FROM delta_scan('{lake_url}/events')"),
            )?[0]["n"]
                .as_u64()
                .unwrap_or(0)
        } else {
            0
        };
        if rows == events.len() as u64 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the lake holds {rows} of {} events",
            events.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    sink.interrupt(Duration::from_secs(30))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_marts_hold_mobaros_figures_computed_from_the_records() -> anyhow::Result<()> {
    let services = Services::from_env();
    let park = park()?;
    let events = fixture(&park)?;
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake");
    write_lake(&services, &unique("marts.enriched"), &lake, &events).await?;
    // Compaction closes the days and each table publishes its last closed day.
    let compacted = std::process::Command::new(end_to_end::binary("sink"))
        .arg("compact")
        .env("LAKE_URL", &lake)
        .output()?;
    ensure!(
        compacted.status.success(),
        "sink compact failed: {}",
        String::from_utf8_lossy(&compacted.stderr)
    );
    let published: Value =
        serde_json::from_slice(&std::fs::read(lake.join("_lake_status/downtimes.json"))?)?;

    let database = dir.path().join("marts.duckdb");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let started = Instant::now();
    let built = std::process::Command::new(root.join("scripts/dbt"))
        .args(["build", "--vars", &format!("{{mobaro_as_of: '{AS_OF}'}}")])
        .env("MOBARO_LAKE_URL", &lake)
        .env("MOBARO_DBT_DATABASE", &database)
        .output()?;
    ensure!(
        built.status.success(),
        "dbt build failed:\n{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    eprintln!(
        "dbt build (models and tests): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mart = |name: &str| {
        duckdb(
            &services.python,
            &format!(
                "ATTACH '{}' AS marts (READ_ONLY); SELECT * FROM marts.main.{name}",
                database.display()
            ),
        )
    };

    // The ground truth: the records as Mobaro holds them now.
    let truth = json!({
        "as_of": AS_OF,
        "grace_hours": published["compaction_grace_hours"],
        "final_through": published["final_through"],
        "location_versions": events
            .iter()
            .filter(|e| e.resource == "Locations")
            .filter_map(|e| e.record.as_ref().map(|record| json!({"at": e.at.to_rfc3339(), "record": record})))
            .collect::<Vec<_>>(),
        "downtimes": current(&events, "Downtimes"),
        "results": current(&events, "Results"),
        "assignments": current(&events, "Assignments"),
    });
    let truth_file = dir.path().join("records.json");
    std::fs::write(&truth_file, truth.to_string())?;
    let computed = std::process::Command::new(&services.python)
        .arg(root.join("tests/marts_expected.py"))
        .arg(&truth_file)
        .output()?;
    ensure!(
        computed.status.success(),
        "marts_expected.py failed: {}",
        String::from_utf8_lossy(&computed.stderr)
    );
    let expected: Value = serde_json::from_slice(&computed.stdout)?;
    let rows = |name: &str| expected[name].as_array().cloned().unwrap_or_default();

    for (name, least) in [
        ("mart_location_availability_daily", 300),
        ("mart_downtime_category_daily", 100),
        ("mart_inspection_compliance_daily", 300),
        ("mart_opening_readiness_daily", 50),
        ("mart_assignment_backlog_daily", 500),
    ] {
        ensure!(
            rows(name).len() >= least,
            "{name}: only {} rows expected",
            rows(name).len()
        );
    }
    let availability = mart("mart_location_availability_daily")?;
    compare(
        "mart_location_availability_daily",
        &availability,
        &rows("mart_location_availability_daily"),
        &["location_id", "local_date"],
        &[
            "opening_minutes",
            "downtime_minutes",
            "operational_minutes",
            "uptime_pct",
            "downtime_pct",
            "downtimes",
            "mttr_minutes",
            "mttr_elapsed_minutes",
            "mtbf_hours",
            "is_provisional",
            "is_final",
        ],
    )?;
    compare(
        "mart_downtime_category_daily",
        &mart("mart_downtime_category_daily")?,
        &rows("mart_downtime_category_daily"),
        &["location_id", "local_date", "category"],
        &["downtimes", "downtime_minutes"],
    )?;
    // The Pareto: the category rows summed over the history.
    let mut pareto: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
    for row in rows("mart_downtime_category_daily") {
        let key = (text(&row["category"]), text(&row["location_id"]));
        let entry = pareto.entry(key).or_default();
        entry.0 += row["downtimes"].as_f64().unwrap_or(0.0);
        entry.1 += row["downtime_minutes"].as_f64().unwrap_or(0.0);
    }
    let pareto: Vec<Value> = pareto
        .into_iter()
        .map(|((category, location), (downtimes, minutes))| {
            json!({"category": category, "location_id": location, "downtimes": downtimes, "downtime_minutes": minutes})
        })
        .collect();
    let found_pareto = mart("mart_downtime_pareto")?;
    compare(
        "mart_downtime_pareto",
        &found_pareto,
        &pareto,
        &["category", "location_id"],
        &["downtimes", "downtime_minutes"],
    )?;
    let mut ranked: Vec<_> = found_pareto.iter().collect();
    ranked.sort_by_key(|row| row["pareto_rank"].as_i64());
    ensure!(
        ranked
            .windows(2)
            .all(|w| w[0]["downtime_minutes"].as_f64() >= w[1]["downtime_minutes"].as_f64())
            && ranked
                .last()
                .and_then(|row| row["cumulative_share_pct"].as_f64())
                == Some(100.0),
        "the Pareto is not in decreasing order up to 100 %"
    );
    compare(
        "mart_inspection_compliance_daily",
        &mart("mart_inspection_compliance_daily")?,
        &rows("mart_inspection_compliance_daily"),
        &[
            "location_id",
            "result_date",
            "checklist_id",
            "schedule_kind",
        ],
        &[
            "slots",
            "completed",
            "missed",
            "missed_approved",
            "missed_rescheduled",
            "compliance_pct",
            "mean_score",
        ],
    )?;
    compare(
        "mart_opening_readiness_daily",
        &mart("mart_opening_readiness_daily")?,
        &rows("mart_opening_readiness_daily"),
        &["location_id", "local_date"],
        &[
            "critical_checks",
            "passed_before_opening",
            "is_ready_before_opening",
        ],
    )?;
    compare(
        "mart_assignment_backlog_daily",
        &mart("mart_assignment_backlog_daily")?,
        &rows("mart_assignment_backlog_daily"),
        &["location_id", "local_date", "priority", "is_critical"],
        &[
            "created",
            "resolved",
            "open_at_end",
            "overdue_at_end",
            "median_open_age_days",
        ],
    )?;

    // The data holds the cases the definitions differ on.
    let day = |location: u32, date: &str| {
        availability
            .iter()
            .find(|row| {
                row["location_id"] == object_id("locations", location) && row["local_date"] == date
            })
            .cloned()
            .with_context(|| format!("no availability row for location {location} on {date}"))
    };
    // Copenhagen's DST change: 25 hours at the location open around the clock.
    ensure!(day(6, "2025-10-26")?["opening_minutes"].as_f64() == Some(1500.0));
    ensure!(day(7, "2025-11-02")?["time_zone"] == "America/New_York");
    // The calendar in force that day: 11-17 before the change, 10-18 after.
    ensure!(day(0, "2025-10-08")?["opening_minutes"].as_f64() == Some(360.0));
    ensure!(day(0, "2025-10-22")?["opening_minutes"].as_f64() == Some(480.0));
    let closed = availability
        .iter()
        .filter(|row| row["is_closure"] == true && row["opening_minutes"].as_f64() == Some(0.0))
        .count();
    ensure!(closed >= 7, "{closed} planned closures");
    let downtimes = current(&events, "Downtimes");
    ensure!(
        downtimes.iter().any(|d| d.get("revision").is_some()),
        "no edited downtime"
    );
    let spans_midnight = downtimes
        .iter()
        .any(|d| match (time(&d["start"]), time(&d["end"])) {
            (Some(s), Some(e)) => (e - s).num_hours() >= 9,
            _ => false,
        });
    ensure!(spans_midnight, "no downtime across midnight");
    let ignored = duckdb(
        &services.python,
        &format!(
            "ATTACH '{}' AS marts (READ_ONLY); SELECT count(*) AS n FROM marts.main.fct_downtime \
             WHERE downtime_id NOT IN (SELECT downtime_id FROM marts.main.int_downtime_in_hours)",
            database.display()
        ),
    )?;
    ensure!(
        ignored[0]["n"].as_u64().unwrap_or(0) > 0,
        "no downtime outside opening hours"
    );
    // Nothing beyond what is physically possible.
    let impossible = availability
        .iter()
        .filter(|row| {
            row["downtime_minutes"].as_f64().unwrap_or(0.0)
                > row["opening_minutes"].as_f64().unwrap_or(0.0) + 0.01
        })
        .count();
    ensure!(
        impossible == 0,
        "{impossible} location-days down longer than open"
    );
    // One version per distinct record of an Assignment: created open, then
    // as now once it changed.
    let versions: usize = current(&events, "Assignments")
        .iter()
        .map(|a| 1 + usize::from(time(&a["updated"]) > time(&a["created"])))
        .sum();
    let history = mart("dim_assignment_history")?;
    ensure!(
        history.len() == versions
            && history
                .iter()
                .filter(|row| row["is_current"] == true)
                .count()
                == 100,
        "dim_assignment_history: {} versions, {versions} expected",
        history.len()
    );
    let history = mart("dim_location_history")?;
    ensure!(
        history
            .iter()
            .filter(|row| row["location_id"] == object_id("locations", 0))
            .count()
            == 2,
        "the renamed location's versions: {history:?}"
    );

    dashboard_shows_the_marts(&lake, &database, dir.path(), &expected).await
}

/// `scripts/dashboard` builds the page from the same lake; headless
/// Chromium loads it from the disk with a location and a date range chosen
/// in its address: every chart drew an SVG with marks, no script failed,
/// and each figure the page shows equals the one computed from
/// `marts_expected.py`'s rows for that selection. The screenshot is kept
/// in target/test-artifacts/.
async fn dashboard_shows_the_marts(
    lake: &Path,
    database: &Path,
    dir: &Path,
    expected: &Value,
) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let page = dir.join("dashboard");
    let started = Instant::now();
    let built = std::process::Command::new(root.join("scripts/dashboard"))
        .env("MOBARO_LAKE_URL", lake)
        .env("MOBARO_DBT_DATABASE", database)
        .env("MOBARO_DASHBOARD_DIR", &page)
        .env("MOBARO_AS_OF", AS_OF)
        .output()?;
    ensure!(
        built.status.success(),
        "scripts/dashboard failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    eprintln!(
        "dashboard built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Closed on Tuesdays, a planned closure, and the DST change inside.
    let location = object_id("locations", 3);
    let (from, to) = ("2025-10-20", "2025-11-02");
    let url = format!(
        "file://{}#location={location}&from={from}&to={to}",
        page.join("index.html").display()
    );
    let chromium = |extra: &[&str]| -> anyhow::Result<std::process::Output> {
        let profile = tempfile::tempdir()?;
        std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1400,1700",
                "--virtual-time-budget=5000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .context("chromium (Debian's package chromium; scripts/test installs it)")
    };
    let dom = String::from_utf8(chromium(&["--dump-dom"])?.stdout)?;
    ensure!(
        dom.contains(r#"data-rendered="true""#),
        "the page did not finish drawing:\n{dom}"
    );
    let errors = dom
        .split(r#"<div id="errors">"#)
        .nth(1)
        .and_then(|rest| rest.split("</div>").next())
        .unwrap_or("missing");
    ensure!(
        errors.trim().is_empty(),
        "the page reported errors: {errors}"
    );
    for plot in [
        "uptime_by_day",
        "downtime_by_location",
        "downtime_pareto",
        "compliance_by_day",
        "backlog_by_day",
    ] {
        let chart = dom
            .split(&format!(r#"id="{plot}""#))
            .nth(1)
            .and_then(|rest| rest.split(r#"<div class="chart">"#).next())
            .with_context(|| format!("no chart {plot}"))?;
        let points: usize = chart
            .split(r#"data-points=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let marks = chart.matches("<path").count();
        ensure!(
            chart.contains("<svg") && points > 0 && marks >= 1,
            "chart {plot}: {points} values, {marks} SVG paths"
        );
    }
    let shown = |name: &str| -> Option<f64> {
        let value = dom
            .split(&format!(r#"data-kpi="{name}" data-value=""#))
            .nth(1)?
            .split('"')
            .next()?;
        value.parse().ok()
    };
    // The same figures from the independent computation's daily rows.
    let chosen = |mart: &str, day_column: &str| -> Vec<Value> {
        expected[mart]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|row| {
                row["location_id"] == location.as_str()
                    && row[day_column]
                        .as_str()
                        .is_some_and(|d| d >= from && d <= to)
            })
            .cloned()
            .collect()
    };
    let sum =
        |rows: &[Value], column: &str| rows.iter().filter_map(|r| r[column].as_f64()).sum::<f64>();
    let availability = chosen("mart_location_availability_daily", "local_date");
    let (opening, down, downtimes) = (
        sum(&availability, "opening_minutes"),
        sum(&availability, "downtime_minutes"),
        sum(&availability, "downtimes"),
    );
    let repair: f64 = availability
        .iter()
        .map(|r| r["mttr_minutes"].as_f64().unwrap_or(0.0) * r["downtimes"].as_f64().unwrap_or(0.0))
        .sum();
    let compliance: Vec<Value> = chosen("mart_inspection_compliance_daily", "result_date")
        .into_iter()
        .filter(|r| !r["compliance_pct"].is_null())
        .collect();
    let (completed, missed) = (sum(&compliance, "completed"), sum(&compliance, "missed"));
    let at_end: Vec<Value> = chosen("mart_assignment_backlog_daily", "local_date")
        .into_iter()
        .filter(|r| r["local_date"] == to)
        .collect();
    ensure!(
        opening > 0.0 && downtimes > 0.0 && completed > 0.0,
        "an empty selection"
    );
    for (name, want, tolerance) in [
        ("uptime_pct", 100.0 * (opening - down) / opening, 0.01),
        ("downtime_pct", 100.0 * down / opening, 0.01),
        ("downtime_minutes", down, 0.1),
        ("downtimes", downtimes, 0.0),
        ("mttr_minutes", repair / downtimes, 0.1),
        ("mtbf_hours", (opening - down) / 60.0 / downtimes, 0.01),
        (
            "compliance_pct",
            100.0 * completed / (completed + missed),
            0.01,
        ),
        ("missed_checks", missed, 0.0),
        ("open_assignments", sum(&at_end, "open_at_end"), 0.0),
        ("overdue_assignments", sum(&at_end, "overdue_at_end"), 0.0),
    ] {
        let got = shown(name);
        ensure!(
            got.is_some_and(|g| (g - want).abs() <= tolerance + 0.005),
            "{name} for {location} {from}..{to}: the page shows {got:?}, expected {want:.3}"
        );
    }
    eprintln!(
        "dashboard for {location} {from}..{to}: uptime {:.2} %, {} downtimes, compliance {:.2} %",
        100.0 * (opening - down) / opening,
        downtimes,
        100.0 * completed / (completed + missed)
    );
    let artifacts = root.join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts)?;
    let screenshot = artifacts.join("dashboard.png");
    chromium(&[&format!("--screenshot={}", screenshot.display())])?;
    ensure!(screenshot.exists(), "no screenshot");
    eprintln!("dashboard screenshot: {}", screenshot.display());
    Ok(())
}
