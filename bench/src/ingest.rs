//! `bench ingest`: signed webhooks per second and latency through `ingest`
//! into a real broker, in one run beside
//! - a bare axum endpoint that only answers 202 (the HTTP ceiling),
//! - a bare producer keeping as many messages outstanding as there are
//!   connections (the broker's acknowledgement limit),
//! - a plain Python receiver (aiohttp + confluent-kafka, the same checks),
//!
//! then a flood: clients sending forged requests as large as ingest accepts,
//! while genuine webhooks arrive at Mobaro's pace.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use end_to_end::{free_port, largest_forged_request, log_dir, wait_until_ready, Process};

use crate::machine::{busy_share, machine_cpu};
use crate::producer::{self, AckLimit};
use crate::wrk::{Load, Requests};
use crate::READY_WITHIN;
use crate::{report, webhooks};

const SECRET: &str = "bench-secret";
/// Different signed bodies the load cycles through.
const BODIES: usize = 1000;
const PARTITIONS: i32 = 3;
const PYTHON_RECEIVER: &str = include_str!("../receiver.py");
/// ingest's producer linger (see ingest/src/publisher.rs), given to the
/// Python receiver too so both wait for the same batches.
const LINGER_MS: &str = "0.5";
/// The bare producer's lingers: none (the acknowledgement limit), ingest's,
/// and librdkafka's default.
const BARE_LINGERS_MS: [&str; 3] = ["0", LINGER_MS, "5"];

/// What `bench ingest` is asked to do.
#[derive(clap::Args)]
pub(crate) struct Options {
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured time per target, after a warm-up of a fifth of it.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BROKERS")]
    brokers: String,
    /// Python with aiohttp and confluent-kafka, for the Python receiver.
    #[arg(long, env = "LAKE_PYTHON", default_value = "python3")]
    python: PathBuf,
    /// Clients sending forged requests during the flood.
    #[arg(long, default_value_t = 8)]
    flood_clients: usize,
    /// Genuine webhooks per second during the flood.
    #[arg(long, default_value_t = 50)]
    genuine_per_second: u32,
    /// Report file whose `ingest` section is replaced.
    #[arg(long, default_value = "BENCHMARKS.md")]
    report: PathBuf,
}

/// A server under load: its figures and what it cost.
struct Served {
    load: Load,
    cpu_seconds: Option<f64>,
    /// Share of the machine's cores busy during the measurement.
    machine_busy: Option<f64>,
    peak_rss_mib: Option<f64>,
}

pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    let bodies = webhooks::signed_bodies(SECRET, BODIES);
    let requests = Requests::new(&bodies)?;
    let topic = format!("bench.raw.{}", std::process::id());
    end_to_end::create_topics(&options.brokers, &[&topic], PARTITIONS).await?;

    let logs = log_dir("bench-ingest-")?;
    eprintln!("bare axum endpoint");
    let baseline = serve_baseline(&requests, options, &logs).await?;
    eprintln!("bare producer, linger.ms {BARE_LINGERS_MS:?}");
    let messages: Vec<(String, String)> = bodies
        .iter()
        .enumerate()
        .map(|(i, (body, _))| (format!("results/{i}-A"), body.clone()))
        .collect();
    let mut limits = vec![];
    for linger in BARE_LINGERS_MS {
        let machine_before = machine_cpu();
        let limit = producer::measure(
            &options.brokers,
            &topic,
            linger,
            &messages,
            options.connections,
            options.duration,
        )
        .await?;
        limits.push((linger, limit, busy_share(machine_before, machine_cpu())));
    }
    eprintln!("ingest");
    let ingest = start_ingest(options, &topic, &logs, None).await?;
    let ingest_port = ingest.1;
    let url = format!("http://127.0.0.1:{ingest_port}/webhooks/mobaro");
    let ingest_served = measure(&ingest.0, &requests, &url, options)?;
    eprintln!("flood");
    let flooded = flood(&ingest.0, &url, &url, options).await?;
    drop(ingest);
    eprintln!("flood on one account, genuine webhooks on another");
    let accounts = logs.join("accounts.toml");
    std::fs::write(logs.join("park-a.secret"), "bench-secret-a\n")?;
    std::fs::write(logs.join("park-b.secret"), format!("{SECRET}\n"))?;
    std::fs::write(
        &accounts,
        format!(
            "[[account]]\nid = \"park-a\"\nwebhook_secrets_file = \"{0}/park-a.secret\"\n\n\
             [[account]]\nid = \"park-b\"\nwebhook_secrets_file = \"{0}/park-b.secret\"\n",
            logs.display()
        ),
    )?;
    let ingest = start_ingest(options, &topic, &logs, Some(&accounts)).await?;
    let base = format!("http://127.0.0.1:{}/webhooks/mobaro", ingest.1);
    let crossed = flood(
        &ingest.0,
        &format!("{base}/park-a"),
        &format!("{base}/park-b"),
        options,
    )
    .await?;
    drop(ingest);
    eprintln!("Python receiver");
    let python = serve_python(&requests, options, &topic, &logs).await?;

    let text = report(
        options,
        &baseline,
        &limits,
        &ingest_served,
        &python,
        (&flooded, &crossed),
    );
    println!("{text}");
    report::replace_section(&options.report, "ingest", &text)?;
    Ok(())
}

/// Warms the server up for a fifth of the duration, then measures it.
fn measure(
    server: &Process,
    requests: &Requests,
    url: &str,
    options: &Options,
) -> anyhow::Result<Served> {
    requests.drive(url, options.connections, options.duration / 5)?;
    let cpu_before = server.cpu_seconds();
    let machine_before = machine_cpu();
    let load = requests.drive(url, options.connections, options.duration)?;
    let machine_busy = busy_share(machine_before, machine_cpu());
    let cpu_seconds = server.cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
    Ok(Served {
        load,
        cpu_seconds,
        machine_busy,
        peak_rss_mib: server.peak_rss_mib(),
    })
}

async fn serve_baseline(
    requests: &Requests,
    options: &Options,
    logs: &Path,
) -> anyhow::Result<Served> {
    let port = free_port();
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["baseline", "--listen", &format!("127.0.0.1:{port}")]);
    let server = Process::spawn("baseline", command, logs)?;
    wait_listening(port).await?;
    measure(
        &server,
        requests,
        &format!("http://127.0.0.1:{port}/webhooks/mobaro"),
        options,
    )
}

/// Ingest with the one secret, or with the accounts of `accounts`.
async fn start_ingest(
    options: &Options,
    topic: &str,
    logs: &Path,
    accounts: Option<&Path>,
) -> anyhow::Result<(Process, u16)> {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let quarantine = format!("{topic}.quarantine");
    let accounts = accounts.map(|path| path.display().to_string());
    let secrets = match &accounts {
        Some(path) => ("MOBARO_ACCOUNTS_FILE", path.as_str()),
        None => ("MOBARO_WEBHOOK_SECRETS", SECRET),
    };
    let server = Process::start(
        "ingest",
        &[],
        &[
            ("KAFKA_BROKERS", options.brokers.as_str()),
            ("INGEST_LISTEN", listen.as_str()),
            secrets,
            ("RAW_TOPIC", topic),
            ("QUARANTINE_TOPIC", quarantine.as_str()),
            ("RUST_LOG", "warn"),
        ],
        logs,
    )?;
    wait_until_ready(&format!("http://{listen}/readyz"), READY_WITHIN).await?;
    Ok((server, port))
}

async fn serve_python(
    requests: &Requests,
    options: &Options,
    topic: &str,
    logs: &Path,
) -> anyhow::Result<Served> {
    let script = logs.join("receiver.py");
    std::fs::write(&script, PYTHON_RECEIVER)?;
    let port = free_port();
    let mut command = Command::new(&options.python);
    command.arg(&script).args([
        &port.to_string(),
        &options.brokers,
        topic,
        SECRET,
        LINGER_MS,
    ]);
    let server = Process::spawn("python-receiver", command, logs).with_context(|| {
        format!(
            "starting the Python receiver with {} (needs aiohttp and confluent-kafka)",
            options.python.display()
        )
    })?;
    wait_listening(port).await?;
    measure(
        &server,
        requests,
        &format!("http://127.0.0.1:{port}/webhooks/mobaro"),
        options,
    )
}

async fn wait_listening(port: u16) -> anyhow::Result<()> {
    for _ in 0..150 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("nothing listens on port {port}")
}

/// Forged requests against genuine ones.
struct Flood {
    forged: Load,
    header_bytes: usize,
    body_bytes: usize,
    genuine: Vec<Duration>,
    genuine_rejected: usize,
    cpu_seconds: Option<f64>,
}

impl Flood {
    fn genuine_percentile(&self, p: f64) -> Duration {
        crate::latency::percentile(&self.genuine, p)
    }

    /// ingest's CPU time per forged request (genuine ones are a rounding error).
    fn cost_per_forged(&self) -> Option<Duration> {
        let requests = self.forged.requests.max(1) as f64;
        self.cpu_seconds
            .map(|s| Duration::from_secs_f64(s / requests))
    }
}

/// Forged requests to `forged_url` from the flood clients, while genuine
/// webhooks (signed with the one secret) go to `genuine_url`.
async fn flood(
    server: &Process,
    forged_url: &str,
    genuine_url: &str,
    options: &Options,
) -> anyhow::Result<Flood> {
    let (header, body) = largest_forged_request(
        ingest::signature::MAX_CANDIDATES,
        ingest::signature::MAX_HEADER_BYTES,
    );
    let forged_requests = Requests::new(&[(body.clone(), header.clone())])?;
    let genuine = webhooks::signed_bodies(SECRET, 100_000);
    let cpu_before = server.cpu_seconds();
    let (url_owned, clients, duration) = (
        forged_url.to_string(),
        options.flood_clients,
        options.duration,
    );
    let forged =
        tokio::task::spawn_blocking(move || forged_requests.drive(&url_owned, clients, duration));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = reqwest::Client::new();
    let interval = Duration::from_secs(1) / options.genuine_per_second;
    let mut ticker = tokio::time::interval(interval);
    let stop_at = Instant::now() + options.duration - Duration::from_secs(1);
    let mut sent = vec![];
    for (body, signature) in genuine.into_iter() {
        ticker.tick().await;
        if Instant::now() >= stop_at {
            break;
        }
        let request = client
            .post(genuine_url)
            .header("content-type", "application/json")
            .header("x-webhook-signature", signature)
            .body(body);
        sent.push(tokio::spawn(async move {
            let started = Instant::now();
            let accepted = request.send().await.is_ok_and(|r| r.status() == 202);
            (accepted, started.elapsed())
        }));
    }
    let mut latencies = vec![];
    let mut rejected = 0;
    for request in sent {
        let (accepted, latency) = request.await?;
        if accepted {
            latencies.push(latency);
        } else {
            rejected += 1;
        }
    }
    let forged = forged.await??;
    let cpu_seconds = server.cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
    latencies.sort();
    Ok(Flood {
        forged,
        header_bytes: header.len(),
        body_bytes: body.len(),
        genuine: latencies,
        genuine_rejected: rejected,
        cpu_seconds,
    })
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn percent(share: Option<f64>) -> String {
    share.map_or("n/a".into(), |s| format!("{:.0} %", s * 100.0))
}

fn optional(value: Option<f64>, unit: &str) -> String {
    value.map_or("n/a".into(), |v| format!("{v:.1}{unit}"))
}

fn report(
    options: &Options,
    baseline: &Served,
    limits: &[(&str, AckLimit, Option<f64>)],
    ingest: &Served,
    python: &Served,
    (flood, crossed): (&Flood, &Flood),
) -> String {
    let connections = options.connections;
    let mut text = format!(
        "{BODIES} different signed webhooks, `wrk` with 1 thread and {connections} connections, \
         {} s measured after a warm-up of a fifth of that, everything on this machine ({} cores).\n\n\
         | target | webhooks/s | p50 | p99 | errors | its CPU s | machine busy | peak RSS |\n|---|---|---|---|---|---|---|---|\n",
        options.duration.as_secs(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let served_row = |name: &str, served: &Served| {
        format!(
            "| {name} | {:.0} | {} | {} | {} | {} | {} | {} |\n",
            served.load.per_second(),
            ms(served.load.p50()),
            ms(served.load.p99()),
            served.load.errors(),
            optional(served.cpu_seconds, ""),
            percent(served.machine_busy),
            optional(served.peak_rss_mib, " MiB"),
        )
    };
    text.push_str(&served_row("bare axum endpoint (202 only)", baseline));
    for (linger, limit, busy) in limits {
        text.push_str(&format!(
            "| bare producer, {connections} outstanding, linger.ms={linger} | {:.0} | {} | {} | 0 | - | {} | - |\n",
            limit.per_second(),
            ms(limit.percentile(0.5)),
            ms(limit.percentile(0.99)),
            percent(*busy),
        ));
    }
    text.push_str(&served_row("ingest → broker (acks=all)", ingest));
    text.push_str(&served_row(
        "Python: aiohttp + confluent-kafka (acks=all)",
        python,
    ));
    let ack_limit = limits
        .iter()
        .find(|(linger, _, _)| *linger == "0")
        .map_or(f64::NAN, |(_, l, _)| l.per_second());
    let rate = ingest.load.per_second();
    text.push_str(&format!(
        "\n**ingest / bare producer: {:.2}** (target ≥ 0.8); **ingest / Python: {:.2}** \
         (target ≥ 3); ingest p99 {} (target < 10 ms).\n",
        rate / ack_limit,
        rate / python.load.per_second(),
        ms(ingest.load.p99()),
    ));
    text.push_str(&format!(
        "\nFlood: {} clients sending forged requests ({} B of `X-Webhook-Signature` with \
         eight candidates, {} KiB body: the largest ingest reads) for {} s, {:.0}/s answered \
         ({} forged in all), while genuine webhooks arrived at {}/s: **genuine p50 {}, p99 {}** \
         (target < 50 ms), **{} genuine rejected** (target 0); ingest's CPU per forged \
         request **{}** (target < 1 ms).\n",
        options.flood_clients,
        flood.header_bytes,
        flood.body_bytes / 1024,
        options.duration.as_secs(),
        flood.forged.per_second(),
        flood.forged.requests,
        options.genuine_per_second,
        ms(flood.genuine_percentile(0.5)),
        ms(flood.genuine_percentile(0.99)),
        flood.genuine_rejected,
        flood.cost_per_forged().map_or("n/a".into(), ms),
    ));
    text.push_str(&format!(
        "\nTwo accounts (`MOBARO_ACCOUNTS_FILE`), the same flood on account A's path while \
         account B's genuine webhooks arrived at {}/s on B's: **B's p50 {}, p99 {}** (target \
         < 50 ms), **{} rejected**; {:.0} forged requests/s answered.\n",
        options.genuine_per_second,
        ms(crossed.genuine_percentile(0.5)),
        ms(crossed.genuine_percentile(0.99)),
        crossed.genuine_rejected,
        crossed.forged.per_second(),
    ));
    text
}
