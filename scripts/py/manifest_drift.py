"""Holds the Kubernetes manifests to the binaries they run: every
environment variable a stage reads (its `--help`) is either set by the
manifests or named below as left at its default, no variable the
manifests set is one the stage does not read, and each stage's listen
address is a port its container exposes. A stage that gains a setting
fails this until someone decides where it goes.

    python manifest_drift.py RENDERED.yaml BIN_DIR
"""
import re
import subprocess
import sys

import yaml

# What the manifests leave at each stage's default, on purpose.
DEFAULTS = {
    "ingest": {
        "INGEST_ACK_TIMEOUT", "INGEST_FORWARD_HEADERS",
        "INGEST_INSECURE_ACCEPT_UNSIGNED", "INGEST_MAX_BODY_BYTES",
        "INGEST_MAX_CONCURRENT_REQUESTS", "INGEST_QUARANTINE_BODY_BYTES",
        "INGEST_QUARANTINE_BURST", "INGEST_QUARANTINE_RATE", "INGEST_REQUEST_TIMEOUT",
        "INGEST_SHARED_TOKEN", "INGEST_SHARED_TOKEN_HEADER", "INGEST_SIGNATURE_FORMS",
        # TLS ends at the cluster's ingress.
        "INGEST_TLS_CERT", "INGEST_TLS_KEY",
        "KAFKA_MSK_IAM_REGION", "KAFKA_OPTIONS", "KAFKA_TOPIC_REPLICATION",
        # One account: the secrets file; several: MOBARO_ACCOUNTS_FILE from the Secret.
        "MOBARO_ACCOUNTS_FILE", "MOBARO_WEBHOOK_SECRETS", "QUARANTINE_TOPIC", "RAW_TOPIC",
    },
    "enricher": {
        "DEAD_LETTER_TOPIC", "ENRICHED_TOPIC", "ENRICHER_CONCURRENCY",
        "ENRICHER_DRAIN_TIMEOUT", "ENRICHER_GROUP_ID", "ENRICHER_MAX_IN_FLIGHT",
        "ENRICHER_USER_CACHE_TTL", "ENRICH_RESOURCES", "KAFKA_MSK_IAM_REGION", "KAFKA_OPTIONS",
        "KAFKA_TOPIC_REPLICATION", "MOBARO_ACCOUNTS_FILE",
        "MOBARO_API_ALLOW_INSECURE_HTTP", "MOBARO_API_BACKOFF", "MOBARO_API_MAX_ATTEMPTS",
        "MOBARO_API_MAX_BODY", "MOBARO_API_MAX_RETRY_AFTER", "MOBARO_API_PATH_TEMPLATE",
        "MOBARO_API_RATE_BURST", "MOBARO_API_RATE_LIMIT", "MOBARO_API_TIMEOUT",
        "MOBARO_API_URL", "RAW_TOPIC",
        # The sink screens every write against the erasure ledger; the
        # enricher consults it too only when given the lake and its
        # credentials (an overlay's choice).
        "ERASURE_LEDGER", "ERASURE_KEY",
    },
    "sink": {
        "DEAD_LETTER_TOPIC", "ENRICHED_TOPIC", "KAFKA_MSK_IAM_REGION", "KAFKA_OPTIONS",
        "KAFKA_TOPIC_REPLICATION", "LAKE_FORMAT",
        "SINK_COLUMN_MONITORS", "SINK_COMMIT_INTERVAL", "SINK_COMPACT_EVERY", "SINK_COMPACT_GRACE",
        "SINK_COMPACT_TARGET_SIZE", "SINK_COMPRESSION", "SINK_DEDUP_HORIZON", "SINK_GROUP_ID",
        "SINK_LOG_RETENTION", "SINK_MAX_FILE_AGE", "SINK_MAX_FILE_BYTES", "SINK_MAX_FILE_ROWS",
        "SINK_MERGE_EVERY", "SINK_MULTIPART_PART_SIZE", "SINK_MULTIPART_THRESHOLD",
        "SINK_OPEN_DAY_FILES", "SINK_SOURCE_ID",
        "SINK_TRUST_STORE", "SINK_VACUUM_RETENTION",
    },
}
# Read outside the command line: logging, and the object store's own.
AMBIENT = re.compile(r"^(LOG_FORMAT|RUST_LOG|AWS_[A-Z_]+|AZURE_[A-Z_]+|GOOGLE_[A-Z_]+)$")
LISTEN = {"ingest": "INGEST_LISTEN", "enricher": "ENRICHER_OPS_LISTEN", "sink": "SINK_OPS_LISTEN"}


def main():
    rendered, bin_dir = sys.argv[1], sys.argv[2]
    with open(rendered) as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    config = {}
    for document in documents:
        if document["kind"] == "ConfigMap" and document["metadata"]["name"] == "mobaro-lake":
            config = document["data"]
    problems = []
    for stage in DEFAULTS:
        help_text = subprocess.run([f"{bin_dir}/{stage}", "--help"], capture_output=True,
                                   text=True, check=True).stdout
        reads = set(re.findall(r"\[env: ([A-Z0-9_]+)", help_text))
        deployment = next(d for d in documents
                          if d["kind"] == "Deployment" and d["metadata"]["name"] == stage)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = {v["name"]: v.get("value") for v in container.get("env", [])}
        given = set(env) | set(config)
        for name in sorted(reads - given - DEFAULTS[stage]):
            problems.append(f"{stage} reads {name}, which the manifests neither set nor leave at its default on purpose")
        for name in sorted(DEFAULTS[stage] & given):
            problems.append(f"{stage}: {name} is set by the manifests and listed as left at its default")
        for name in sorted(set(env) - reads):
            if not AMBIENT.match(name):
                problems.append(f"{stage}: the manifests set {name}, which {stage} does not read")
        ports = {p["containerPort"] for p in container.get("ports", [])}
        listen = env.get(LISTEN[stage]) or ""
        if not listen or int(listen.rsplit(":", 1)[1]) not in ports:
            problems.append(f"{stage}: {LISTEN[stage]}={listen!r} is no port its container exposes {sorted(ports)}")
    for problem in problems:
        print(problem, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
