//! The Kubernetes manifests: each overlay renders with `kubectl kustomize`
//! and every object validates strictly, against Kubernetes' schemas
//! (`kubernetes-validate`) or its CRD's (KEDA, the Prometheus operator),
//! and against the house's rules for workloads; every setting a stage
//! reads is set or left at its default on purpose, its listen port is
//! exposed; the PrometheusRule holds exactly the rules of
//! monitoring/alerts.yml.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python with the tools' packages (scripts/setup installs them).
fn python() -> PathBuf {
    std::env::var_os("LAKE_PYTHON").map_or_else(
        || {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/mobaro-lake/venv/bin/python")
        },
        PathBuf::from,
    )
}

fn render(overlay: &str) -> anyhow::Result<String> {
    let output = Command::new("kubectl")
        .args(["kustomize", &format!("deploy/overlays/{overlay}")])
        .current_dir(root())
        .output()
        .context("kubectl (Debian's package kubectl; scripts/setup test installs it)")?;
    ensure!(
        output.status.success(),
        "kubectl kustomize deploy/overlays/{overlay}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

#[test]
fn every_overlay_renders_and_validates() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut files = vec![root().join("deploy/jobs/backfill.yaml")];
    for overlay in ["local", "production"] {
        let rendered = render(overlay)?;
        for kind in [
            "kind: Deployment",
            "kind: HorizontalPodAutoscaler",
            "kind: ScaledObject",
            "kind: PodDisruptionBudget",
            "kind: ServiceMonitor",
            "kind: PrometheusRule",
            "kind: CronJob",
        ] {
            ensure!(rendered.contains(kind), "{overlay}: no {kind}");
        }
        let file = dir.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, rendered)?;
        files.push(file);
    }
    let output = Command::new(python())
        .arg(root().join("scripts/py/validate_manifests.py"))
        .args(&files)
        .output()?;
    ensure!(
        output.status.success(),
        "the manifests do not validate:\n{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    Ok(())
}

#[test]
fn every_setting_and_port_of_the_stages_is_decided_in_the_manifests() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let bins = end_to_end::binary("sink");
    let bins = bins.parent().context("the binaries' folder")?;
    for overlay in ["local", "production"] {
        let file = dir.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, render(overlay)?)?;
        let output = Command::new(python())
            .arg(root().join("scripts/py/manifest_drift.py"))
            .arg(&file)
            .arg(bins)
            .output()?;
        ensure!(
            output.status.success(),
            "{overlay}: the manifests and the stages disagree:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

#[test]
fn the_prometheus_rule_is_the_alert_rules() -> anyhow::Result<()> {
    let output = Command::new(python())
        .arg(root().join("scripts/py/prometheus_rule.py"))
        .arg("--check")
        .output()?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[test]
fn production_scales_to_its_partitions() -> anyhow::Result<()> {
    let rendered = render("production")?;
    ensure!(
        rendered.contains("KAFKA_TOPIC_PARTITIONS: \"6\""),
        "production does not set six partitions"
    );
    let most: Vec<&str> = rendered
        .lines()
        .filter(|line| line.trim_start().starts_with("maxReplicaCount:"))
        .collect();
    ensure!(
        most.len() == 2 && most.iter().all(|line| line.trim_end().ends_with(" 6")),
        "the scaled stages' most replicas: {most:?}"
    );
    Ok(())
}
