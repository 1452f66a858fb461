"""Verbs on the data volume: prepare SOP, upload it, report what is there, place the backbone.

`DataClient` acts on a cluster: `prepare` runs a one-pod Kubernetes Job (`python -m job
data-install`), `status` a short-lived pod (`python -m job data-status`), `upload` and
`put_checkpoint` stream a tar archive into `python -m job data-receive` in a short-lived pod
through pod exec, the `kubectl cp` way (data_transfer.py); the manifests come from
data_render.py. `LocalData` runs the same job-side commands on a folder
of this machine (`--local DIR`, which plays the volume's root).

The pods print progress lines and, at the end, findings `sop-data {json}` (FINDING_PREFIX, the
contract with job/data/volume.py); the client parses those from the pod log and prints one line
per finding (`format_finding`).

What was found last is recorded in the ConfigMap `sop-volume-<pvc>` (names.data_record_configmap),
written by every data command. `submit` reads it (`check_before_submit`) to refuse, in one
line and without starting a pod, a job that would pretrain from the default ImageNet checkpoint
(launch_command.pretrained_checkpoint) while that checkpoint is not on the volume.

Nothing here prints: progress goes to `on_progress` (a status line), the pods' output lines to
`on_output`.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from . import names
from .data_render import (DataTarget, install_command, receive_command, render_install_job,
                          render_pod, sleep_command, source_path_in_pod, status_command)
from .data_transfer import (EXIT_STREAM_LOST, ExecSession, ProcessSession, plan_upload, send_tar,
                            sha256_file, size_text)
from .errors import AlreadyExists, ClientError, NotFound, WaitTimeout

log = logging.getLogger(__name__)
Callback = Callable[[str], None]
PROG = "python -m operator_client"
# The job side prints these lines (job/data/volume.py FINDING_PREFIX); the packages never import
# each other, so the prefix is written twice and tests/operator_client/test_data.py checks both.
FINDING_PREFIX = "sop-data "


def _quiet(_: str) -> None:
    pass


# --- findings -------------------------------------------------------------------------------

def parse_findings(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The findings among a pod's log lines (anything else is progress output)."""
    found = []
    for line in lines:
        text = line.rstrip("\r\n")
        if not text.startswith(FINDING_PREFIX):
            continue
        try:
            value = json.loads(text[len(FINDING_PREFIX):])
        except ValueError:
            log.warning("unreadable finding line: %s", text[:200])
            continue
        if isinstance(value, dict) and "finding" in value:
            found.append(value)
    return found


def job_errors(lines: Iterable[str]) -> list[str]:
    """The `error: ...` lines of the job side (its one-line user errors)."""
    return [line[len("error: "):].strip() for line in lines if line.startswith("error: ")]


def _count(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


def format_finding(f: dict[str, Any]) -> str:
    """One line for a finding, for people."""
    kind = f.get("finding")
    if kind == "dataset":
        state, root = f.get("state"), f.get("root")
        if state == "prepared":
            facts = ["PARTIAL (installed with --allow-partial)"] if f.get("partial") else []
            facts += [f"sha256 {f['sha256'][:12]}..."] if f.get("sha256") else []
            facts += [f"installed {f.get('installed_at')} from {f.get('source')}"]
            return f"dataset: prepared at {root} ({', '.join(facts)})"
        if state == "absent":
            return (f"dataset: nothing at {root} yet - put SOP there with `{PROG} data prepare "
                    f"--from-url URL` or `{PROG} data upload PATH`")
        if state == "empty":
            return f"dataset: {root} is an empty folder"
        return (f"dataset: {root} holds files that `data prepare` did not install ({f.get('note')}); "
                f"verify them in place with `{PROG} data prepare --from-pvc-path "
                f"{names.SOP_SUBDIR}`")
    if kind == "split":
        images, expected = f.get("images"), f.get("expected")
        verdict = "as expected" if images == expected else f"EXPECTED {_count(expected)}"
        return (f"split {f.get('split')}: {_count(images)} images of {_count(f.get('classes'))} "
                f"classes ({f.get('file')}), {verdict}")
    if kind == "images":
        head = f"images {f.get('split')}: {_count(f.get('checked'))} of {_count(f.get('of'))} checked"
        if not f.get("missing"):
            return f"{head}, none missing"
        examples = ", ".join(f.get("examples") or [])
        return f"{head}, {_count(f.get('missing'))} MISSING (e.g. {examples})"
    if kind == "lists":
        present = ", ".join(f"{name} {_count(n)}" for name, n in (f.get("present") or {}).items())
        missing = f.get("missing") or []
        text = f"lists: {present or 'none'}"
        if missing:
            text += (f"; MISSING {', '.join(missing)} (write them with `python -m job prepare-sop "
                     f"--root {names.DATA_DIR}` in a pod, or `data prepare --force`)")
        return text
    if kind == "leftover":
        return (f"leftover: {f.get('path')} from an interrupted install (the next `data prepare` "
                "removes it)")
    if kind == "checkpoint":
        if f.get("present"):
            sha = f", sha256 {f['sha256'][:12]}..." if f.get("sha256") else ""
            return f"checkpoint: {f.get('path')} present, {size_text(f.get('bytes') or 0)}{sha}"
        return (f"checkpoint: {f.get('path')} MISSING - place the ImageNet ResNet50 checkpoint "
                f"with `{PROG} data put-checkpoint FILE`")
    if kind == "install":
        if f.get("result") == "already-prepared":
            return (f"install: {f.get('root')} was already prepared (installed "
                    f"{f.get('installed_at')}): nothing to do; --force installs again")
        counts = f.get("counts") or {}
        split_text = ", ".join(f"{s} {_count(c.get('images'))}" for s, c in counts.items())
        return (f"install: installed SOP at {f.get('root')} ({split_text} images) from "
                f"{f.get('source')} in {f.get('seconds')} s")
    if kind == "received":
        return (f"received: {_count(f.get('files'))} file(s), {size_text(f.get('bytes') or 0)} into "
                f"{f.get('dest')}")
    if kind == "problem":
        return f"problem: {f.get('message')}"
    rest = {k: v for k, v in f.items() if k != "finding"}
    return f"{kind}: {json.dumps(rest)}"


def checkpoint_present(findings: Sequence[dict[str, Any]], path: str) -> bool | None:
    """Whether the findings say the checkpoint `path` is there (None: they do not say)."""
    for f in findings:
        if f.get("finding") == "checkpoint" and f.get("path") == path:
            return bool(f.get("present"))
    return None


def check_url(url: str) -> None:
    """http(s) only: the data pod fetches with urllib; object stores through a pre-signed URL."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in ("http", "https"):
        return
    if scheme in ("s3", "gs", "gcs", "oss", "obs", "az", "abfs", "minio"):
        raise ClientError(
            f"--from-url {url}: {scheme}:// URLs are not fetched directly; make a pre-signed HTTPS "
            f"URL for the object (e.g. `aws s3 presign {url}` or `mc share download ...`) and pass that")
    raise ClientError(f"--from-url {url!r} must be an http:// or https:// URL "
                      "(a file on the volume: --from-pvc-path; on this machine: data upload)")


# --- the volume record (a ConfigMap) and the check before submit ------------------------------

def record_manifest(target: DataTarget, findings: Sequence[dict[str, Any]],
                    now: str | None = None) -> dict[str, Any]:
    """The ConfigMap recording what the data pods last found on the volume."""
    now = now or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": target.record_name, "namespace": target.namespace,
            "labels": {names.LABEL_APP_NAME: names.APP_NAME, names.LABEL_MANAGED_BY: names.MANAGED_BY,
                       names.LABEL_DATA_PVC: target.data_pvc[:63].rstrip("-.")},
            "annotations": {names.ANNOTATION_DATA_SUBPATH: target.data_subpath},
        },
        "data": {names.DATA_RECORD_KEY: json.dumps(list(findings), indent=1), "updated": now},
    }


def read_record(cluster: Any, target: DataTarget) -> list[dict[str, Any]] | None:
    """The findings recorded for the volume, or None when no data command has looked at it."""
    try:
        configmap = cluster.get_configmap(target.namespace, target.record_name)
    except NotFound:
        return None
    try:
        value = json.loads((configmap.get("data") or {}).get(names.DATA_RECORD_KEY) or "[]")
    except ValueError:
        return None
    return [f for f in value if isinstance(f, dict)] if isinstance(value, list) else None


def write_record(cluster: Any, target: DataTarget, findings: Sequence[dict[str, Any]]) -> None:
    body = record_manifest(target, findings)
    try:
        cluster.create_configmap(body)
    except AlreadyExists:
        cluster.patch_configmap(target.namespace, target.record_name, {"data": body["data"]})


def check_before_submit(cluster: Any, spec: Any) -> None:
    """Refuse, in one line, a job that pretrains from the default checkpoint when the volume's
    record does not show it there. Volcano is checked first (its error says more)."""
    from .launch_command import pretrained_checkpoint

    cluster.require_volcano()
    if "pretrain" not in spec.stages or pretrained_checkpoint(spec) != names.DEFAULT_PRETRAINED_CKPT:
        return
    target = DataTarget(namespace=spec.namespace, data_pvc=spec.data_pvc,
                        data_subpath=spec.data_subpath, image=spec.image)
    findings = read_record(cluster, target)
    if findings is not None and checkpoint_present(findings, names.DEFAULT_PRETRAINED_CKPT):
        return
    if findings is None:
        cluster.require_namespace(spec.namespace)  # a missing namespace says more
    seen = ("no data command has looked at it yet" if findings is None
            else "the last look did not find it")
    flags = f" -n {spec.namespace}" if spec.namespace != names.DEFAULT_NAMESPACE else ""
    flags += f" --data-pvc {spec.data_pvc}" if spec.data_pvc != names.DEFAULT_DATA_PVC else ""
    flags += f" --data-subpath {spec.data_subpath}" if spec.data_subpath else ""
    raise ClientError(
        f"the stages start with pretraining from ImageNet weights, but the default checkpoint "
        f"{names.DEFAULT_PRETRAINED_CKPT} is not on {target.describe()} ({seen}): place it with "
        f"`{PROG} data put-checkpoint FILE{flags}` (if it is already there, `{PROG} data status"
        f"{flags}` records it), or pass --pretrained-ckpt PATH")


def _receive_result(code: int, out: str, err: str, where: str) -> dict[str, Any]:
    findings = parse_findings(out.splitlines())
    received = next((f for f in findings if f.get("finding") == "received"), None)
    if code != 0 or received is None:
        errors = job_errors(err.splitlines())
        if errors:
            detail = errors[-1]
        elif code == EXIT_STREAM_LOST and not err.strip():
            detail = "the exec stream closed before the command reported (pod evicted? connection lost?)"
        else:
            detail = (err.strip().splitlines() or [f"exit code {code}"])[-1]
        raise ClientError(f"receiving the upload in {where} failed: {detail}")
    return received


# --- on a cluster -----------------------------------------------------------------------------

@dataclasses.dataclass
class InstallOptions:
    """What `data prepare` passes on to `python -m job data-install`."""

    sha256: str | None = None
    allow_partial: bool = False
    force: bool = False
    expect_train: int | None = None
    expect_test: int | None = None

    def command(self, source: str, *, consume_source: bool = False, **kwargs: Any) -> list[str]:
        return install_command(source, sha256=self.sha256, allow_partial=self.allow_partial,
                               force=self.force, consume_source=consume_source,
                               expect_train=self.expect_train, expect_test=self.expect_test, **kwargs)


class DataClient:
    """The data commands on a cluster.

    Args:
        cluster: The API access (operator_client.cluster.Cluster).
        target: The data claim (and subPath), namespace and image.
        poll_interval: Seconds between looks while waiting for a pod.
        start_timeout: How long a pod may take to start (image pull, volume attach).
        on_progress: Status while waiting / uploading (a rewritten line on a terminal).
        on_output: The pods' own output lines (progress of the install, errors).
    """

    def __init__(self, cluster: Any, target: DataTarget, *, poll_interval: float = 2.0,
                 start_timeout: float = 600.0, on_progress: Callback = _quiet,
                 on_output: Callback = _quiet) -> None:
        self.cluster, self.target = cluster, target
        self.poll_interval, self.start_timeout = poll_interval, start_timeout
        self.on_progress, self.on_output = on_progress, on_output
        self.log_read_timeout = 300.0   # the data pods print progress every few seconds

    @property
    def namespace(self) -> str:
        return self.target.namespace

    def _name(self, task: str) -> str:
        return names.data_run_name(task)

    # ---- the verbs

    def prepare(self, source: str, *, from_url: bool, options: InstallOptions,
                source_pvc: str | None = None, consume_source: bool = False) -> list[dict[str, Any]]:
        """Run the install Job for a URL or a path on a claim; returns the findings."""
        if from_url:
            check_url(source)
        pod_source = source if from_url else source_path_in_pod(source, source_pvc=source_pvc)
        name = self._name("prepare")
        job = render_install_job(self.target, name, options.command(pod_source, consume_source=consume_source),
                                 source_pvc=source_pvc)
        self.cluster.create_batch_job(job)
        self.on_output(f"started Job {name} on {self.target.describe()} "
                       f"(kubectl -n {self.namespace} logs -f job/{name})")
        findings = self._run_to_end(name, job=True)
        write_record(self.cluster, self.target, findings)
        return findings

    def status(self, *, sample: int | None = None) -> list[dict[str, Any]]:
        """Run the status pod; returns its findings (also recorded on the volume's ConfigMap)."""
        name = self._name("status")
        self.cluster.create_pod(render_pod(self.target, name, "status", status_command(sample=sample)))
        try:
            findings = self._run_to_end(name, job=False)
        finally:
            self._delete_pod(name)
        write_record(self.cluster, self.target, findings)
        return findings

    def upload(self, path: Path, *, options: InstallOptions, prepare: bool = True,
               exec_timeout: float = 3600.0) -> list[dict[str, Any]]:
        """Stream a local archive or unpacked folder into /data/incoming/, then install it.

        A volume that is already prepared is left alone (unless `options.force`), before
        anything is sent.
        """
        path = Path(path)
        plan_upload(path)  # refuse links and odd files before a pod is started
        incoming = f"{names.DATA_MOUNT}/{names.INCOMING_SUBDIR}"
        name = self._name("upload")
        self.cluster.create_pod(render_pod(self.target, name, "upload", sleep_command()))
        try:
            self._wait_running(name)
            if prepare and not options.force:
                findings = self._exec_findings(name, status_command(sample=0))
                if any(f.get("finding") == "dataset" and f.get("state") == "prepared" for f in findings):
                    write_record(self.cluster, self.target, findings)
                    self.on_output(f"{names.DATA_DIR} on {self.target.describe()} is already prepared: "
                                   "nothing uploaded; --force uploads and installs again")
                    return findings
            received = self._exec_receive(name, path, path.name, incoming, {}, replace=True,
                                          what="upload", exec_timeout=exec_timeout)
        finally:
            self._delete_pod(name)
        self.on_output(format_finding(received))
        if not prepare:
            return [received]
        staged = f"{names.INCOMING_SUBDIR}/{path.name}"
        return [received, *self.prepare(staged, from_url=False, options=options, consume_source=True)]

    def put_checkpoint(self, file: Path, *, exec_timeout: float = 3600.0) -> dict[str, Any]:
        """Place `file` at names.DEFAULT_PRETRAINED_CKPT (checked by SHA-256 on arrival)."""
        file = Path(file)
        if not file.is_file():
            raise ClientError(f"checkpoint {file} is not a file")
        digest = sha256_file(file, self.on_progress)
        target_dir, base = _split(names.DEFAULT_PRETRAINED_CKPT)
        received = self._receive(file, base, target_dir, {base: digest}, replace=False,
                                 what="put-checkpoint", exec_timeout=exec_timeout)
        finding = {"finding": "checkpoint", "path": names.DEFAULT_PRETRAINED_CKPT, "present": True,
                   "bytes": file.stat().st_size, "sha256": digest}
        findings = [f for f in read_record(self.cluster, self.target) or []
                    if not (f.get("finding") == "checkpoint" and f.get("path") == finding["path"])]
        write_record(self.cluster, self.target, [*findings, finding])
        self.on_output(format_finding(received))
        return finding

    # ---- plumbing

    def _receive(self, path: Path, arcname: str, dest: str, sha256: dict[str, str], *,
                 replace: bool, what: str, exec_timeout: float) -> dict[str, Any]:
        """Start an upload pod, stream `path` into `data-receive` there, delete the pod."""
        name = self._name("upload")
        self.cluster.create_pod(render_pod(self.target, name, "upload", sleep_command()))
        try:
            self._wait_running(name)
            return self._exec_receive(name, path, arcname, dest, sha256, replace=replace, what=what,
                                      exec_timeout=exec_timeout)
        finally:
            self._delete_pod(name)

    def _exec_receive(self, pod: str, path: Path, arcname: str, dest: str, sha256: dict[str, str], *,
                      replace: bool, what: str, exec_timeout: float) -> dict[str, Any]:
        ws = self.cluster.exec_stream(self.namespace, pod, receive_command(dest, sha256, replace=replace),
                                      container=names.DATA_CONTAINER_NAME)
        session = ExecSession(ws)
        send_tar(path, arcname, session, on_progress=self.on_progress, what=what)
        return _receive_result(*session.finish(exec_timeout), f"pod {pod}")

    def _exec_findings(self, pod: str, command: list[str], timeout: float = 600.0) -> list[dict[str, Any]]:
        ws = self.cluster.exec_stream(self.namespace, pod, command, container=names.DATA_CONTAINER_NAME)
        code, out, err = ExecSession(ws).finish(timeout)
        if code != 0:
            errors = job_errors(err.splitlines())
            raise ClientError(f"{' '.join(command[:4])} in pod {pod} failed: "
                              f"{errors[-1] if errors else f'exit code {code}'}")
        return parse_findings(out.splitlines())

    def _delete_pod(self, name: str) -> None:
        try:
            self.cluster.delete_pod(self.namespace, name)
        except NotFound:
            pass
        except ClientError as e:  # the pod's own deadline removes it in the end
            log.warning("could not delete pod %s: %s", name, e)

    def _find_pod(self, name: str, job: bool) -> dict[str, Any] | None:
        if not job:
            try:
                return self.cluster.get_pod(self.namespace, name)
            except NotFound:
                return None
        pods = self.cluster.list_pods(self.namespace, f"{names.LABEL_DATA_RUN}={name}")
        pods = [p for p in pods if (p.get("metadata", {}).get("labels") or {}).get(names.LABEL_DATA_RUN) == name]
        pods.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
        return pods[-1] if pods else None

    def _job_failure(self, name: str) -> str | None:
        job = self.cluster.get_batch_job(self.namespace, name)
        for condition in (job.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "Failed" and condition.get("status") == "True":
                return f"{condition.get('reason') or 'Failed'}: {condition.get('message') or ''}".rstrip(": ")
        return None

    def _wait_started(self, name: str, *, job: bool, until: tuple[str, ...]) -> dict[str, Any]:
        """Wait until the run's pod reaches one of the phases `until`; report why it waits."""
        from .status import pod_status

        deadline = time.monotonic() + self.start_timeout
        while True:
            pod = self._find_pod(name, job)
            if pod is None:
                if job and (failure := self._job_failure(name)):
                    raise ClientError(f"Job {name} failed before its pod started: {failure}")
                waiting = "no pod yet"
            else:
                state = pod_status(pod, name)
                if state.phase in until or state.finished:
                    return pod
                waiting = state.reason or state.phase
            message = f"waiting for the {'pod of Job ' if job else 'pod '}{name} to start: {waiting}"
            self.on_progress(message)
            if time.monotonic() > deadline:
                raise WaitTimeout(f"timed out after {self.start_timeout:g}s - {message}; it is still "
                                  f"there: kubectl -n {self.namespace} describe "
                                  f"{'job' if job else 'pod'} {name}")
            time.sleep(self.poll_interval)

    def _wait_running(self, name: str) -> None:
        pod = self._wait_started(name, job=False, until=("Running",))
        phase = (pod.get("status") or {}).get("phase")
        if phase != "Running":
            raise ClientError(f"the upload pod {name} ended ({phase}) before the upload started")

    def _run_to_end(self, name: str, *, job: bool) -> list[dict[str, Any]]:
        """Follow the pod's log to its end, show its progress lines, return its findings.

        A broken log stream is opened again (lines already shown are skipped: a container's log
        only grows); the full log read at the end is the one the findings come from.
        """
        import urllib3

        from .cluster import iter_lines

        pod = self._wait_started(name, job=job, until=("Running",))
        pod_name = pod["metadata"]["name"]
        shown = 0
        while True:
            seen = 0
            try:
                for line in iter_lines(self.cluster.pod_log(self.namespace, pod_name, follow=True,
                                                            read_timeout=self.log_read_timeout)):
                    seen += 1
                    if seen > shown:
                        shown = seen
                        self._show(line)
            except (ClientError, urllib3.exceptions.HTTPError) as e:
                log.debug("log stream of %s broke: %s", pod_name, e)
            phase = self._phase(pod_name)
            if phase in ("Succeeded", "Failed"):
                break
            self.on_progress(f"pod {pod_name} is {phase}; reading its log again")
            time.sleep(self.poll_interval)
        lines = list(iter_lines(self.cluster.pod_log(self.namespace, pod_name)))
        for line in lines[shown:]:
            self._show(line)
        if phase != "Succeeded":
            errors = job_errors(lines)
            detail = errors[-1] if errors else f"its log: kubectl -n {self.namespace} logs {pod_name}"
            raise ClientError(f"{'Job ' + name if job else 'pod ' + name} failed: {detail}")
        return parse_findings(lines)

    def _show(self, line: str) -> None:
        if not line.startswith(FINDING_PREFIX):
            self.on_output(line)

    def _phase(self, pod_name: str) -> str:
        try:
            pod = self.cluster.get_pod(self.namespace, pod_name)
        except NotFound:
            raise ClientError(f"pod {pod_name} was deleted before it finished") from None
        return (pod.get("status") or {}).get("phase") or "Pending"


def _split(path: str) -> tuple[str, str]:
    folder, _, base = path.rpartition("/")
    return folder, base


# --- on a folder of this machine (--local DIR) ------------------------------------------------

class LocalData:
    """The same verbs on a folder that plays the data volume's root: the dataset goes to
    DIR/sop, the backbone to DIR/pretrained/resnet50.ckpt. Runs `python -m job ...` as child
    processes (this package never imports the job package)."""

    def __init__(self, root: Path, *, on_progress: Callback = _quiet, on_output: Callback = _quiet,
                 python: str = sys.executable) -> None:
        self.root = Path(root).expanduser().resolve()
        self.on_progress, self.on_output = on_progress, on_output
        self.python = (python, "-m", "job")

    @property
    def dataset(self) -> Path:
        return self.root / names.SOP_SUBDIR

    @property
    def pretrained(self) -> Path:
        return self.root / names.PRETRAINED_RELPATH

    def _run(self, command: list[str]) -> list[dict[str, Any]]:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   bufsize=1, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if not line.startswith(FINDING_PREFIX) and not line.startswith("error: "):
                self.on_output(line)
        code = process.wait()
        if code != 0:
            errors = job_errors(lines)
            raise ClientError(errors[-1] if errors else f"{' '.join(command[1:4])} failed (exit code {code})")
        return parse_findings(lines)

    def prepare(self, source: str, *, options: InstallOptions) -> list[dict[str, Any]]:
        self.root.mkdir(parents=True, exist_ok=True)
        return self._run(options.command(source, dest=str(self.dataset), pretrained=str(self.pretrained),
                                         python=self.python))

    def upload(self, path: Path, *, options: InstallOptions, prepare: bool = True) -> list[dict[str, Any]]:
        """Locally there is nothing to stream: install straight from the file or folder."""
        if not prepare:
            raise ClientError("--no-prepare has no meaning with --local: the data is already on "
                              "this machine; run `data prepare --local DIR --from-pvc-path PATH` later")
        return self.prepare(str(Path(path).resolve()), options=options)

    def status(self, *, sample: int | None = None) -> list[dict[str, Any]]:
        return self._run(status_command(root=str(self.dataset), pretrained=str(self.pretrained),
                                        sample=sample, python=self.python))

    def put_checkpoint(self, file: Path) -> dict[str, Any]:
        file = Path(file)
        if not file.is_file():
            raise ClientError(f"checkpoint {file} is not a file")
        digest = sha256_file(file, self.on_progress)
        folder = self.pretrained.parent
        session = ProcessSession(receive_command(str(folder), {self.pretrained.name: digest},
                                                 python=self.python))
        send_tar(file, self.pretrained.name, session, on_progress=self.on_progress, what="put-checkpoint")
        received = _receive_result(*session.finish(600.0), str(folder))
        self.on_output(format_finding(received))
        return {"finding": "checkpoint", "path": str(self.pretrained), "present": True,
                "bytes": file.stat().st_size, "sha256": digest}
