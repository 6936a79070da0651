use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); JSON lines when
/// `LOG_FORMAT=json`. The Delta kernel logs at `warn` unless `RUST_LOG`
/// names it: at `info` it writes every snapshot it builds, whole, several
/// kilobytes a commit.
pub fn init_tracing() {
    let mut directives = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
    if !directives.contains("buoyant_kernel") {
        directives.push_str(",buoyant_kernel=warn,buoyant_kernel_engine=warn");
    }
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // Colours only for a terminal: logs redirected to a file stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Histograms whose name ends so are delays from seconds to days, served as
/// Prometheus histograms with these bucket bounds (seconds); the other
/// histograms are summaries.
pub(crate) const DELAY_SUFFIX: &str = "_delay_seconds";
const DELAY_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0, 259200.0, 604800.0,
];

/// How often recorded histogram samples are folded into their buckets and
/// summaries, whether or not anyone scrapes: samples wait in memory until
/// then.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix(DELAY_SUFFIX.into()),
                    DELAY_BUCKETS,
                )
                .expect("the bucket bounds are not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                })
                .expect("a thread can be spawned");
            handle
        })
        .clone()
}

/// The name of a stage's readiness gauge, `{stage}_ready{check}`.
pub fn ready_metric(stage: &str) -> String {
    format!("{stage}_ready")
}

/// The name of a consuming stage's lag gauge,
/// `{stage}_consumer_lag{topic,partition}`.
pub fn lag_metric(stage: &str) -> String {
    format!("{stage}_consumer_lag")
}
