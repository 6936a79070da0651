//! Words that leave Rust are held to it: the alert rules and the Grafana
//! dashboard name only metrics that a stage registers, and the dbt tests,
//! alert texts and README name every value of the vocabularies the stages
//! write, so a renamed metric or a new value fails here instead of
//! silencing an alert or failing a user's `dbt build`.

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

/// Each `accepted_values` list of the dbt models, with the column it tests.
fn accepted_values(yaml: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut column = String::new();
    let mut lists = Vec::new();
    for line in yaml.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- name:") {
            column = name.trim().to_string();
        } else if let Some(values) = line.strip_prefix("values:") {
            let values = values.trim().trim_start_matches('[').trim_end_matches(']');
            let values = values
                .split(',')
                .map(|value| value.trim().trim_matches(['\'', '"']).to_string())
                .collect();
            lists.push((column.clone(), values));
        }
    }
    lists
}

/// The values the stages write into a column of that name.
fn written_into(column: &str) -> Option<BTreeSet<String>> {
    let names = |names: &mut dyn Iterator<Item = &'static str>| names.map(String::from).collect();
    match column {
        "resource" => Some(names(
            &mut schemas::Resource::ALL.iter().map(|r| r.as_str()),
        )),
        "event" | "event_kind" => Some(names(
            &mut schemas::EventKind::ALL.iter().map(|e| e.as_str()),
        )),
        "status" | "fetch_status" => Some(names(
            &mut schemas::FetchStatus::ALL.iter().map(|s| s.as_str()),
        )),
        _ => None,
    }
}

#[test]
fn dbt_tests_accept_every_value_the_stages_write() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dbt/models");
    let mut checked = 0;
    let mut folders = vec![models];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("a dbt folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "yml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("readable");
            for (column, values) in accepted_values(&text) {
                let written = written_into(&column).unwrap_or_else(|| {
                    panic!(
                        "{}: accepted_values of {column}, a column this test does not know: add it to written_into",
                        path.display()
                    )
                });
                assert_eq!(
                    values,
                    written,
                    "{}: accepted_values of {column}",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "only {checked} accepted_values lists found");
}

#[test]
fn alert_texts_and_readme_name_every_class_and_reason() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let classes: Vec<&str> = schemas::DeadLetterClass::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    for file in ["monitoring/alerts.yml", "monitoring/alerts_test.yml"] {
        let text = std::fs::read_to_string(root.join(file)).expect("readable");
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("dlq_error_class"))
            .collect();
        assert!(!lines.is_empty(), "{file} names no dead-letter class");
        for line in lines {
            for class in &classes {
                assert!(
                    line.contains(class),
                    "{file} lists dead-letter classes without {class}: {line}"
                );
            }
        }
    }
    let readme = std::fs::read_to_string(root.join("README.md")).expect("readable");
    let quoted = |word: &str| readme.contains(&format!("`{word}`"));
    let reasons = <schemas::QuarantineReason as clap::ValueEnum>::value_variants()
        .iter()
        .map(|r| r.as_str());
    let statuses = schemas::FetchStatus::ALL.iter().map(|s| s.as_str());
    let kinds = schemas::EventKind::ALL.iter().map(|e| e.as_str());
    for word in classes
        .iter()
        .copied()
        .chain(reasons)
        .chain(statuses)
        .chain(kinds)
    {
        assert!(quoted(word), "README.md does not name `{word}`");
    }
}

#[test]
fn accepted_values_are_read_with_their_column() {
    let yaml = "      - name: status\n        tests:\n          - accepted_values:\n              arguments:\n                values: [found, 'not_found']\n";
    let lists = accepted_values(yaml);
    assert_eq!(lists.len(), 1);
    assert_eq!(lists[0].0, "status");
    assert!(lists[0].1.contains("not_found"));
}
