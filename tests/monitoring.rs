//! The alert rules and the Grafana dashboard name only metrics that a stage
//! registers: a renamed metric fails here instead of silencing an alert.

use std::collections::BTreeSet;
use std::path::Path;

/// Metric names in `text`: words starting with a stage's prefix, without the
/// suffixes Prometheus adds to histograms and summaries.
fn metrics_named_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| {
            ["ingest_", "enricher_", "sink_"]
                .iter()
                .any(|prefix| word.starts_with(prefix))
        })
        .map(|word| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word)
                .to_string()
        })
        .collect()
}

#[test]
fn alerts_and_dashboards_name_only_registered_metrics() {
    let registered: BTreeSet<String> = ingest::metric_names()
        .into_iter()
        .chain(enricher::metric_names())
        .chain(sink::metric_names())
        .collect();
    let monitoring = Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitoring");
    let mut files = vec![monitoring.join("alerts.yml")];
    let dashboards = monitoring.join("grafana/dashboards");
    for entry in std::fs::read_dir(&dashboards).expect("the dashboards folder") {
        files.push(entry.expect("a dashboard").path());
    }
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        let named = metrics_named_in(&text);
        assert!(!named.is_empty(), "{} names no metric", file.display());
        let unknown: Vec<&String> = named.difference(&registered).collect();
        assert!(
            unknown.is_empty(),
            "{} names metrics no stage registers: {unknown:?}",
            file.display()
        );
        checked += named.len();
    }
    assert!(checked > 10, "only {checked} metric names found");
}

#[test]
fn histogram_suffixes_are_stripped() {
    let named =
        metrics_named_in(r#"rate(sink_put_seconds_bucket[5m]) / sink_rows_total{x="ingest_not"}"#);
    assert!(named.contains("sink_put_seconds") && named.contains("sink_rows_total"));
}
