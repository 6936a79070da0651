//! `mobaro-sim`: a stand-in for Mobaro that serves its REST API and sends its signed webhooks.

use clap::{Parser, Subcommand};

/// A stand-in for Mobaro: serves its REST API and sends signed webhooks.
#[derive(Parser)]
#[command(name = "mobaro-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve `GET /api/customers/{collection}/{id}` and the list endpoints
    /// `GET /api/customers/{collection}` with generated records.
    Serve(mobaro_sim::api::ApiArgs),
    /// Send signed webhooks to a receiver.
    Send(mobaro_sim::webhooks::SendArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(args) => mobaro_sim::api::serve(args).await,
        Command::Send(args) => {
            let (delivered, failed) = mobaro_sim::webhooks::send(args).await?;
            tracing::info!(delivered, failed, "webhooks sent");
            anyhow::ensure!(failed == 0, "{failed} webhooks were not accepted");
            Ok(())
        }
    }
}
