"""Validates rendered Kubernetes manifests: built-in kinds against
Kubernetes' own schemas (kubernetes-validate, strict: unknown fields
fail), the CRD kinds (KEDA's ScaledObject, the Prometheus operator's
ServiceMonitor and PrometheusRule) against the schemas of their CRDs kept
in deploy/crds/, strictly too. A kind with no schema fails.

    python validate_manifests.py RENDERED.yaml ...
"""
import glob
import json
import os
import sys

import jsonschema
import kubernetes_validate
import yaml

CRDS = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "crds")


def strict(schema):
    """`schema` rejecting fields it does not name, as kubernetes-validate
    --strict does for built-in kinds (the API server would prune them
    silently: a misspelt field would be lost without a word)."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema = dict(schema, additionalProperties=False)
        return {key: strict(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def crd_schemas():
    schemas = {}
    for path in glob.glob(os.path.join(CRDS, "*.json")):
        with open(path) as f:
            crd = json.load(f)
        schemas[(crd["apiVersion"], crd["kind"])] = strict(crd["schema"])
    return schemas


SECRET_NAMES = ("KEY", "SECRET", "PASSWORD", "TOKEN")


def pod_specs(document):
    """The pod specs of a workload, with where they are."""
    spec = document.get("spec", {})
    kind = document.get("kind")
    if kind in ("Deployment", "Job"):
        return [spec["template"]["spec"]]
    if kind == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    return []


def policy(document):
    """What the house requires of every workload: non-root, a read-only
    root filesystem, no privilege escalation, a memory limit, secrets only
    by reference, and health probes on long-running stages."""
    problems = []
    for pod in pod_specs(document):
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problems.append("the pod may run as root")
        for container in pod.get("containers", []):
            context = container.get("securityContext", {})
            if not context.get("readOnlyRootFilesystem"):
                problems.append(f"{container['name']}: writable root filesystem")
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{container['name']}: privilege escalation allowed")
            if "memory" not in container.get("resources", {}).get("limits", {}):
                problems.append(f"{container['name']}: no memory limit")
            for variable in container.get("env", []):
                name = variable["name"]
                if any(part in name for part in SECRET_NAMES) and not name.endswith("_FILE") \
                        and "value" in variable:
                    problems.append(f"{container['name']}: {name} is a literal, not a Secret")
            if document["kind"] == "Deployment":
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe not in container:
                        problems.append(f"{container['name']}: no {probe}")
    return problems


def main():
    schemas = crd_schemas()
    failures = []
    checked = 0
    for path in sys.argv[1:]:
        with open(path) as f:
            documents = [d for d in yaml.safe_load_all(f) if d]
        for document in documents:
            key = (document.get("apiVersion"), document.get("kind"))
            name = f"{path}: {key[1]} {document.get('metadata', {}).get('name')}"
            checked += 1
            failures.extend(f"{name}: {problem}" for problem in policy(document))
            if key in schemas:
                errors = sorted(
                    jsonschema.Draft7Validator(schemas[key]).iter_errors(document),
                    key=lambda e: list(e.path),
                )
                failures.extend(f"{name}: {'/'.join(map(str, e.path))}: {e.message}" for e in errors)
                continue
            try:
                kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                failures.append(f"{name}: no schema for {key}")
            except kubernetes_validate.ValidationError as error:
                failures.append(f"{name}: {error.message}")
    for failure in failures:
        print(failure, file=sys.stderr)
    print(json.dumps({"documents": checked, "failures": len(failures)}))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
