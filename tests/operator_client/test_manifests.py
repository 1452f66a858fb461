"""Everything under manifests/ validates; the cluster set-up kustomization is complete."""
from __future__ import annotations

import subprocess

import pytest
import yaml

from operator_client import names
from operator_client.render import manifests_dir

from .validation import validate, yaml_files

CLUSTER = manifests_dir() / "cluster"
FILES = yaml_files(manifests_dir())


def _docs(path):
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(manifests_dir())) for p in FILES])
def test_manifest_file_validates(path):
    docs = _docs(path)
    assert docs, f"{path} holds no object"
    for doc in docs:
        validate(doc)


def test_kustomization_lists_every_cluster_file():
    kustomization = yaml.safe_load((CLUSTER / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in yaml_files(CLUSTER)}
    assert listed == on_disk


def _cluster_objects():
    return [doc for path in yaml_files(CLUSTER) for doc in _docs(path)]


def test_cluster_setup_matches_the_client_defaults():
    by_kind = {}
    for doc in _cluster_objects():
        by_kind.setdefault(doc["kind"], []).append(doc)
    assert [d["metadata"]["name"] for d in by_kind["Namespace"]] == [names.DEFAULT_NAMESPACE]
    assert [d["metadata"]["name"] for d in by_kind["Queue"]] == [names.DEFAULT_QUEUE]
    claims = {d["metadata"]["name"]: d for d in by_kind["PersistentVolumeClaim"]}
    assert set(claims) == {names.DEFAULT_DATA_PVC, names.DEFAULT_RUNS_PVC}
    assert all(c["spec"]["accessModes"] == ["ReadWriteMany"] for c in claims.values())
    assert [d["metadata"]["name"] for d in by_kind["ServiceAccount"]] == [names.DEFAULT_SERVICE_ACCOUNT]
    namespaced = [d for d in _cluster_objects() if d["kind"] not in ("Namespace", "Queue")]
    assert {d["metadata"]["namespace"] for d in namespaced} == {names.DEFAULT_NAMESPACE}
    assert "namespace" not in by_kind["Queue"][0]["metadata"]  # cluster-scoped


def test_job_service_account_role_is_least_privilege():
    """The pods' Role reads the job and its pods and patches ConfigMaps; it creates or deletes nothing."""
    roles = {d["metadata"]["name"]: d for d in _cluster_objects() if d["kind"] == "Role"}
    job_role = roles[names.DEFAULT_SERVICE_ACCOUNT]
    verbs = {verb for rule in job_role["rules"] for verb in rule["verbs"]}
    assert verbs <= {"get", "list", "patch"}
    assert all("*" not in rule["resources"] + rule["verbs"] + rule["apiGroups"] for rule in job_role["rules"])
    binding = next(d for d in _cluster_objects() if d["kind"] == "RoleBinding")
    assert binding["roleRef"]["name"] == job_role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": names.DEFAULT_SERVICE_ACCOUNT,
                                    "namespace": names.DEFAULT_NAMESPACE}]


def test_kustomize_builds_the_cluster_setup(kubectl):
    built = subprocess.run([kubectl, "kustomize", str(CLUSTER)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == \
        sorted((d["kind"], d["metadata"]["name"]) for d in _cluster_objects())
    for doc in docs:
        validate(doc)
