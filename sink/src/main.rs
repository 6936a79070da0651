//! `sink`: enriched records to Hive-partitioned Parquet files in an object store.

fn main() -> std::process::ExitCode {
    runtime::launch(sink::run)
}
