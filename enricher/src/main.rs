//! `enricher`: raw webhooks to enriched records, with the full record of each Result and User from Mobaro's API.

fn main() -> std::process::ExitCode {
    runtime::launch(enricher::run)
}
