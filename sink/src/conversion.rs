//! `sink convert-to-delta`: a prefix of plain Parquet history turned into
//! Delta tables in place, and what was done printed per table.

use lake::{DeltaTables, Lake};

use crate::config::Config;
use crate::SinkError;

/// Converts the lake `config` names and prints what it did.
pub(crate) async fn run(
    config: &Config,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<(), SinkError> {
    let lake = Lake::open(&config.lake_url)?;
    let described = lake.describe().to_string();
    if !config.trust_store {
        // Delta commits are create-only puts: a store that overwrites would
        // let two writers take one version.
        lake.check_create_only().await?;
    }
    let tables = DeltaTables::new(lake);
    let converted = tokio::select! {
        converted = lake::convert_to_delta(&tables) => converted?,
        () = shutdown.cancelled() => return Err(runtime::Stopped.into()),
    };
    println!("lake: {described}");
    if converted.is_empty() {
        println!("no plain Parquet files: nothing to convert");
    }
    for table in &converted {
        let transactions: Vec<String> = table
            .transactions
            .iter()
            .map(|(partition, offset)| format!("{partition} at offset {offset}"))
            .collect();
        println!(
            "{}: {} plain Parquet files, {} added now ({} rows); transactions: {}",
            table.table.name(),
            table.files,
            table.added,
            table.rows,
            transactions.join(", ")
        );
    }
    Ok(())
}
