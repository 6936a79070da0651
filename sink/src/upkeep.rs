//! Compaction and vacuum on a schedule inside the sink, and the settings
//! both the schedule and the one-off commands take from the configuration.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use lake::{compact, vacuum, CompactionReport, CompactionSettings, Tables, VacuumSettings};

use crate::config::Config;

/// The compaction settings of `config`.
pub(crate) fn compaction_settings(config: &Config) -> CompactionSettings {
    CompactionSettings {
        grace: config.upkeep.compact_grace,
        target_bytes: config.upkeep.compact_target_size,
        compression: config.compression,
        upload: config.upload(),
    }
}

/// The vacuum settings of `config`.
pub(crate) fn vacuum_settings(config: &Config, force: bool) -> VacuumSettings {
    VacuumSettings {
        retention: config.upkeep.vacuum_retention,
        log_retention: config.upkeep.log_retention,
        force,
    }
}

/// Compacts, then vacuums, the Delta tables every `every` until `shutdown`
/// (plain Parquet has no upkeep). A failed run is logged and the next one
/// tries again.
pub(crate) async fn run_every(
    tables: std::sync::Arc<Tables>,
    config: Config,
    every: Duration,
    shutdown: CancellationToken,
) {
    let Some(tables) = tables.delta() else {
        return;
    };
    let compaction = compaction_settings(&config);
    let vacuuming = vacuum_settings(&config, false);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let work = async {
            match compact(tables, &compaction, chrono::Utc::now()).await {
                Ok(report) => log(&report),
                Err(error) => tracing::warn!(%error, "compaction failed; the next run tries again"),
            }
            if let Err(error) = vacuum(tables, &vacuuming).await {
                tracing::warn!(%error, "vacuum failed; the next run tries again");
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = work => {}
        }
    }
}

fn log(report: &CompactionReport) {
    let rows_in: u64 = report.compacted.iter().map(|d| d.rows_in).sum();
    let rows_out: u64 = report.compacted.iter().map(|d| d.rows_out).sum();
    tracing::info!(
        days = report.compacted.len(),
        rows_deduplicated = rows_in - rows_out,
        conflicts = report.conflicts.len(),
        "compaction run done"
    );
}
