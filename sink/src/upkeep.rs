//! Compaction and vacuum on a schedule inside the sink, and the settings
//! both the schedule and the one-off commands take from the configuration.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use lake::{
    compact, merge_open_days, vacuum, CompactionReport, CompactionSettings, Lease, Tables,
    VacuumSettings,
};

use crate::config::Config;
use crate::telemetry;

/// The compaction settings of `config`.
pub(crate) fn compaction_settings(config: &Config) -> CompactionSettings {
    CompactionSettings {
        grace: config.upkeep.compact_grace,
        target_bytes: config.upkeep.compact_target_size,
        compression: config.compression,
        upload: config.upload(),
        open_day_files: config.upkeep.open_day_files,
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

/// What a scheduled run does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Job {
    /// Compacts closed days, then vacuums.
    Upkeep,
    /// Merges open days' small files.
    Merge,
}

impl Job {
    /// The lease that lets one sink of the lake run the job per period.
    fn lease(self) -> &'static str {
        match self {
            Job::Upkeep => "upkeep",
            Job::Merge => "merge",
        }
    }
}

/// Runs `job` on the Delta tables every `every` until `shutdown` (plain
/// Parquet has no upkeep). Each run is supervised: a failure, or a panic,
/// is logged and counted, and the next run tries again.
pub(crate) async fn run_every(
    tables: Arc<Tables>,
    config: Config,
    job: Job,
    every: Duration,
    shutdown: CancellationToken,
) {
    if tables.delta().is_none() || every.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let run = tokio::spawn(run_once(tables.clone(), config.clone(), job, every));
        let abort = run.abort_handle();
        tokio::select! {
            _ = shutdown.cancelled() => {
                abort.abort();
                return;
            }
            ended = run => {
                if let Err(error) = ended {
                    tracing::error!(%error, "the upkeep run panicked; the next run tries again");
                    telemetry::upkeep_failed();
                }
            }
        }
    }
}

/// One run of `job`; by one sink of the lake per period: the one that
/// takes the job's lease (for most of `every`). Two at once would only
/// repeat each other's work (a rewrite that loses the race to a commit is
/// left for the next run), outside the memory budget of both.
async fn run_once(tables: Arc<Tables>, config: Config, job: Job, every: Duration) {
    let Some(delta) = tables.delta() else {
        return;
    };
    match tables
        .lake()
        .take_lease(job.lease(), every.mul_f64(0.9))
        .await
    {
        Ok(Lease::Taken) => {}
        Ok(Lease::Held) => {
            tracing::debug!(job = job.lease(), "another sink runs this job this period");
            return;
        }
        Err(error) => {
            tracing::warn!(%error, job = job.lease(), "the job's lease could not be read; running it");
        }
    }
    let settings = compaction_settings(&config);
    if let Job::Merge = job {
        match merge_open_days(delta, &settings, chrono::Utc::now()).await {
            Ok(report) if report.compacted.is_empty() && report.failed.is_empty() => {}
            Ok(report) => log(&report),
            Err(error) => {
                tracing::warn!(%error, "merging open days failed; the next run tries again");
                telemetry::upkeep_failed();
            }
        }
        return;
    }
    match compact(delta, &settings, chrono::Utc::now()).await {
        Ok(report) => log(&report),
        Err(error) => {
            tracing::warn!(%error, "compaction failed; the next run tries again");
            telemetry::upkeep_failed();
        }
    }
    let vacuumed = vacuum(delta, &vacuum_settings(&config, false)).await;
    if !vacuumed.failed.is_empty() {
        telemetry::upkeep_failed();
    }
}

fn log(report: &CompactionReport) {
    let rows_in: u64 = report.compacted.iter().map(|d| d.rows_in).sum();
    let rows_out: u64 = report.compacted.iter().map(|d| d.rows_out).sum();
    tracing::info!(
        days = report.compacted.len(),
        rows_deduplicated = rows_in - rows_out,
        conflicts = report.conflicts.len(),
        failed = report.failed.len(),
        "compaction run done"
    );
}
