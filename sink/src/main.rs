//! `sink`: enriched records to Delta Lake tables (or plain Parquet) in an object store.

fn main() -> std::process::ExitCode {
    runtime::launch(sink::run)
}
