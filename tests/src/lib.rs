//! Harness of the tests and the benchmarks: the services the suite runs
//! against, the pipeline's binaries as child processes, signed webhooks, and
//! the independent Parquet reader (DuckDB).
//!
//! `scripts/test` starts a broker and an S3 server and exports their addresses;
//! a test run without them fails and says so instead of passing silently.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt};

const HOW_TO_RUN: &str = "the end-to-end tests need a Kafka-protocol broker and an S3-compatible server: run them with `scripts/test`, which installs and starts both (or export KAFKA_BROKERS, AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, LAKE_TEST_BUCKET and LAKE_PYTHON for services of your own)";

/// Addresses of the services the suite runs against.
#[derive(Debug, Clone)]
pub struct Services {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// The S3 server's URL.
    pub s3_endpoint: String,
    /// The bucket tests write to.
    pub s3_bucket: String,
    /// A Python with DuckDB.
    pub python: PathBuf,
}

fn required(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!("{name} is not set: {HOW_TO_RUN}"),
    }
}

impl Services {
    /// The services named by the environment; panics with how to run the suite when they are not.
    pub fn from_env() -> Services {
        for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            required(name);
        }
        Services {
            brokers: required("KAFKA_BROKERS"),
            s3_endpoint: required("AWS_ENDPOINT_URL"),
            s3_bucket: required("LAKE_TEST_BUCKET"),
            python: PathBuf::from(required("LAKE_PYTHON")),
        }
    }

    /// The S3 bucket as an object store, with the environment's credentials.
    pub fn bucket(&self) -> anyhow::Result<Arc<dyn ObjectStore>> {
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(&self.s3_bucket)
            .with_endpoint(&self.s3_endpoint)
            .with_allow_http(true)
            .build()?;
        Ok(Arc::new(store))
    }
}

/// The S3 server binary, for tests that stop and restart a server of their own.
pub fn s3s_fs() -> PathBuf {
    PathBuf::from(required("S3S_FS_BIN"))
}

/// The broker binary, for tests that stop and restart a broker of their own.
pub fn tansu() -> PathBuf {
    PathBuf::from(required("TANSU_BIN"))
}

/// Every record of `topic` from its start, until `count` arrived or `within`
/// passed.
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    count: usize,
    within: Duration,
) -> anyhow::Result<Vec<rdkafka::message::OwnedMessage>> {
    read_until(brokers, topic, within, |records| records.len() >= count).await
}

/// Reads `topic` from its start until `done` holds for what arrived, or fails
/// after `within`.
pub async fn read_until(
    brokers: &str,
    topic: &str,
    within: Duration,
    done: impl Fn(&[rdkafka::message::OwnedMessage]) -> bool,
) -> anyhow::Result<Vec<rdkafka::message::OwnedMessage>> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let deadline = Instant::now() + within;
    let mut records = vec![];
    while !done(&records) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(message) => records.push(message?.detach()),
            Err(_) => bail!(
                "{topic}: condition not met within {within:?} ({} records)",
                records.len()
            ),
        }
    }
    Ok(records)
}

/// A folder for a test's logs, kept after the test and named on stderr.
pub fn log_dir(prefix: &str) -> anyhow::Result<PathBuf> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?.keep();
    eprintln!("logs in {}", dir.display());
    Ok(dir)
}

/// Runs one of this workspace's binaries to completion; its standard output,
/// or an error with its standard error.
pub fn run_binary(name: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<String> {
    let output = Command::new(binary(name))
        .args(args)
        .envs(env.iter().copied())
        .output()?;
    if !output.status.success() {
        bail!(
            "{name} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// What a one-off run of a binary printed, and how it ended.
#[derive(Debug)]
pub struct Ran {
    /// Its exit status.
    pub status: std::process::ExitStatus,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

/// Runs the binary `name` to its end, successful or not.
pub fn run_binary_output(name: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Ran> {
    let output = Command::new(binary(name))
        .args(args)
        .envs(env.iter().copied())
        .output()?;
    Ok(Ran {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// A Kafka header's value as text.
pub fn header(message: &rdkafka::message::OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::{Headers, Message};
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// A name no other test run uses, for topics, groups and prefixes.
pub fn unique(label: &str) -> String {
    // Tests run in parallel threads, and two may read the same clock value:
    // the counter keeps their names apart.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{label}-{}-{:x}{count}",
        std::process::id(),
        nanos & 0xffff_ffff
    )
}

/// A free loopback port.
pub fn free_port() -> u16 {
    // The kernel may hand out a released port again at once; two servers of
    // one test would then race for it. A port is given once per process.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A binary of this workspace, built by `cargo build --workspace --bins`
/// (or `--release`), found beside the running test or benchmark.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("own binary path");
    // A test runs from target/<profile>/deps, a benchmark from target/<profile>.
    let mut dir = exe.parent().expect("a binary lives in a folder");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("deps lives in target/<profile>");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, which scripts/test does)",
        path.display()
    );
    path
}

/// The HMAC-SHA256 of `body` under `secret`, in lowercase hex, as Mobaro
/// signs a webhook.
pub fn sign(secret: &str, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Posts a signed `Results` `Updated` webhook for `object_id`, stamped now,
/// to ingest at `url`; the `event_id` of its 202.
pub async fn post_result_update(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    object_id: &str,
) -> anyhow::Result<String> {
    use anyhow::Context;
    let body = format!(
        r#"{{"resource":"Results","event":"Updated","objectId":"{object_id}","timestamp":"{}"}}"#,
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    let answer: serde_json::Value = client
        .post(url)
        .header("X-Webhook-Signature", sign(secret, &body))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = answer["event_id"]
        .as_str()
        .context("no event_id in the 202")?;
    Ok(id.to_string())
}

/// A child process, killed when dropped; its output goes to a log file.
pub struct Process {
    /// Its name in logs.
    pub name: String,
    child: Child,
    /// Its log file.
    pub log: PathBuf,
}

impl Process {
    /// Starts one of this workspace's binaries (`name`, or `name#label` to
    /// tell several apart) with `RUST_LOG=info` and `env`.
    pub fn start(
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
        logs: &Path,
    ) -> anyhow::Result<Process> {
        let mut command = Command::new(binary(name.split('#').next().unwrap_or(name)));
        command
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied());
        Process::spawn(name, command, logs)
    }

    /// Starts `command`, its output going to `{logs}/{name}.log`.
    pub fn spawn(name: &str, mut command: Command, logs: &Path) -> anyhow::Result<Process> {
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let child = command
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Process {
            name: name.to_string(),
            child,
            log,
        })
    }

    /// User and system CPU time so far, from `/proc` (ticks of 1/100 s).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // The fields after the command name, which is in parentheses.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let user: f64 = fields.get(11)?.parse().ok()?;
        let system: f64 = fields.get(12)?.parse().ok()?;
        Some((user + system) / 100.0)
    }

    /// Peak resident set size so far, from `/proc`.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`, ...).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "could not signal {}", self.name);
        Ok(())
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_exit_status(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Sends SIGINT and waits for a clean exit.
    pub fn interrupt(mut self, within: Duration) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status()?;
        let status = self.exit_status(within)?;
        if !status.success() {
            bail!(
                "{} exited with {status}; log: {}",
                self.name,
                self.log.display()
            );
        }
        Ok(())
    }

    /// Waits for the process to exit by itself; its status, or an error
    /// after `within`.
    pub fn exit_status(&mut self, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not stop within {within:?}; log: {}",
                    self.name,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A forged webhook as large as ingest reads by default: `candidates`
/// well-formed (and wrong) signatures, their separators padded so that the
/// header just fits in `header_bytes`, and a 64 KiB body. Header, body.
pub fn largest_forged_request(candidates: usize, header_bytes: usize) -> (String, String) {
    let candidate = format!("sha256={}", "ab".repeat(32));
    let separator = format!(
        ",{}",
        " ".repeat((header_bytes - candidates * candidate.len()) / (candidates - 1) - 1)
    );
    let header = vec![candidate; candidates].join(&separator);
    (header, "x".repeat(64 * 1024))
}

/// Starts the Mobaro simulator's API (`mobaro-sim serve`) on a free port,
/// expecting `api_key`, with `args` added; the process and its base URL once
/// it answers.
pub async fn start_simulator(
    api_key: &str,
    args: &[&str],
    env: &[(&str, &str)],
    logs: &Path,
) -> anyhow::Result<(Process, String)> {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut all = vec!["serve", "--listen", &listen, "--api-key", api_key];
    all.extend_from_slice(args);
    let sim = Process::start("mobaro-sim", &all, env, logs)?;
    let url = format!("http://{listen}");
    wait_until_ready(&format!("{url}/sim/stats"), Duration::from_secs(30)).await?;
    Ok((sim, url))
}

/// Sends webhooks with `mobaro-sim send` to `url`, signed with `secret`,
/// with `args` (count, rate, resources, …); the bodies sent, every one
/// answered 202.
pub fn send_webhooks(
    url: &str,
    secret: &str,
    args: &[&str],
) -> anyhow::Result<Vec<serde_json::Value>> {
    let output = Command::new(binary("mobaro-sim"))
        .args(["send", "--url", url, "--secret", secret, "--print"])
        .args(args)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "sending failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut bodies = vec![];
    for line in String::from_utf8(output.stdout)?.lines() {
        let sent: serde_json::Value = serde_json::from_str(line)?;
        anyhow::ensure!(sent["status"] == 202, "webhook not accepted: {sent}");
        let body = sent["body"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no body in {sent}"))?;
        bodies.push(serde_json::from_str(body)?);
    }
    Ok(bodies)
}

/// How many objects an `enricher backfill` run produced, from the line it
/// prints per resource (`Results: 3000 objects in 24 pages`).
pub fn backfilled_objects(output: &str) -> anyhow::Result<u64> {
    backfill_summary(output).map(|(objects, _)| objects)
}

/// The objects and the scan's seconds in a backfill's summary line
/// (`Results: 20000 objects in 158 pages, 9.1 s (2190/s)`).
pub fn backfill_summary(output: &str) -> anyhow::Result<(u64, f64)> {
    let seconds = output
        .split(", ")
        .nth(1)
        .and_then(|part| part.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no scan time in {output:?}"))?;
    let objects = output
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no object count in {output:?}"))?;
    Ok((objects, seconds))
}

/// Waits until `url` answers 200.
pub async fn wait_until_ready(url: &str, within: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + within;
    loop {
        if let Ok(response) = client.get(url).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{url} not ready within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Copies every object under `prefix` into `dir`, keeping relative paths.
pub async fn download(
    store: &dyn ObjectStore,
    prefix: &str,
    dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let prefix = object_store::path::Path::from(prefix);
    let objects: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
    let mut files = vec![];
    for object in objects {
        // A Delta log's `_last_checkpoint` may name a checkpoint written
        // after the listing: readers find the checkpoints without the hint.
        if object.location.filename() == Some("_last_checkpoint") {
            continue;
        }
        let relative = object
            .location
            .prefix_match(&prefix)
            .map(|parts| {
                parts
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_default();
        let target = dir.join(relative);
        std::fs::create_dir_all(target.parent().unwrap_or(dir))?;
        // An object listed a moment ago may be gone (the sink deletes flush
        // intents once committed).
        let bytes = match store.get(&object.location).await {
            Ok(result) => result.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(error) => return Err(error.into()),
        };
        std::fs::write(&target, &bytes)?;
        files.push(target);
    }
    Ok(files)
}

/// Runs a SQL query in DuckDB (the independent reader) and returns the rows as
/// JSON objects.
pub fn duckdb(
    python: &Path,
    sql: &str,
) -> anyhow::Result<Vec<BTreeMap<String, serde_json::Value>>> {
    const SCRIPT: &str = r#"
import duckdb, glob, json, os, sys
sql = sys.argv[1]
# A long query's progress bar would go to stdout, before the rows.
duckdb.sql("SET enable_progress_bar = false")
if "delta_scan" in sql or "s3://" in sql:
    # The extensions come from their PyPI wheels, not from a download.
    import duckdb_extension_delta, duckdb_extension_httpfs
    for module, name in ((duckdb_extension_httpfs, "httpfs"), (duckdb_extension_delta, "delta")):
        path = glob.glob(os.path.join(os.path.dirname(module.__file__), "extensions", "*", name + ".duckdb_extension"))[0]
        duckdb.sql(f"INSTALL '{path}'")
        duckdb.sql(f"LOAD {name}")
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    if endpoint:
        duckdb.sql(f"""CREATE SECRET lake (TYPE s3, KEY_ID '{os.environ["AWS_ACCESS_KEY_ID"]}',
            SECRET '{os.environ["AWS_SECRET_ACCESS_KEY"]}', REGION '{os.environ.get("AWS_REGION", "us-east-1")}',
            ENDPOINT '{endpoint.split("://", 1)[1]}', USE_SSL {str(endpoint.startswith("https")).lower()}, URL_STYLE 'path')""")
result = duckdb.sql(sql)
names = [c for c in result.columns]
print(json.dumps([dict(zip(names, row)) for row in result.fetchall()], default=str))
"#;
    let output = Command::new(python).args(["-c", SCRIPT, sql]).output()?;
    if !output.status.success() {
        bail!("duckdb failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// The sum of every series of a Prometheus metric served at `ops`
/// (`host:port`); 0 when the stage does not answer.
pub async fn metric(ops: &str, name: &str) -> f64 {
    let Ok(response) = reqwest::get(format!("http://{ops}/metrics")).await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A tansu broker of a test's own, on sqlite storage in `dir`, which keeps
/// its data across a kill and restart.
pub struct OwnBroker {
    /// Its bootstrap address.
    pub brokers: String,
    storage: String,
    dir: PathBuf,
    cluster: String,
    child: Option<Child>,
}

impl OwnBroker {
    /// Starts a broker with its data in `dir`, under tansu's default
    /// cluster id (the one the suite's broker has).
    pub fn start(dir: &Path) -> anyhow::Result<OwnBroker> {
        OwnBroker::start_cluster(dir, "tansu_cluster")
    }

    /// Starts a broker with its data in `dir`, as the cluster `cluster`.
    pub fn start_cluster(dir: &Path, cluster: &str) -> anyhow::Result<OwnBroker> {
        let mut broker = OwnBroker {
            brokers: format!("127.0.0.1:{}", free_port()),
            storage: format!("sqlite://{}/broker.db", dir.display()),
            dir: dir.to_path_buf(),
            cluster: cluster.to_string(),
            child: None,
        };
        broker.restart()?;
        Ok(broker)
    }

    /// Starts the broker again on the same port and storage (after a kill).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.join(format!("broker-{}.log", unique("b"))))?;
        let url = format!("tcp://{}", self.brokers);
        let child = Command::new(tansu())
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", &self.storage])
            .args(["--cluster-id", &self.cluster])
            .current_dir("/")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&self.brokers).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "tansu did not start listening");
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Creates `topics` with `partitions` each.
    pub async fn create_topics(&self, topics: &[&str], partitions: i32) -> anyhow::Result<()> {
        create_topics(&self.brokers, topics, partitions).await
    }
}

/// Creates `topics` with `partitions` each on `brokers`.
pub async fn create_topics(brokers: &str, topics: &[&str], partitions: i32) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    for result in admin.create_topics(&new, &AdminOptions::new()).await? {
        result.map_err(|(topic, code)| anyhow::anyhow!("creating {topic}: {code}"))?;
    }
    Ok(())
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sets the Mobaro simulator's injected faults (`{}` clears them).
pub async fn set_faults(sim: &str, faults: serde_json::Value) -> anyhow::Result<()> {
    reqwest::Client::new()
        .post(format!("{sim}/sim/faults"))
        .json(&faults)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// A Delta table as the Python `deltalake` package (delta-rs, not this
/// sink's code path) reads it.
#[derive(Debug, serde::Deserialize)]
pub struct DeltaSummary {
    /// The version read.
    pub version: i64,
    /// Rows in it.
    pub rows: u64,
    /// Distinct `event_id`s.
    pub distinct: u64,
    /// Column names and Arrow types.
    pub columns: Vec<(String, String)>,
    /// Its files: the `dt` partition and the size in bytes of each.
    pub files: Vec<(String, u64)>,
}

/// Reads the Delta table at `uri` (a folder or `s3://…`, with the S3 server
/// from the AWS variables) with the Python `deltalake` package, at `version`
/// or the latest. An error carries the reader's message.
pub fn deltalake(python: &Path, uri: &str, version: Option<i64>) -> anyhow::Result<DeltaSummary> {
    let version = version.map(|v| v.to_string()).unwrap_or_default();
    deltalake_script(
        python,
        uri,
        &[&version],
        r#"
table = DeltaTable(sys.argv[1], version=int(sys.argv[2]) if sys.argv[2] else None, storage_options=options)
counts = QueryBuilder().register("t", table).execute("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM t").read_all()
adds = table.get_add_actions(flatten=True)
print(json.dumps({
    "version": table.version(),
    "rows": counts.column("n").to_pylist()[0],
    "distinct": counts.column("d").to_pylist()[0],
    "columns": [[field.name, str(field.type)] for field in table.schema().to_arrow()],
    "files": [[str(d), s] for d, s in zip(adds.column("partition.dt").to_pylist(), adds.column("size_bytes").to_pylist())],
}))
"#,
    )
}

/// Runs `body`, Python with `json`, `os`, `sys`, `deltalake`'s `DeltaTable`
/// and `QueryBuilder` imported and `options` set for the S3 server when
/// `uri` is `s3://…`, on the Delta table at `uri` (`sys.argv[1]`, then
/// `args`); what it prints, as JSON. An error carries the reader's message.
pub fn deltalake_script<T: serde::de::DeserializeOwned>(
    python: &Path,
    uri: &str,
    args: &[&str],
    body: &str,
) -> anyhow::Result<T> {
    let script = format!(
        r#"
import json, os, sys
from deltalake import DeltaTable, QueryBuilder
options = {{}}
if sys.argv[1].startswith("s3://"):
    options = {{key: os.environ[key] for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")}}
    options["AWS_ALLOW_HTTP"] = "true"
elif sys.argv[1].startswith("az://"):
    options = {{"AZURE_STORAGE_USE_EMULATOR": "true"}}
{body}"#
    );
    let output = Command::new(python)
        .args(["-c", &script, uri])
        .args(args)
        .output()?;
    if !output.status.success() {
        bail!(
            "deltalake could not read {uri}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// The DuckDB table function reading the lake table `name` downloaded to
/// `dir`: `delta_scan` over a Delta table (the files its log holds), else
/// `read_parquet` over every file.
pub fn table_scan(dir: &Path, name: &str) -> String {
    let table = dir.join(name);
    if table.join("_delta_log").exists() {
        format!("delta_scan('{}')", table.display())
    } else {
        format!(
            "read_parquet('{}/*/*.parquet', hive_partitioning = true)",
            table.display()
        )
    }
}

/// Every partition's committed offset of `group` on `topic`, against its end.
pub fn committed_and_ends(
    brokers: &str,
    topic: &str,
    group: &str,
) -> anyhow::Result<Vec<(i64, i64)>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut list = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(10))?;
    (0..partitions)
        .map(|partition| {
            let (_, end) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
            let offset = committed
                .find_partition(topic, partition)
                .and_then(|p| p.offset().to_raw())
                .unwrap_or(-1);
            Ok((offset.max(0), end))
        })
        .collect()
}
