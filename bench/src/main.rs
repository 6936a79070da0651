//! Benchmarks of the pipeline's stages, each against a baseline measured in the
//! same run on the same machine. Results go to stdout and into BENCHMARKS.md
//! between the stage's markers.

mod backfill;
mod compaction;
mod enricher;
mod erasure;
mod freshness;
mod ingest;
mod latency;
mod machine;
mod producer;
mod report;
mod sink;
mod webhooks;
mod wrk;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// How long a started server may take to answer its readiness check.
const READY_WITHIN: Duration = Duration::from_secs(30);

#[derive(Parser)]
#[command(name = "bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Throughput and latency of `ingest` against a bare axum endpoint, the
    /// broker's acknowledgement limit and a plain Python receiver, then a
    /// flood of forged requests beside genuine ones. Needs `wrk`.
    Ingest(ingest::Options),
    /// Objects per second through `enricher backfill` from the simulated
    /// list endpoints, against what the page size, latency and rate share
    /// allow, and API calls per object.
    Backfill(backfill::Options),
    /// Enriched events per second with the simulated API at 0 and 50 ms, the
    /// accuracy of the rate limit, and API calls per event on a bursty stream.
    Enricher {
        /// Kafka bootstrap servers.
        #[arg(long, env = "KAFKA_BROKERS")]
        brokers: String,
        /// Report file whose `enricher` section is replaced.
        #[arg(long, default_value = "BENCHMARKS.md")]
        report: PathBuf,
    },
    /// Records per second through the sink's JSON → Arrow → Parquet (zstd) →
    /// object store path on one core, against DuckDB with one thread writing
    /// the same records to Parquet.
    Sink {
        /// Enriched Result records to write.
        #[arg(long, default_value_t = 100_000)]
        records: usize,
        /// Python with the duckdb package.
        #[arg(long, env = "LAKE_PYTHON", default_value = "python3")]
        python: PathBuf,
        /// Report file whose `sink` section is replaced.
        #[arg(long, default_value = "BENCHMARKS.md")]
        report: PathBuf,
        /// Kafka bootstrap servers for the end-to-end run from a pre-filled
        /// topic (skipped without).
        #[arg(long)]
        brokers: Option<String>,
        /// The sink's memory budget in the end-to-end run.
        #[arg(long, default_value = "64MiB")]
        memory_budget: String,
    },
    /// Rows per second through `sink compact` on a closed day of many small
    /// files with duplicates, against DuckDB with one thread doing the same
    /// deduplicating rewrite; then the cost of many small days.
    Compaction(compaction::Options),
    /// `sink forget` of one person in a lake of many days, against DuckDB
    /// rewriting every file.
    Erasure(erasure::Options),
    /// Webhook-to-queryable latency of the whole pipeline on its defaults.
    Freshness(freshness::Options),
    /// The baseline: a bare axum endpoint answering 202 (run by `bench ingest`).
    Baseline {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
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
        Bench::Ingest(options) => ingest::run(&options).await,
        Bench::Backfill(options) => backfill::run(&options).await,
        Bench::Compaction(options) => compaction::run(&options).await,
        Bench::Erasure(options) => erasure::run(&options).await,
        Bench::Freshness(options) => freshness::run(&options).await,
        Bench::Enricher { brokers, report } => enricher::run(&brokers, &report).await,
        Bench::Sink {
            records,
            python,
            report,
            brokers,
            memory_budget,
        } => {
            sink::run(
                records,
                &python,
                &report,
                brokers.as_deref(),
                &memory_budget,
            )
            .await
        }
    }
}
