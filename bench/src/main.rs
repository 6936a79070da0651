//! `bench ingest`: signed webhooks per second and latency through `ingest` into
//! a real broker, against a bare axum endpoint that only answers 202, measured
//! in the same run on the same machine. Results go to stdout and into
//! BENCHMARKS.md between the `ingest` markers.

mod load;
mod report;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Throughput and latency of `ingest` against a bare axum endpoint.
    Ingest {
        /// Concurrent connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Measured time per target, after a warm-up of a fifth of it.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Kafka bootstrap servers for `ingest`.
        #[arg(long, env = "KAFKA_BROKERS")]
        brokers: String,
        /// Report file whose `ingest` section is replaced.
        #[arg(long, default_value = "BENCHMARKS.md")]
        report: PathBuf,
    },
    /// The baseline: a bare axum endpoint answering 202 (run by `bench ingest`).
    Baseline {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
}

const SECRET: &str = "bench-secret";

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build it with `cargo build --release --bins`",
        path.display()
    );
    Ok(path)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    /// Peak resident set size so far, from `/proc`.
    fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }
}

async fn wait_ready(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..150 {
        if client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("{url} did not become ready")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Bench::Baseline { listen } => {
            let app = axum::Router::new().route(
                "/webhooks/mobaro",
                axum::routing::post(|_: axum::body::Bytes| async {
                    axum::http::StatusCode::ACCEPTED
                }),
            );
            let listener = tokio::net::TcpListener::bind(listen).await?;
            axum::serve(listener, app).await?;
            Ok(())
        }
        Bench::Ingest {
            connections,
            duration,
            brokers,
            report,
        } => {
            let bodies = load::signed_bodies(SECRET, 200_000);
            let baseline_port = free_port()?;
            let baseline = Server(
                Command::new(std::env::current_exe()?)
                    .args([
                        "baseline",
                        "--listen",
                        &format!("127.0.0.1:{baseline_port}"),
                    ])
                    .stdout(Stdio::null())
                    .spawn()?,
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
            let baseline_result = load::run(
                &format!("http://127.0.0.1:{baseline_port}/webhooks/mobaro"),
                &bodies,
                connections,
                duration,
            )
            .await?;
            let baseline_rss = baseline.peak_rss_mib();
            drop(baseline);

            let ingest_port = free_port()?;
            let topic = format!("bench.raw.{}", std::process::id());
            let ingest = Server(
                Command::new(sibling("ingest")?)
                    .env("KAFKA_BROKERS", &brokers)
                    .env("INGEST_LISTEN", format!("127.0.0.1:{ingest_port}"))
                    .env("MOBARO_WEBHOOK_SECRETS", SECRET)
                    .env("RAW_TOPIC", &topic)
                    .env("QUARANTINE_TOPIC", format!("{topic}.quarantine"))
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .spawn()
                    .context("starting ingest")?,
            );
            wait_ready(&format!("http://127.0.0.1:{ingest_port}/readyz")).await?;
            let ingest_result = load::run(
                &format!("http://127.0.0.1:{ingest_port}/webhooks/mobaro"),
                &bodies,
                connections,
                duration,
            )
            .await?;
            let ingest_rss = ingest.peak_rss_mib();
            drop(ingest);

            let text = report::ingest(
                connections,
                duration,
                &baseline_result,
                baseline_rss,
                &ingest_result,
                ingest_rss,
            );
            println!("{text}");
            report::replace_section(&report, "ingest", &text)?;
            Ok(())
        }
    }
}
