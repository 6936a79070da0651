"""Writes deploy/base/prometheus-rule.yaml, the Prometheus operator's
PrometheusRule holding the rules of monitoring/alerts.yml: that file is
the one source, this one is generated from it (the suite checks they
agree).

    python prometheus_rule.py [--check]

With --check, exits 1 when the generated file differs from what the rules
give, instead of writing it.
"""
import os
import sys

import yaml

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
SOURCE = os.path.join(ROOT, "monitoring", "alerts.yml")
TARGET = os.path.join(ROOT, "deploy", "base", "prometheus-rule.yaml")
HEADER = (
    "# Generated from monitoring/alerts.yml by scripts/py/prometheus_rule.py:\n"
    "# edit the rules there, then run the script.\n"
)


def generated():
    with open(SOURCE) as rules:
        spec = yaml.safe_load(rules)
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "mobaro-lake"},
        "spec": spec,
    }
    return HEADER + yaml.safe_dump(rule, sort_keys=False, width=100000, allow_unicode=True)


def main():
    text = generated()
    if "--check" in sys.argv[1:]:
        with open(TARGET) as current:
            if current.read() != text:
                print(f"{TARGET} differs from monitoring/alerts.yml: run scripts/py/prometheus_rule.py", file=sys.stderr)
                sys.exit(1)
        return
    with open(TARGET, "w") as out:
        out.write(text)


if __name__ == "__main__":
    main()
