"""The data volume's Job and pods, rendered. Pure: no cluster, no clock, no randomness.

`data prepare` runs a one-pod Kubernetes Job (`manifests/data/install-job.yaml`); `data status`,
`upload` and `put-checkpoint` run a short-lived pod (`manifests/data/helper-pod.yaml`). Both
mount the data claim at /data with the same subPath the rank pods use, so `/data/sop` and
`/data/pretrained/resnet50.ckpt` mean the same files in both. The commands are the job side's
`python -m job data-install | data-status | data-receive` (job/data/volume.py).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import posixpath
from collections.abc import Mapping
from typing import Any

from . import names
from .errors import ClientError, SpecError
from .render import manifests_dir
from .spec import _DNS_LABEL, _DNS_SUBDOMAIN, _IMAGE, _check_dns

INSTALL_TEMPLATE = "install-job.yaml"
POD_TEMPLATE = "helper-pod.yaml"
TASKS = ("prepare", "status", "upload")
JOB_PYTHON = ("python", "-m", "job")


@dataclasses.dataclass(frozen=True)
class DataTarget:
    """Where the data commands act.

    Attributes:
        namespace: Namespace of the data Job and pods (the training jobs' namespace).
        data_pvc: The claim the rank pods mount at /data (`submit --data-pvc`).
        data_subpath: Its folder mounted at /data ("" = the whole volume), as `submit --data-subpath`.
        image: Image holding the `job` package (the training image; no NPU is requested).
    """

    namespace: str = names.DEFAULT_NAMESPACE
    data_pvc: str = names.DEFAULT_DATA_PVC
    data_subpath: str = ""
    image: str = names.DEFAULT_IMAGE

    def __post_init__(self) -> None:
        _check_dns(self.namespace, "--namespace", _DNS_LABEL, 63)
        _check_dns(self.data_pvc, "--data-pvc", _DNS_SUBDOMAIN, 253)
        if not _IMAGE.match(self.image):
            raise SpecError(f"--image {self.image!r} is not a valid image reference "
                            "([registry[:port]/]repository[:tag][@sha256:digest])")
        parts = self.data_subpath.split("/")
        if self.data_subpath and (self.data_subpath.startswith("/") or ".." in parts
                                  or "" in parts[:-1]):
            raise SpecError(f"--data-subpath {self.data_subpath!r} must be a relative folder inside "
                            "the volume, without '..', e.g. 'datasets'")

    @property
    def record_name(self) -> str:
        return names.data_record_configmap(self.data_pvc, self.data_subpath)

    def describe(self) -> str:
        sub = f" (subPath {self.data_subpath})" if self.data_subpath else ""
        return f"volume {self.data_pvc}{sub} in namespace {self.namespace}"


# --- commands (the contract with job/cli.py) ------------------------------------------------

def install_command(source: str, *, sha256: str | None = None, allow_partial: bool = False,
                    force: bool = False, consume_source: bool = False,
                    expect_train: int | None = None, expect_test: int | None = None,
                    dest: str = names.DATA_DIR, pretrained: str = names.DEFAULT_PRETRAINED_CKPT,
                    python: tuple[str, ...] = JOB_PYTHON) -> list[str]:
    """`python -m job data-install --source SRC --dest /data/sop ...`."""
    command = [*python, "data-install", "--source", source, "--dest", dest]
    if sha256:
        command += ["--sha256", sha256]
    if allow_partial:
        command.append("--allow-partial")
    if expect_train is not None:
        command += ["--expect-train", str(expect_train)]
    if expect_test is not None:
        command += ["--expect-test", str(expect_test)]
    if force:
        command.append("--force")
    if consume_source:
        command.append("--consume-source")
    return command + ["--pretrained", pretrained]


def status_command(*, root: str = names.DATA_DIR, pretrained: str = names.DEFAULT_PRETRAINED_CKPT,
                   sample: int | None = None, python: tuple[str, ...] = JOB_PYTHON) -> list[str]:
    command = [*python, "data-status", "--root", root, "--pretrained", pretrained]
    return command + (["--sample", str(sample)] if sample is not None else [])


def receive_command(dest: str, sha256: Mapping[str, str] | None = None, *, replace: bool = False,
                    python: tuple[str, ...] = JOB_PYTHON) -> list[str]:
    """`python -m job data-receive --dest DIR`: unpacks the tar stream on stdin, atomically."""
    command = [*python, "data-receive", "--dest", dest]
    for name, digest in (sha256 or {}).items():
        command += ["--sha256", f"{name}={digest}"]
    return command + (["--replace"] if replace else [])


def source_path_in_pod(path: str, *, source_pvc: str | None = None) -> str:
    """Where the pod sees `--from-pvc-path PATH`.

    Without `source_pvc`: PATH is on the data volume, relative to its root (after subPath) or
    absolute under /data. With it: relative to that claim's root, mounted read-only at /source.
    """
    mount = names.SOURCE_MOUNT if source_pvc else names.DATA_MOUNT
    text = path.strip()
    if not text:
        raise ClientError("--from-pvc-path needs a path, e.g. incoming/Stanford_Online_Products.zip")
    if text.startswith("/"):
        if not (text + "/").startswith(mount + "/"):
            where = f"on claim {source_pvc}" if source_pvc else "on the data volume"
            raise ClientError(
                f"--from-pvc-path {path!r}: give a path {where}, relative to its root (e.g. "
                f"incoming/Stanford_Online_Products.zip) or under {mount}/"
                + ("" if source_pvc else "; a file on another claim needs --source-pvc NAME"))
        text = text[len(mount):].lstrip("/")
    if ".." in text.split("/"):
        raise ClientError(f"--from-pvc-path {path!r} must not contain '..'")
    return posixpath.normpath(f"{mount}/{text}") if text else mount


# --- manifests ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _load(filename: str) -> dict[str, Any]:
    import yaml

    path = manifests_dir() / "data" / filename
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClientError(f"template {path} is missing: reinstall the package (pip install .), "
                          "which ships manifests/ with operator_client") from None


def labels(task: str, run: str) -> dict[str, str]:
    return {
        names.LABEL_APP_NAME: names.APP_NAME,
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
        names.LABEL_DATA_TASK: task,
        names.LABEL_DATA_RUN: run,
    }


def _fill_pod_spec(pod: dict[str, Any], target: DataTarget, command: list[str],
                   source_pvc: str | None) -> None:
    (container,) = pod["containers"]
    container["name"] = names.DATA_CONTAINER_NAME
    container["image"] = target.image
    container["command"] = list(command)
    (volume,) = pod["volumes"]
    volume["name"] = names.DATA_VOLUME
    volume["persistentVolumeClaim"]["claimName"] = target.data_pvc
    (mount,) = container["volumeMounts"]
    mount["name"], mount["mountPath"] = names.DATA_VOLUME, names.DATA_MOUNT
    if target.data_subpath:
        mount["subPath"] = target.data_subpath.rstrip("/")
    if source_pvc:
        _check_dns(source_pvc, "--source-pvc", _DNS_SUBDOMAIN, 253)
        pod["volumes"].append({"name": names.SOURCE_VOLUME,
                               "persistentVolumeClaim": {"claimName": source_pvc, "readOnly": True}})
        container["volumeMounts"].append({"name": names.SOURCE_VOLUME,
                                          "mountPath": names.SOURCE_MOUNT, "readOnly": True})


def render_install_job(target: DataTarget, name: str, command: list[str], *,
                       source_pvc: str | None = None) -> dict[str, Any]:
    """The batch/v1 Job of `data prepare`: one pod running `command` (see `install_command`)."""
    job = copy.deepcopy(_load(INSTALL_TEMPLATE))
    job["metadata"].update(name=name, namespace=target.namespace, labels=labels("prepare", name))
    template = job["spec"]["template"]
    template["metadata"]["labels"] = labels("prepare", name)
    _fill_pod_spec(template["spec"], target, command, source_pvc)
    return job


def render_pod(target: DataTarget, name: str, task: str, command: list[str], *,
               source_pvc: str | None = None) -> dict[str, Any]:
    """A short-lived pod of `data status` (runs `command` and ends) or `upload` (sleeps)."""
    if task not in TASKS:
        raise ValueError(f"unknown data task {task!r}")
    pod = copy.deepcopy(_load(POD_TEMPLATE))
    pod["metadata"].update(name=name, namespace=target.namespace, labels=labels(task, name))
    _fill_pod_spec(pod["spec"], target, command, source_pvc)
    return pod


def sleep_command() -> list[str]:
    """The upload pod's command: wait (the client execs into it), as long as its deadline."""
    return list(_load(POD_TEMPLATE)["spec"]["containers"][0]["command"])
