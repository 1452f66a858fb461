"""JobSpec -> Kubernetes manifests. Pure: no cluster, no clock, no randomness.

The static structure lives in the YAML templates under `manifests/job/`; `render` fills in what
depends on the spec (names, sizes, image, command, env, volumes) and drops what the launch mode
does not need. `to_yaml` turns the result into a `kubectl apply -f -` ready stream.
"""
from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from . import names
from .errors import ClientError
from .launch_command import launch_command, launch_env
from .spec import JobSpec

JOB_TEMPLATE = "volcano-job.yaml"
CONFIGMAP_TEMPLATE = "rank-table-configmap.yaml"
INITIAL_RANK_TABLE = {"status": "initializing"}


def manifests_dir() -> Path:
    """The project's `manifests/` folder: inside the installed package (a wheel ships it as
    package data) or, in a source checkout, next to the `operator_client` package."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "manifests", here.parent / "manifests"):
        if (candidate / "job").is_dir():
            return candidate
    return here.parent / "manifests"


@functools.lru_cache(maxsize=None)
def _load_template(filename: str) -> dict[str, Any]:
    import yaml

    path = manifests_dir() / "job" / filename
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClientError(
            f"job template {path} is missing: reinstall the package (pip install .), which "
            "ships manifests/ with operator_client") from None
    return yaml.safe_load(text)


def template(filename: str) -> dict[str, Any]:
    """A fresh copy of a template from manifests/job/."""
    return copy.deepcopy(_load_template(filename))


def common_labels(spec: JobSpec) -> dict[str, str]:
    """Labels on every object of a job (and on its pods)."""
    assert spec.name is not None
    return {
        names.LABEL_APP_NAME: names.APP_NAME,
        names.LABEL_APP_INSTANCE: spec.name,
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
    }


def render_rank_table_configmap(spec: JobSpec) -> dict[str, Any]:
    """The ConfigMap `rings-config-<job>` with hccl.json = {"status":"initializing"}."""
    assert spec.name is not None
    cm = template(CONFIGMAP_TEMPLATE)
    cm["metadata"]["name"] = names.rank_table_configmap(spec.name)
    cm["metadata"]["namespace"] = spec.namespace
    cm["metadata"]["labels"] = {**cm["metadata"]["labels"], **common_labels(spec)}
    cm["data"] = {names.RANK_TABLE_KEY: json.dumps(INITIAL_RANK_TABLE, separators=(",", ":"))}
    return cm


def render_job(spec: JobSpec) -> dict[str, Any]:
    """The Volcano Job: gang of `servers` rank pods, each with `devices_per_server` NPUs."""
    assert spec.name is not None
    job = template(JOB_TEMPLATE)
    meta = job["metadata"]
    meta["name"] = spec.name
    meta["namespace"] = spec.namespace
    meta["labels"] = {**common_labels(spec), names.LABEL_LOSS: spec.loss}
    meta["annotations"] = {
        names.ANNOTATION_STAGES: ",".join(spec.stages),
        names.ANNOTATION_LAUNCH: spec.launch,
    }
    body = job["spec"]
    body["minAvailable"] = spec.servers
    body["queue"] = spec.queue
    body["maxRetry"] = spec.max_retry
    (task,) = body["tasks"]
    task["name"] = names.TASK_NAME
    task["replicas"] = spec.servers
    pod_meta = task["template"]["metadata"]
    pod_meta["labels"] = {**pod_meta.get("labels", {}), **common_labels(spec)}
    pod = task["template"]["spec"]
    pod["serviceAccountName"] = spec.service_account
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    anti[0]["labelSelector"]["matchLabels"] = {names.LABEL_VOLCANO_JOB_NAME: spec.name}

    (container,) = pod["containers"]
    container["name"] = names.CONTAINER_NAME
    container["image"] = spec.image
    container["command"] = launch_command(spec)
    container["env"] = launch_env(spec)
    if spec.on_cpu:
        wanted = {"cpu": spec.cpus, "memory": spec.memory}
    else:
        wanted = {names.ASCEND_RESOURCE: str(spec.devices_per_server)}
    container["resources"] = {"requests": dict(wanted), "limits": dict(wanted)}

    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    volumes[names.DATA_VOLUME]["persistentVolumeClaim"]["claimName"] = spec.data_pvc
    if spec.data_subpath:
        mounts[names.DATA_VOLUME]["subPath"] = spec.data_subpath.rstrip("/")
    volumes[names.RUNS_VOLUME]["persistentVolumeClaim"]["claimName"] = spec.runs_pvc
    if spec.uses_rank_table:
        volumes[names.RANK_TABLE_VOLUME]["configMap"]["name"] = names.rank_table_configmap(spec.name)
    else:
        # Dynamic cluster mode needs no rank table: no ConfigMap, no mount, no ring label.
        pod["volumes"] = [v for v in pod["volumes"] if v["name"] != names.RANK_TABLE_VOLUME]
        container["volumeMounts"] = [
            m for m in container["volumeMounts"] if m["name"] != names.RANK_TABLE_VOLUME]
        pod_meta["labels"].pop(names.LABEL_RING_CONTROLLER, None)
    if spec.on_cpu:
        # No NPUs: none of the Ascend driver mounts, and a soft spread over nodes so that a
        # small CPU cluster can still hold several rank pods.
        host = {v["name"] for v in pod["volumes"] if "hostPath" in v}
        pod["volumes"] = [v for v in pod["volumes"] if v["name"] not in host]
        container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] not in host]
        term = anti.pop()
        pod["affinity"]["podAntiAffinity"] = {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": term}]}
    return job


def render(spec: JobSpec) -> list[dict[str, Any]]:
    """Every manifest of the job, in creation order: [rank-table ConfigMap,] Volcano Job."""
    if spec.name is None:
        raise ValueError("render needs a spec with a name: use spec.with_name()")
    manifests = []
    if spec.uses_rank_table:
        manifests.append(render_rank_table_configmap(spec))
    manifests.append(render_job(spec))
    return manifests


def to_yaml(manifests: list[dict[str, Any]]) -> str:
    """A multi-document YAML stream (`kubectl apply -f -` ready)."""
    import yaml

    return yaml.safe_dump_all(manifests, sort_keys=False, default_flow_style=False, width=100)
