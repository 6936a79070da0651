//! Latency percentiles of the measurements the benchmarks take themselves.

use std::time::Duration;

/// The `p` percentile (0 to 1) of `sorted` latencies; zero when empty.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}
