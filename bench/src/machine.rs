//! How busy the whole machine is, to tell a server that waits from a machine
//! that has no core left.

/// Busy and total CPU time of the whole machine so far, from `/proc/stat`
/// (all cores, in clock ticks).
pub(crate) fn machine_cpu() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((total - idle, total))
}

/// The share of all cores that was busy between two `machine_cpu` readings.
pub(crate) fn busy_share(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((busy0, total0), (busy1, total1)) = (before?, after?);
    (total1 > total0).then(|| (busy1 - busy0) as f64 / (total1 - total0) as f64)
}
