//! `enricher backfill` against the simulator's list endpoints and a real
//! broker: every object once, a resume after kill -9, records edited during
//! the scan, every reading of the paging parameters (exclusive filter, page
//! caps, more records at one time than a page), endpoints that ignore the
//! order or the filter, a malformed item, the rate share and 429s, an
//! envelope it cannot read, and a run stopped by SIGTERM.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use end_to_end::{
    backfilled_objects, binary, free_port, log_dir, read_until, set_faults, start_simulator,
    unique, Process, Services,
};
use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use serde_json::Value;

const API_KEY: &str = "backfill-test-key";

/// A simulator with `objects` records per collection, and topics of the run's own.
struct Setup {
    services: Services,
    logs: PathBuf,
    sim_url: String,
    _sim: Process,
    enriched: String,
    checkpoints: String,
}

impl Setup {
    async fn start(objects: u32) -> anyhow::Result<Setup> {
        let services = Services::from_env();
        let logs = log_dir("backfill-logs-")?;
        let objects = objects.to_string();
        let (sim, sim_url) = start_simulator(API_KEY, &["--objects", &objects], &[], &logs).await?;
        let run = unique("backfill");
        Ok(Setup {
            services,
            logs,
            sim_url,
            _sim: sim,
            enriched: format!("{run}.enriched"),
            checkpoints: format!("{run}.checkpoints"),
        })
    }

    /// A sink writing this setup's enriched topic into the folder `lake`,
    /// closing files after a second; the process and its ops address.
    fn start_sink(&self, lake: &Path) -> anyhow::Result<(Process, String)> {
        let ops = format!("127.0.0.1:{}", free_port());
        let group = unique("backfill-sink");
        let sink = Process::start(
            "sink",
            &[],
            &[
                ("KAFKA_BROKERS", self.services.brokers.as_str()),
                ("ENRICHED_TOPIC", self.enriched.as_str()),
                ("DEAD_LETTER_TOPIC", &format!("{group}.dead")),
                ("SINK_GROUP_ID", group.as_str()),
                ("SINK_OPS_LISTEN", ops.as_str()),
                ("LAKE_URL", &lake.display().to_string()),
                ("SINK_MAX_FILE_AGE", "1s"),
            ],
            &self.logs,
        )?;
        Ok((sink, ops))
    }

    /// `enricher backfill` with `args`, its environment pointing at this setup.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(binary("enricher"));
        command
            .arg("backfill")
            .args(args)
            .env("KAFKA_BROKERS", &self.services.brokers)
            .env("ENRICHED_TOPIC", &self.enriched)
            .env("BACKFILL_CHECKPOINT_TOPIC", &self.checkpoints)
            .env("MOBARO_API_URL", format!("{}/api/customers/", self.sim_url))
            .env("MOBARO_API_KEY", API_KEY)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied());
        command
    }

    /// Runs a backfill to its end; its standard output.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<String> {
        let output = self.command(args, env).output()?;
        ensure!(
            output.status.success(),
            "backfill failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    async fn stats(&self) -> anyhow::Result<Value> {
        Ok(reqwest::get(format!("{}/sim/stats", self.sim_url))
            .await?
            .json()
            .await?)
    }

    async fn list_requests(&self) -> anyhow::Result<u64> {
        self.stats().await?["list_requests"]
            .as_u64()
            .context("list_requests")
    }

    /// The enriched records, once `count` arrived.
    async fn snapshots(&self, count: u64) -> anyhow::Result<Vec<OwnedMessage>> {
        read_until(
            &self.services.brokers,
            &self.enriched,
            Duration::from_secs(60),
            |records| records.len() as u64 >= count,
        )
        .await
    }

    /// The simulator's current record of an object.
    async fn current(&self, id: &str) -> anyhow::Result<Value> {
        let encoded = id.replace('/', "%2F");
        Ok(reqwest::Client::new()
            .get(format!("{}/api/customers/results/{encoded}", self.sim_url))
            .header("x-api-key", API_KEY)
            .send()
            .await?
            .json()
            .await?)
    }
}

fn value(message: &OwnedMessage) -> Value {
    serde_json::from_slice(message.payload().unwrap_or_default()).unwrap_or(Value::Null)
}

/// Object id → the `updated` times of its snapshots.
fn objects(records: &[OwnedMessage]) -> BTreeMap<String, BTreeSet<String>> {
    let mut objects: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for record in records {
        let value = value(record);
        let id = value["object_id"].as_str().unwrap_or_default().to_string();
        let updated = value["record"]["updated"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        objects.entry(id).or_default().insert(updated);
    }
    objects
}

fn expected_ids(objects: u32) -> BTreeSet<String> {
    (0..objects)
        .map(|n| mobaro_sim::listing::object_id("results", n))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_object_arrives_once_and_a_killed_run_resumes_losing_nothing() -> anyhow::Result<()> {
    const OBJECTS: u32 = 3000;
    let setup = Setup::start(OBJECTS).await?;
    let args = ["--resource", "Results", "--page-size", "128"];
    let counted = setup.run(&[&args[..], &["--dry-run"]].concat(), &[])?;
    let pages_uninterrupted = setup.list_requests().await?;
    assert!(
        counted.contains(&format!("Results: {OBJECTS} objects")),
        "dry run: {counted}"
    );

    // Slow enough to be killed in the middle.
    let slow = [&args[..], &["--rate-limit", "8"]].concat();
    let mut first = Process::spawn("backfill-1", setup.command(&slow, &[]), &setup.logs)?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.signal("KILL")?;
    let _ = first.exit_status(Duration::from_secs(10))?;
    let before_resume = setup.list_requests().await?;
    ensure!(
        before_resume - pages_uninterrupted < pages_uninterrupted,
        "the first run finished before it was killed"
    );
    let resumed = setup.run(&[&args[..], &["--rate-limit", "1000"]].concat(), &[])?;
    let pages_with_kill = setup.list_requests().await? - pages_uninterrupted;

    // What the killed run produced is not counted in the resumed run's output.
    let records = read_until(
        &setup.services.brokers,
        &setup.enriched,
        Duration::from_secs(60),
        |records| records.len() >= OBJECTS as usize,
    )
    .await?;
    let found = objects(&records);
    assert_eq!(
        found.keys().cloned().collect::<BTreeSet<_>>(),
        expected_ids(OBJECTS)
    );
    let event_ids: BTreeSet<String> = records
        .iter()
        .map(|r| {
            value(r)["event_id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(event_ids.len(), OBJECTS as usize, "one snapshot per object");
    // At most BACKFILL_PAGES_IN_FLIGHT (4) pages beyond the stored position,
    // and the page being listed at the kill.
    assert!(
        records.len() <= OBJECTS as usize + 4 * 128,
        "{} records: more than four pages produced twice",
        records.len()
    );
    assert!(
        pages_with_kill <= pages_uninterrupted + 5,
        "{pages_with_kill} list requests with a kill against {pages_uninterrupted} without; resumed: {resumed}"
    );
    assert!(value(&records[0])["event"] == "Snapshot");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn records_edited_during_the_scan_are_never_skipped() -> anyhow::Result<()> {
    const OBJECTS: u32 = 1500;
    let setup = Setup::start(OBJECTS).await?;
    set_faults(&setup.sim_url, serde_json::json!({ "touch_per_list": 7 })).await?;
    let output = setup.run(
        &[
            "--resource",
            "Results",
            "--page-size",
            "100",
            "--rate-limit",
            "1000",
        ],
        &[],
    )?;
    set_faults(&setup.sim_url, serde_json::json!({})).await?;
    let records = setup.snapshots(backfilled_objects(&output)?).await?;
    let found = objects(&records);
    assert_eq!(
        found.keys().cloned().collect::<BTreeSet<_>>(),
        expected_ids(OBJECTS)
    );
    let mut edited = 0;
    for (id, versions) in &found {
        let current = setup.current(id).await?;
        if current["revision"].as_u64().is_some() {
            edited += 1;
        }
        let updated = current["updated"].as_str().unwrap_or_default();
        assert!(
            versions.contains(updated),
            "{id}: its latest version ({updated}) was skipped; listed {versions:?}"
        );
    }
    assert!(
        edited > 50,
        "only {edited} records were edited during the scan"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_share_holds_and_429s_are_waited_out() -> anyhow::Result<()> {
    const OBJECTS: u32 = 2000;
    let setup = Setup::start(OBJECTS).await?;
    // A dry run makes only list requests: the rate is the limiter's alone,
    // not the broker's acknowledgements on a busy machine.
    setup.run(
        &[
            "--resource",
            "Results",
            "--page-size",
            "20",
            "--rate-limit",
            "10",
            "--dry-run",
        ],
        &[],
    )?;
    let stats = setup.stats().await?;
    let window = stats["list_window_after_first_seconds"]
        .as_f64()
        .context("window")?;
    let requests = stats["list_requests"].as_u64().context("requests")?;
    // Requests after the second, over the time from the second to the last:
    // the simulator builds its catalogue while answering the first.
    let rate = (requests - 2) as f64 / window;
    eprintln!("{rate:.2} list requests/s against a share of 10/s over {window:.1} s");
    assert!(
        (9.5..=10.5).contains(&rate),
        "{rate:.2} list requests/s against a share of 10/s over {window:.1} s"
    );

    let setup = Setup::start(300).await?;
    set_faults(
        &setup.sim_url,
        serde_json::json!({ "every": 4, "every_statuses": [429] }),
    )
    .await?;
    let started = Instant::now();
    let output = setup.run(
        &[
            "--resource",
            "Results",
            "--page-size",
            "20",
            "--rate-limit",
            "1000",
        ],
        &[],
    )?;
    let requests = setup.list_requests().await?;
    let refused = requests / 4;
    assert!(
        started.elapsed() >= Duration::from_secs(refused),
        "{refused} answers of 429 with Retry-After: 1 were not waited out ({:?})",
        started.elapsed()
    );
    assert_eq!(
        objects(&setup.snapshots(backfilled_objects(&output)?).await?).len(),
        300
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_envelope_it_cannot_read_stops_it_before_anything_is_produced() -> anyhow::Result<()> {
    let setup = Setup::start(100).await?;
    let output = setup
        .command(
            &["--resource", "Results"],
            &[("BACKFILL_ITEMS_PATH", "/records")],
        )
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no array at /records") && stderr.contains("\"items\""),
        "{stderr}"
    );
    let produced = read_until(
        &setup.services.brokers,
        &setup.enriched,
        Duration::from_secs(3),
        |_| false,
    )
    .await;
    assert!(
        produced.is_err_and(|e| e.to_string().contains("(0 records)")),
        "the enriched topic is empty"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_each_takes_every_record_from_its_own_endpoint() -> anyhow::Result<()> {
    let setup = Setup::start(200).await?;
    let output = setup.run(
        &["--resource", "Results", "--page-size", "50", "--fetch-each"],
        &[("BACKFILL_RATE_LIMIT", "1000")],
    )?;
    let stats = setup.stats().await?;
    let (requests, lists) = (
        stats["requests"].as_u64().context("requests")?,
        stats["list_requests"].as_u64().context("list_requests")?,
    );
    assert_eq!(requests - lists, 200, "one record request per object");
    let records = setup.snapshots(backfilled_objects(&output)?).await?;
    for record in records.iter().take(20) {
        let value = value(record);
        let id = value["object_id"].as_str().context("object_id")?;
        assert_eq!(value["record"], setup.current(id).await?);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reconciliation_counts_what_the_lake_lacks_or_has_older() -> anyhow::Result<()> {
    const OBJECTS: u32 = 300;
    let setup = Setup::start(OBJECTS).await?;
    // The lake gets the records updated before June, through the sink.
    let before_june = [
        "--resource",
        "Results",
        "--updated-before",
        "2025-06-01T00:00:00Z",
    ];
    let first = setup.run(&before_june, &[("BACKFILL_RATE_LIMIT", "1000")])?;
    let in_lake: BTreeSet<String> = objects(&setup.snapshots(backfilled_objects(&first)?).await?)
        .into_keys()
        .collect();
    let lake = setup.logs.join("lake");
    let (sink, ops) = setup.start_sink(&lake)?;
    // Until the table holds every record: consumed is not yet committed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let results = lake.join("results");
    loop {
        let rows = if results.join("_delta_log").exists() {
            end_to_end::duckdb(
                &setup.services.python,
                &format!(
                    "SELECT count(DISTINCT object_id) AS n FROM delta_scan('{}')",
                    results.display()
                ),
            )?[0]["n"]
                .as_u64()
                .unwrap_or(0)
        } else {
            0
        };
        if rows >= in_lake.len() as u64 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the sink committed {rows} of {} objects",
            in_lake.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The same backfill again, over unchanged records: every Snapshot is
    // one the table holds, so the sink leaves each out and adds no row.
    let again = setup.run(&before_june, &[("BACKFILL_RATE_LIMIT", "1000")])?;
    let repeated = backfilled_objects(&again)?;
    ensure!(
        repeated == in_lake.len() as u64,
        "the second run listed {repeated} objects"
    );
    let left_out = r#"sink_duplicates_left_out_total{table="results"}"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    while end_to_end::metric(&ops, left_out).await < repeated as f64 {
        ensure!(
            Instant::now() < deadline,
            "the sink left out {} of {repeated} repeated records",
            end_to_end::metric(&ops, left_out).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let counts = end_to_end::duckdb(
        &setup.services.python,
        &format!(
            "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM delta_scan('{}')",
            results.display()
        ),
    )?;
    ensure!(
        counts[0]["n"] == counts[0]["d"] && counts[0]["n"].as_u64() == Some(in_lake.len() as u64),
        "after a second backfill the results table holds {} rows for {} events and {} objects",
        counts[0]["n"],
        counts[0]["d"],
        in_lake.len()
    );
    sink.interrupt(Duration::from_secs(30))?;

    let touched: Vec<String> = reqwest::Client::new()
        .post(format!("{}/sim/touch", setup.sim_url))
        .json(&serde_json::json!({"collection": "results", "count": 40}))
        .send()
        .await?
        .json()
        .await?;
    let second = setup.run(
        &[
            "--resource",
            "Results",
            "--compare-lake",
            &lake.display().to_string(),
        ],
        &[("BACKFILL_RATE_LIMIT", "1000")],
    )?;
    let new = OBJECTS as usize - in_lake.len();
    let changed = touched
        .iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|id| in_lake.contains(*id))
        .count();
    assert!(new > 0 && changed > 0, "new {new}, changed {changed}");
    assert!(
        second.contains(&format!(
            "compared with the lake: {new} new, {changed} changed"
        )),
        "{second}"
    );
    Ok(())
}

/// Runs a full backfill of Results under the simulator's `listing` faults,
/// after 150 of the records were edited at one instant; every object's
/// latest version must arrive.
async fn every_record_arrives_under(listing: Value, page_size: &str) -> anyhow::Result<String> {
    const OBJECTS: u32 = 600;
    let setup = Setup::start(OBJECTS).await?;
    reqwest::Client::new()
        .post(format!("{}/sim/touch", setup.sim_url))
        .json(&serde_json::json!({"collection": "results", "count": 150, "same_time": true}))
        .send()
        .await?
        .error_for_status()?;
    set_faults(&setup.sim_url, serde_json::json!({ "listing": listing })).await?;
    let output = setup.run(
        &["--resource", "Results", "--page-size", page_size],
        &[("BACKFILL_RATE_LIMIT", "1000")],
    )?;
    let records = setup.snapshots(backfilled_objects(&output)?).await?;
    let found = objects(&records);
    ensure!(
        found.keys().cloned().collect::<BTreeSet<_>>() == expected_ids(OBJECTS),
        "under {listing}: {} of {OBJECTS} objects arrived",
        found.len()
    );
    for (id, versions) in &found {
        let current = setup.current(id).await?;
        let updated = current["updated"].as_str().unwrap_or_default();
        ensure!(
            versions.contains(updated),
            "under {listing}: {id}'s latest version ({updated}) was skipped"
        );
    }
    Ok(output)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_reading_of_the_paging_parameters_skips_a_record() -> anyhow::Result<()> {
    // 150 records share one update time: more than a page.
    let inclusive = every_record_arrives_under(serde_json::json!({}), "50").await?;
    assert!(inclusive.contains("pages by offset"), "{inclusive}");
    every_record_arrives_under(serde_json::json!({ "exclusive_after": true }), "50").await?;
    // Pages capped at 20 where 50 are asked, with an exclusive filter.
    every_record_arrives_under(
        serde_json::json!({ "exclusive_after": true, "page_cap": 20 }),
        "50",
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_that_ignores_the_order_or_the_filter_stops_the_scan() -> anyhow::Result<()> {
    for (listing, expected) in [
        (
            serde_json::json!({ "ignore_order": true }),
            "BACKFILL_ORDER",
        ),
        (
            serde_json::json!({ "ignore_after": true }),
            "BACKFILL_UPDATED_AFTER_PARAM",
        ),
    ] {
        let setup = Setup::start(300).await?;
        set_faults(&setup.sim_url, serde_json::json!({ "listing": listing })).await?;
        let output = setup
            .command(
                &["--resource", "Results", "--page-size", "50"],
                &[("BACKFILL_RATE_LIMIT", "1000")],
            )
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{listing}: {stderr}");
        assert!(
            stderr.contains("did not apply") && stderr.contains(expected),
            "{listing}: {stderr}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_item_is_skipped_counted_and_the_run_says_so() -> anyhow::Result<()> {
    const OBJECTS: u32 = 300;
    let setup = Setup::start(OBJECTS).await?;
    // An object listed well after the first page.
    let later: Value = reqwest::Client::new()
        .get(format!(
            "{}/api/customers/results?limit=1&offset=200",
            setup.sim_url
        ))
        .header("x-api-key", API_KEY)
        .send()
        .await?
        .json()
        .await?;
    let malformed = later["items"][0]["id"]
        .as_str()
        .context("an id")?
        .to_string();
    set_faults(
        &setup.sim_url,
        serde_json::json!({ "listing": { "without_updated": [malformed] } }),
    )
    .await?;
    let output = setup
        .command(
            &["--resource", "Results", "--page-size", "50"],
            &[("BACKFILL_RATE_LIMIT", "1000")],
        )
        .output()?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stderr.contains("1 listed items were skipped") && stderr.contains("skipped an item"),
        "{stderr}"
    );
    let records = setup.snapshots(backfilled_objects(&stdout)?).await?;
    let found = objects(&records);
    let mut expected = expected_ids(OBJECTS);
    expected.remove(&malformed);
    assert_eq!(found.keys().cloned().collect::<BTreeSet<_>>(), expected);
    Ok(())
}

/// A backfill stopped by SIGTERM (a drained Kubernetes Job) before the end
/// of the list exits with a failure that says so, and the same command
/// resumes it to every object.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_stopped_by_shutdown_fails_and_resumes() -> anyhow::Result<()> {
    const OBJECTS: u32 = 1000;
    let setup = Setup::start(OBJECTS).await?;
    let args = ["--resource", "Results", "--page-size", "50"];
    let slow = [&args[..], &["--rate-limit", "4"]].concat();
    let mut first = Process::spawn("backfill-term", setup.command(&slow, &[]), &setup.logs)?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.signal("TERM")?;
    let status = first.exit_status(Duration::from_secs(40))?;
    assert!(!status.success(), "a stopped backfill exited with {status}");
    let log = first.log_text();
    assert!(
        log.contains("stopped by shutdown") && log.contains("resumes"),
        "{log}"
    );
    setup.run(&[&args[..], &["--rate-limit", "1000"]].concat(), &[])?;
    let records = setup.snapshots(u64::from(OBJECTS)).await?;
    assert_eq!(
        objects(&records).keys().cloned().collect::<BTreeSet<_>>(),
        expected_ids(OBJECTS)
    );
    Ok(())
}

/// A lake fed only by a backfill (every resource as `Snapshot` events)
/// builds with the dbt package: models and tests pass, and the availability
/// mart holds the park's days, none final before a compaction closed them.
#[tokio::test(flavor = "multi_thread")]
async fn the_marts_build_on_a_lake_fed_by_the_backfill() -> anyhow::Result<()> {
    let setup = Setup::start(60).await?;
    let all = "Results,Users,Locations,Assignments,Notes,Downtimes";
    setup.run(&["--resource", all], &[("BACKFILL_RATE_LIMIT", "1000")])?;
    // Every object of the six resources, once.
    let listed = 60 * 6;
    let lake = setup.logs.join("marts-lake");
    let (sink, _) = setup.start_sink(&lake)?;
    let events = lake.join("events");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let rows = if events.join("_delta_log").exists() {
            end_to_end::duckdb(
                &setup.services.python,
                &format!(
                    "SELECT count(*) AS n FROM delta_scan('{}')",
                    events.display()
                ),
            )?[0]["n"]
                .as_u64()
                .unwrap_or(0)
        } else {
            0
        };
        if rows >= listed {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the sink committed {rows} of {listed} events"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sink.interrupt(Duration::from_secs(30))?;
    let database = setup.logs.join("marts.duckdb");
    let built = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/dbt"))
        .args(["build", "--vars", "{mobaro_as_of: '2025-10-28T06:00:00Z'}"])
        .env("MOBARO_LAKE_URL", &lake)
        .env("MOBARO_DBT_DATABASE", &database)
        .output()?;
    ensure!(
        built.status.success(),
        "dbt build on the backfilled lake failed:\n{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    let figures = end_to_end::duckdb(
        &setup.services.python,
        &format!(
            "ATTACH '{}' AS marts (READ_ONLY); SELECT \
             (SELECT count(*) FROM marts.main.stg_mobaro__events WHERE event_kind = 'Snapshot') AS snapshots, \
             (SELECT count(*) FROM marts.main.mart_location_availability_daily WHERE downtimes > 0) AS down_days, \
             (SELECT count(*) FROM marts.main.mart_inspection_compliance_daily) AS compliance_rows, \
             (SELECT count(*) FILTER (WHERE is_final) FROM marts.main.mart_location_availability_daily) AS final_days",
            database.display()
        ),
    )?;
    ensure!(
        figures[0]["snapshots"].as_u64() == Some(listed)
            && figures[0]["down_days"].as_u64().unwrap_or(0) > 0
            && figures[0]["compliance_rows"].as_u64().unwrap_or(0) > 0
            // No compaction has run: no table publishes a closed day.
            && figures[0]["final_days"].as_u64() == Some(0),
        "the backfilled lake's marts: {:?} ({listed} objects)",
        figures[0]
    );
    Ok(())
}
