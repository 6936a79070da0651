//! `ingest`: verifies signed Mobaro webhooks and produces them to Kafka, answering once the broker acknowledged.

fn main() -> std::process::ExitCode {
    runtime::launch(ingest::run)
}
