"""Manifest validation for the tests: official Kubernetes schemas (kubernetes-validate, strict)
for core objects and pod templates, the project's own JSON schemas for Volcano's kinds."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate

from operator_client.render import manifests_dir

# The oldest schema kubernetes-validate ships and the newest: Ascend clusters often run old releases.
KUBERNETES_VERSIONS = ("1.25", "1.37")
SCHEMAS = {
    ("batch.volcano.sh/v1alpha1", "Job"): "volcano-job.schema.json",
    ("scheduling.volcano.sh/v1beta1", "Queue"): "volcano-queue.schema.json",
}


@lru_cache(maxsize=None)
def _schema(filename: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((manifests_dir() / "schemas" / filename).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate(doc: dict[str, Any]) -> None:
    """Raise (jsonschema.ValidationError or kubernetes_validate's) unless `doc` is valid."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in SCHEMAS:
        _schema(SCHEMAS[key]).validate(doc)
        for task in doc.get("spec", {}).get("tasks", []):
            pod_template = {"apiVersion": "v1", "kind": "PodTemplate",
                            "metadata": {"name": task["name"]}, "template": task["template"]}
            for version in KUBERNETES_VERSIONS:
                kubernetes_validate.validate(pod_template, version, strict=True)
        return
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.yaml") if p.name != "kustomization.yaml")
