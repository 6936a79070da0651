//! The dbt package's numbers: simulator records go through the sink into a
//! Delta lake, `scripts/dbt build` builds and tests the marts over it, and
//! each mart is compared row by row with the same figures computed here,
//! from the records themselves, by code that shares nothing with the SQL.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use end_to_end::{duckdb, free_port, log_dir, unique, wait_until_ready, Process, Services};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};

/// The moment the marts judge "open" and "overdue" at.
const AS_OF: &str = "2026-01-01T00:00:00Z";

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
}

fn time(value: &Value) -> Option<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|at| at.with_timezone(&Utc))
}

fn record(collection: &str, number: usize) -> anyhow::Result<Value> {
    mobaro_sim::records::record(collection, &format!("{collection}/{}-A", 1000 + number))
        .context("the simulator serves the collection")
}

/// 120 Results (every tenth updated once: the later state counts; the last
/// one deleted), 40 Downtimes and 40 Assignments of the simulator.
fn fixture() -> anyhow::Result<Vec<Event>> {
    let mut events = Vec::new();
    for i in 0..120 {
        let current = record("results", i)?;
        let at = time(&current["updated"]).context("updated")?;
        if i % 10 == 0 {
            let mut earlier = current.clone();
            earlier["status"] = json!("Failed");
            earlier["location"]["id"] = json!("locations/earlier-A");
            events.push(Event {
                resource: "Results",
                kind: "Created",
                object_id: current["id"].as_str().unwrap_or_default().to_string(),
                at: at - chrono::Duration::hours(1),
                record: Some(earlier),
            });
        }
        events.push(Event {
            resource: "Results",
            kind: "Updated",
            object_id: current["id"].as_str().unwrap_or_default().to_string(),
            at,
            record: Some(current.clone()),
        });
        if i == 119 {
            events.push(Event {
                resource: "Results",
                kind: "Deleted",
                object_id: current["id"].as_str().unwrap_or_default().to_string(),
                at: at + chrono::Duration::hours(1),
                record: None,
            });
        }
    }
    for (collection, resource) in [("downtimes", "Downtimes"), ("assignments", "Assignments")] {
        for i in 0..40 {
            let current = record(collection, i)?;
            events.push(Event {
                resource,
                kind: "Updated",
                object_id: current["id"].as_str().unwrap_or_default().to_string(),
                at: time(&current["updated"]).context("updated")?,
                record: Some(current),
            });
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

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// A row of mart_result_pass_rate_daily: (day, location, checklist) →
/// (results, passed, failed, missed, invalidated, pass rate).
type PassRates = BTreeMap<(String, String, String), (i64, i64, i64, i64, i64, Option<f64>)>;

/// An assignment's creation, due and finish times.
type AssignmentTimes = (DateTime<Utc>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// mart_result_pass_rate_daily, from the current Results.
fn expected_pass_rates(results: &[Value]) -> PassRates {
    let mut counts: BTreeMap<(String, String, String), [i64; 5]> = BTreeMap::new();
    for result in results {
        let day = time(&result["started"])
            .map(|at| at.date_naive().to_string())
            .unwrap_or_default();
        let key = (
            day,
            text(&result["location"]["id"]),
            text(&result["checklist"]["id"]),
        );
        let status = result["status"].as_str().unwrap_or_default();
        let row = counts.entry(key).or_default();
        row[0] += 1;
        match status {
            "Passed" | "Passed with remarks" => row[1] += 1,
            "Failed" => row[2] += 1,
            "Missed" => row[3] += 1,
            "Invalidated" => row[4] += 1,
            _ => {}
        }
    }
    counts
        .into_iter()
        .map(|(key, [results, passed, failed, missed, invalidated])| {
            let judged = passed + failed;
            let rate = (judged > 0).then(|| round(passed as f64 / judged as f64, 4));
            (key, (results, passed, failed, missed, invalidated, rate))
        })
        .collect()
}

/// mart_downtime_daily: (day, location) → (downtimes, minutes, blocking minutes).
fn expected_downtime(
    downtimes: &[Value],
    as_of: DateTime<Utc>,
) -> BTreeMap<(String, String), (i64, f64, f64)> {
    let mut days: BTreeMap<(String, String), (Vec<String>, f64, f64)> = BTreeMap::new();
    for downtime in downtimes {
        let Some(start) = time(&downtime["start"]) else {
            continue;
        };
        let status = downtime["status"].as_str().unwrap_or_default();
        let end = time(&downtime["end"]).unwrap_or(as_of);
        let blocking = status == "Blocking";
        let mut day = start.date_naive();
        while end > start && day <= end.date_naive() {
            let day_start = Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"));
            let day_end = day_start + chrono::Duration::days(1);
            let minutes = (end.min(day_end) - start.max(day_start)).num_seconds() as f64 / 60.0;
            let entry = days
                .entry((day.to_string(), text(&downtime["location"]["id"])))
                .or_default();
            entry.0.push(text(&downtime["id"]));
            entry.1 += minutes;
            if blocking {
                entry.2 += minutes;
            }
            day = day + Days::new(1);
        }
    }
    days.into_iter()
        .map(|(key, (ids, minutes, blocking))| {
            (
                key,
                (ids.len() as i64, round(minutes, 2), round(blocking, 2)),
            )
        })
        .collect()
}

/// mart_assignments_daily: day → (open, overdue), from the first creation
/// to `as_of`'s day.
fn expected_assignments(
    assignments: &[Value],
    as_of: DateTime<Utc>,
) -> BTreeMap<String, (i64, i64)> {
    let rows: Vec<AssignmentTimes> = assignments
        .iter()
        .filter_map(|a| {
            let created = time(&a["created"])?;
            let finished = matches!(a["status"].as_str(), Some("Finished" | "Done"))
                .then(|| time(&a["updated"]))
                .flatten();
            Some((created, time(&a["due"]), finished))
        })
        .collect();
    let Some(first) = rows.iter().map(|r| r.0.date_naive()).min() else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    let mut day: NaiveDate = first;
    while day <= as_of.date_naive() {
        let end =
            Utc.from_utc_datetime(&(day + Days::new(1)).and_hms_opt(0, 0, 0).expect("midnight"));
        let open: Vec<_> = rows
            .iter()
            .filter(|(created, _, finished)| *created < end && finished.is_none_or(|f| f >= end))
            .collect();
        let overdue = open
            .iter()
            .filter(|(_, due, _)| due.is_some_and(|d| d < end))
            .count();
        out.insert(day.to_string(), (open.len() as i64, overdue as i64));
        day = day + Days::new(1);
    }
    out
}

/// mart_events_daily: (day, resource, kind) → events.
fn expected_events(events: &[Event]) -> BTreeMap<(String, String, String), i64> {
    let mut counts = BTreeMap::new();
    for event in events {
        *counts
            .entry((
                event.at.date_naive().to_string(),
                event.resource.to_string(),
                event.kind.to_string(),
            ))
            .or_insert(0) += 1;
    }
    counts
}

fn int(row: &BTreeMap<String, Value>, column: &str) -> i64 {
    row[column].as_i64().unwrap_or(-1)
}

fn float(row: &BTreeMap<String, Value>, column: &str) -> Option<f64> {
    row[column].as_f64()
}

fn string(row: &BTreeMap<String, Value>, column: &str) -> String {
    text(&row[column])
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
async fn the_marts_hold_the_numbers_computed_from_the_records() -> anyhow::Result<()> {
    let services = Services::from_env();
    let events = fixture()?;
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake");
    write_lake(&services, &unique("marts.enriched"), &lake, &events).await?;

    let database = dir.path().join("marts.duckdb");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/dbt");
    let started = Instant::now();
    let built = std::process::Command::new(&script)
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
    let mart = |name: &str, order: &str| {
        duckdb(
            &services.python,
            &format!(
                "ATTACH '{}' AS marts (READ_ONLY); SELECT * FROM marts.main.{name} ORDER BY {order}",
                database.display()
            ),
        )
    };
    let as_of = DateTime::parse_from_rfc3339(AS_OF)?.with_timezone(&Utc);

    let results = current(&events, "Results");
    ensure!(results.len() == 119, "{} current results", results.len());
    let expected = expected_pass_rates(&results);
    let found: BTreeMap<_, _> = mart("mart_result_pass_rate_daily", "1, 2, 3")?
        .iter()
        .map(|row| {
            (
                (
                    string(row, "result_date"),
                    string(row, "location_id"),
                    string(row, "checklist_id"),
                ),
                (
                    int(row, "results"),
                    int(row, "passed"),
                    int(row, "failed"),
                    int(row, "missed"),
                    int(row, "invalidated"),
                    float(row, "pass_rate"),
                ),
            )
        })
        .collect();
    ensure!(
        found == expected,
        "pass rates:\nfound    {found:?}\nexpected {expected:?}"
    );

    let downtimes = current(&events, "Downtimes");
    let expected = expected_downtime(&downtimes, as_of);
    let found: BTreeMap<_, _> = mart("mart_downtime_daily", "1, 2")?
        .iter()
        .map(|row| {
            (
                (string(row, "downtime_date"), string(row, "location_id")),
                (
                    int(row, "downtimes"),
                    float(row, "downtime_minutes").unwrap_or(-1.0),
                    float(row, "blocking_minutes").unwrap_or(-1.0),
                ),
            )
        })
        .collect();
    ensure!(
        found.len() == expected.len(),
        "downtime days: {} found, {} expected",
        found.len(),
        expected.len()
    );
    for (key, want) in &expected {
        let got = found
            .get(key)
            .with_context(|| format!("no downtime row {key:?}"))?;
        ensure!(
            got.0 == want.0 && (got.1 - want.1).abs() < 0.011 && (got.2 - want.2).abs() < 0.011,
            "downtime {key:?}: found {got:?}, expected {want:?}"
        );
    }

    let assignments = current(&events, "Assignments");
    let expected = expected_assignments(&assignments, as_of);
    let found: BTreeMap<_, _> = mart("mart_assignments_daily", "1")?
        .iter()
        .map(|row| {
            (
                string(row, "snapshot_date"),
                (
                    int(row, "open_assignments"),
                    int(row, "overdue_assignments"),
                ),
            )
        })
        .collect();
    ensure!(
        found == expected,
        "assignments per day differ: {} rows found, {} expected; first differences: {:?}",
        found.len(),
        expected.len(),
        expected
            .iter()
            .filter(|(k, v)| found.get(*k) != Some(v))
            .take(5)
            .collect::<Vec<_>>()
    );

    let expected = expected_events(&events);
    let found: BTreeMap<_, _> = mart("mart_events_daily", "1, 2, 3")?
        .iter()
        .map(|row| {
            (
                (
                    string(row, "event_date"),
                    string(row, "resource"),
                    string(row, "event_kind"),
                ),
                int(row, "events"),
            )
        })
        .collect();
    ensure!(
        found == expected,
        "events per day:\nfound    {found:?}\nexpected {expected:?}"
    );

    for (name, order) in [
        ("mart_result_pass_rate_daily", "1"),
        ("mart_missed_checks_daily", "1"),
        ("mart_downtime_daily", "1"),
        ("mart_assignments_daily", "1"),
        ("mart_events_daily", "1"),
    ] {
        eprintln!("{name}: {} rows", mart(name, order)?.len());
    }

    dashboard_shows_the_marts(&services, &lake, &database, dir.path()).await
}

/// `scripts/dashboard` builds the page from the same lake; headless
/// Chromium loads it from the disk: every chart drew an SVG with marks, no
/// script failed, and each figure shown equals the marts' own query. The
/// screenshot is kept in target/test-artifacts/.
async fn dashboard_shows_the_marts(
    services: &Services,
    lake: &Path,
    database: &Path,
    dir: &Path,
) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let page = dir.join("dashboard");
    let started = Instant::now();
    let built = std::process::Command::new(root.join("scripts/dashboard"))
        .env("MOBARO_LAKE_URL", lake)
        .env("MOBARO_DBT_DATABASE", database)
        .env("MOBARO_DASHBOARD_DIR", &page)
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
    let url = format!("file://{}", page.join("index.html").display());
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
                "--window-size=1400,1500",
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
        "pass_rate_by_day",
        "pass_rate_by_location",
        "missed_by_day",
        "downtime_by_location",
        "assignments_by_day",
        "events_by_day",
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
            chart.contains("<svg") && points > 0 && marks >= 3,
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
    // Each figure from the facts, not from the daily marts the page reads.
    let figures = duckdb(
        &services.python,
        &format!(
            "ATTACH '{}' AS marts (READ_ONLY); SELECT \
             (SELECT count(*) FROM marts.main.fct_result) AS results, \
             (SELECT round(100.0 * count(*) FILTER (WHERE is_passed) \
                / count(*) FILTER (WHERE is_passed OR is_failed), 1) FROM marts.main.fct_result) \
                AS pass_rate_percent, \
             (SELECT count(*) FILTER (WHERE is_missed) FROM marts.main.fct_result) AS missed_checks, \
             (SELECT round(sum(downtime_minutes)) FROM marts.main.fct_downtime_day) AS downtime_minutes, \
             (SELECT count(*) FROM marts.main.mart_downtime_daily) AS downtime_days, \
             (SELECT open_assignments FROM marts.main.mart_assignments_daily \
                ORDER BY snapshot_date DESC LIMIT 1) AS open_assignments, \
             (SELECT sum(events) FROM marts.main.mart_events_daily) AS events",
            database.display()
        ),
    )?;
    let figures = &figures[0];
    // The daily mart rounds each day's minutes to a hundredth: its sum may
    // be off the facts' by half a hundredth per row.
    let downtime_days = figures["downtime_days"].as_f64().unwrap_or(0.0);
    for (name, tolerance) in [
        ("results", 0.5),
        ("pass_rate_percent", 0.05),
        ("missed_checks", 0.5),
        ("downtime_minutes", 0.5 + 0.005 * downtime_days),
        ("open_assignments", 0.5),
        ("events", 0.5),
    ] {
        let want = figures[name].as_f64();
        let got = shown(name);
        ensure!(
            got.is_some() && want.is_some_and(|w| (w - got.unwrap_or(f64::NAN)).abs() <= tolerance),
            "{name}: the page shows {got:?}, the marts say {want:?}"
        );
    }
    // Per account, the same figures: here the one account, `default`,
    // whose figures are those of all accounts.
    let data = std::fs::read_to_string(page.join("data.js"))?;
    let data: Value = serde_json::from_str(
        data.trim()
            .trim_start_matches("window.MARTS = ")
            .trim_end_matches(';'),
    )?;
    ensure!(
        data["accounts"] == serde_json::json!(["default"])
            && data["by_account"]["default"]["kpis"] == data["kpis"],
        "the dashboard's figures per account: {} against {}",
        data["by_account"],
        data["kpis"]
    );
    let artifacts = root.join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts)?;
    let screenshot = artifacts.join("dashboard.png");
    chromium(&[&format!("--screenshot={}", screenshot.display())])?;
    ensure!(screenshot.exists(), "no screenshot");
    eprintln!("dashboard screenshot: {}", screenshot.display());
    Ok(())
}
