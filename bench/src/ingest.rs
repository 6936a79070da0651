//! `bench ingest`: signed webhooks per second and latency through `ingest` into
//! a real broker, against a bare axum endpoint that only answers 202.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::processes::{free_port, sibling, wait_ready, Server};
use crate::{load, report};

const SECRET: &str = "bench-secret";

pub async fn run(
    connections: usize,
    duration: Duration,
    brokers: &str,
    report: &Path,
) -> anyhow::Result<()> {
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
            .env("KAFKA_BROKERS", brokers)
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
    report::replace_section(report, "ingest", &text)?;
    Ok(())
}
