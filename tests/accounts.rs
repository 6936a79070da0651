//! Several Mobaro accounts through one ingest, one enricher and one sink, on
//! a real broker and a real S3 server: each account's webhooks are checked
//! against its own secrets, its records fetched with its own key from its
//! own API, and every row of the lake carries its account. The accounts
//! file is followed while the pipeline runs: a key rotated, an account
//! added, without a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use end_to_end::{
    duckdb, free_port, log_dir, sign, start_simulator, unique, wait_until_ready, Process, Services,
};
use serde_json::Value;

/// One account of the test: its id, webhook secret and API key, and the
/// simulator whose API it reads.
struct Account {
    id: &'static str,
    secret: &'static str,
    key: &'static str,
    api: String,
}

/// Writes the accounts file naming `accounts`, their secrets and keys in
/// files beside it.
fn write_accounts(dir: &Path, accounts: &[&Account]) -> anyhow::Result<()> {
    let mut file = String::new();
    for account in accounts {
        let secret = dir.join(format!("{}.secret", account.id));
        let key = dir.join(format!("{}.key", account.id));
        std::fs::write(&secret, format!("{}\n", account.secret))?;
        std::fs::write(&key, format!("{}\n", account.key))?;
        file.push_str(&format!(
            "[[account]]\nid = \"{}\"\nwebhook_secrets_file = \"{}\"\napi_key_file = \"{}\"\napi_url = \"{}\"\n\n",
            account.id,
            secret.display(),
            key.display(),
            account.api
        ));
    }
    // Written whole under another name, then renamed: a reader never sees
    // half a file.
    let staged = dir.join("accounts.toml.new");
    std::fs::write(&staged, file)?;
    std::fs::rename(staged, dir.join("accounts.toml"))?;
    Ok(())
}

/// Sends `count` webhooks of Results and Users to `account`'s path, signed
/// with its secret; the bodies, every one answered 202.
fn send(ingest: &str, account: &Account, count: u32, seed: u32) -> anyhow::Result<Vec<Value>> {
    end_to_end::send_webhooks(
        &format!("{ingest}/webhooks/mobaro/{}", account.id),
        account.secret,
        &[
            "--resources",
            "Results,Users",
            "--count",
            &count.to_string(),
            "--rate",
            "100",
            "--objects",
            "5",
            "--seed",
            &seed.to_string(),
        ],
    )
}

/// The distinct events among webhook bodies (two alike are one event).
fn distinct(bodies: &[Value]) -> usize {
    bodies
        .iter()
        .map(|b| {
            (
                b["resource"].to_string(),
                b["event"].to_string(),
                b["objectId"].to_string(),
                b["timestamp"].to_string(),
            )
        })
        .collect::<BTreeSet<_>>()
        .len()
}

/// Per account, the distinct events and the fetched records in the lake.
fn held(services: &Services, lake: &str) -> anyhow::Result<BTreeMap<String, (u64, u64)>> {
    let rows = duckdb(
        &services.python,
        &format!(
            "SELECT account, count(DISTINCT event_id) AS events, count(*) FILTER (WHERE status = 'found') AS found FROM delta_scan('{lake}/events') GROUP BY account"
        ),
    );
    // The table appears with the sink's first commit.
    let Ok(rows) = rows else {
        return Ok(BTreeMap::new());
    };
    Ok(rows
        .iter()
        .map(|row| {
            (
                row["account"].as_str().unwrap_or("(null)").to_string(),
                (
                    row["events"].as_u64().unwrap_or_default(),
                    row["found"].as_u64().unwrap_or_default(),
                ),
            )
        })
        .collect())
}

/// Waits until the lake holds `expected` distinct events per account.
async fn wait_for(
    services: &Services,
    lake: &str,
    expected: &BTreeMap<String, u64>,
    within: Duration,
) -> anyhow::Result<BTreeMap<String, (u64, u64)>> {
    let deadline = Instant::now() + within;
    loop {
        let held = held(services, lake)?;
        let events: BTreeMap<String, u64> = held
            .iter()
            .map(|(a, (events, _))| (a.clone(), *events))
            .collect();
        if events == *expected {
            return Ok(held);
        }
        ensure!(
            Instant::now() < deadline,
            "the lake did not hold every account's events in time: expected {expected:?}, held {held:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The value of the series of `name` with `account`'s label at `ops`.
async fn account_gauge(ops: &str, name: &str, account: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("http://{ops}/metrics"))
        .await?
        .text()
        .await?;
    let wanted = format!("account=\"{account}\"");
    Ok(text
        .lines()
        .filter(|line| line.starts_with(name) && line.contains(&wanted))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

#[tokio::test(flavor = "multi_thread")]
async fn accounts_are_isolated_and_follow_their_file_without_a_restart() -> anyhow::Result<()> {
    let services = Services::from_env();
    let run = unique("accounts");
    let logs = log_dir("accounts")?;
    let files = tempfile::tempdir()?;
    let (sim_a, api_a) = start_simulator("key-a", &[], &[], &logs).await?;
    let (sim_b, api_b) = start_simulator("key-b", &[], &[], &logs).await?;
    let a = Account {
        id: "park-a",
        secret: "secret-a",
        key: "key-a",
        api: format!("{api_a}/api/customers/"),
    };
    let b = Account {
        id: "park-b",
        secret: "secret-b",
        key: "key-b",
        api: format!("{api_b}/api/customers/"),
    };
    write_accounts(files.path(), &[&a, &b])?;
    let accounts_file = files.path().join("accounts.toml");
    let accounts_file = accounts_file.to_str().context("utf8")?;

    let ingest_addr = format!("127.0.0.1:{}", free_port());
    let enricher_ops = format!("127.0.0.1:{}", free_port());
    let sink_ops = format!("127.0.0.1:{}", free_port());
    let (raw, enriched, dead) = (
        format!("{run}.raw"),
        format!("{run}.enriched"),
        format!("{run}.deadletter"),
    );
    let lake = format!("s3://{}/{run}/lake", services.s3_bucket);
    let topics = [
        ("KAFKA_BROKERS", services.brokers.as_str()),
        ("RAW_TOPIC", raw.as_str()),
        ("ENRICHED_TOPIC", enriched.as_str()),
        ("DEAD_LETTER_TOPIC", dead.as_str()),
        ("MOBARO_ACCOUNTS_FILE", accounts_file),
    ];
    let start = |name: &str, extra: &[(&str, &str)]| {
        let env: Vec<(&str, &str)> = topics.iter().chain(extra).copied().collect();
        Process::start(name, &[], &env, &logs)
    };
    let ingest = start("ingest", &[("INGEST_LISTEN", &ingest_addr)])?;
    let enricher_group = format!("{run}-enricher");
    let enricher = start(
        "enricher",
        &[
            ("ENRICHER_GROUP_ID", &enricher_group),
            ("ENRICHER_OPS_LISTEN", &enricher_ops),
        ],
    )?;
    let sink_group = format!("{run}-sink");
    let sink = start(
        "sink",
        &[
            ("LAKE_URL", &lake),
            ("SINK_GROUP_ID", &sink_group),
            ("SINK_OPS_LISTEN", &sink_ops),
            ("SINK_MAX_FILE_AGE", "1s"),
        ],
    )?;
    for ops in [&ingest_addr, &enricher_ops, &sink_ops] {
        wait_until_ready(&format!("http://{ops}/readyz"), Duration::from_secs(30)).await?;
    }
    let ingest_url = format!("http://{ingest_addr}");

    // A webhook signed with A's secret, posted to B's path, is refused; an
    // account the file does not name is unknown.
    let body = r#"{"resource":"Results","event":"Created","objectId":"results/1-A","timestamp":"2025-01-27T10:12:44Z"}"#;
    let post = |account: &str| {
        reqwest::Client::new()
            .post(format!("{ingest_url}/webhooks/mobaro/{account}"))
            .header("x-webhook-signature", sign(a.secret, body))
            .body(body)
            .send()
    };
    assert_eq!(post("park-b").await?.status(), 401);
    assert_eq!(post("park-z").await?.status(), 404);

    // Both accounts' webhooks: every event under its account, each record
    // fetched from its own account's API with its own key.
    let a_first = send(&ingest_url, &a, 20, 1)?;
    let b_first = send(&ingest_url, &b, 20, 1)?;
    let mut expected = BTreeMap::from([
        (a.id.to_string(), distinct(&a_first) as u64),
        (b.id.to_string(), distinct(&b_first) as u64),
    ]);
    let held = wait_for(&services, &lake, &expected, Duration::from_secs(90)).await?;
    for account in [a.id, b.id] {
        let (events, found) = held[account];
        ensure!(
            found == events,
            "{account}: {found} of {events} events found a record"
        );
    }

    // A's key rotated in the file to one A's API refuses: A's events wait,
    // B's keep arriving.
    std::fs::write(files.path().join("park-a.key"), "revoked\n")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a_paused = send(&ingest_url, &a, 10, 2)?;
    let b_second = send(&ingest_url, &b, 10, 2)?;
    *expected.get_mut(b.id).context("b")? += distinct(&b_second) as u64;
    wait_for(&services, &lake, &expected, Duration::from_secs(60)).await?;
    let refused = account_gauge(&enricher_ops, "enricher_key_refused", a.id).await?;
    ensure!(
        refused == 1.0,
        "park-a's key is not reported refused ({refused})"
    );
    ensure!(
        account_gauge(&enricher_ops, "enricher_key_refused", b.id).await? == 0.0,
        "park-b's key is reported refused"
    );
    // ...and resume once the file holds the right key again.
    std::fs::write(files.path().join("park-a.key"), "key-a\n")?;
    *expected.get_mut(a.id).context("a")? += distinct(&a_paused) as u64;
    wait_for(&services, &lake, &expected, Duration::from_secs(120)).await?;

    // An account added to the file: its webhooks are taken and enriched
    // without a restart (it reads B's API with B's key).
    let c = Account {
        id: "park-c",
        secret: "secret-c",
        key: "key-b",
        api: b.api.clone(),
    };
    write_accounts(files.path(), &[&a, &b, &c])?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while post("park-c").await?.status() == 404 {
        ensure!(
            Instant::now() < deadline,
            "ingest did not take the added account"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let c_bodies = send(&ingest_url, &c, 10, 3)?;
    expected.insert(c.id.to_string(), distinct(&c_bodies) as u64);
    let held = wait_for(&services, &lake, &expected, Duration::from_secs(90)).await?;
    ensure!(
        held[c.id].1 == held[c.id].0,
        "park-c's records were not all found: {held:?}"
    );

    // The checkup counts each account's rows.
    let doctor =
        end_to_end::run_binary_output("sink", &["doctor", "--json"], &[("LAKE_URL", &lake)])?;
    let checkup: Value = serde_json::from_str(&doctor.stdout)
        .with_context(|| format!("sink doctor --json: {doctor:?}"))?;
    let mut per_account: BTreeMap<String, u64> = BTreeMap::new();
    for table in checkup["tables"].as_array().into_iter().flatten() {
        if table["table"] != "events" {
            continue;
        }
        for day in table["recent_days"].as_array().into_iter().flatten() {
            for (account, rows) in day["accounts"].as_object().into_iter().flatten() {
                *per_account.entry(account.clone()).or_default() += rows.as_u64().unwrap_or(0);
            }
        }
    }
    ensure!(
        per_account.keys().map(String::as_str).collect::<Vec<_>>() == [a.id, b.id, c.id],
        "sink doctor's rows per account: {per_account:?}"
    );

    for process in [ingest, enricher, sink, sim_a, sim_b] {
        process.interrupt(Duration::from_secs(30))?;
    }
    Ok(())
}
