"""What state a job is in, and why: pure functions over the job, its pods and its PodGroup.

`summarize` turns the raw objects into a `JobStatus` (phase, pods, restarts, retry count) and
works out the reason a job is stuck: an unschedulable gang, a pod that cannot be scheduled, an
image that cannot be pulled, a container that failed.
"""
from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from typing import Any

from . import names

_WAITING_PROBLEMS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff",
                     "CreateContainerConfigError", "CreateContainerError", "RunContainerError")


@dataclasses.dataclass(frozen=True)
class PodStatus:
    """One rank pod."""

    name: str
    index: int | None       # server index (VC_TASK_INDEX)
    phase: str
    node: str | None
    restarts: int
    annotated: bool         # the device plugin annotated it with its NPUs
    reason: str | None      # why it is not running as expected

    @property
    def started(self) -> bool:
        """Its container has produced (or can produce) logs."""
        return self.phase in ("Running", "Succeeded", "Failed")

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


@dataclasses.dataclass(frozen=True)
class JobStatus:
    """A Volcano job as the user sees it."""

    name: str
    namespace: str
    phase: str
    servers: int
    devices_per_server: int | None
    retry_count: int
    max_retry: int
    pods: tuple[PodStatus, ...]
    reason: str | None
    created: str | None
    loss: str | None = None

    @property
    def finished(self) -> bool:
        return self.phase in names.JOB_PHASES_TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.phase == names.JOB_PHASE_SUCCEEDED

    @property
    def restarts(self) -> int:
        return sum(pod.restarts for pod in self.pods)

    def one_line(self) -> str:
        """`Running: 2/2 pods running, retries 0/3` (+ the reason when there is one)."""
        running = sum(pod.phase == "Running" for pod in self.pods)
        text = (f"{self.name}: {self.phase}, {running}/{self.servers} pods running, "
                f"retries {self.retry_count}/{self.max_retry}")
        return f"{text} - {self.reason}" if self.reason else text


def pod_index(pod: dict[str, Any], job: str) -> int | None:
    """Server index of a rank pod: Volcano's task-index label, else its name `<job>-worker-<i>`."""
    labels = pod.get("metadata", {}).get("labels") or {}
    value = labels.get(names.LABEL_VOLCANO_TASK_INDEX)
    if value is None:
        name = pod.get("metadata", {}).get("name", "")
        prefix = f"{job}-{names.TASK_NAME}-"
        value = name[len(prefix):] if name.startswith(prefix) else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def pod_status(pod: dict[str, Any], job: str) -> PodStatus:
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {}) or {}
    containers = status.get("containerStatuses") or []
    return PodStatus(
        name=meta.get("name", "?"),
        index=pod_index(pod, job),
        phase=status.get("phase") or "Pending",
        node=spec.get("nodeName"),
        restarts=sum(int(c.get("restartCount") or 0) for c in containers),
        annotated=names.ANNOTATION_ASCEND_CONFIGURATION in (meta.get("annotations") or {}),
        reason=_pod_problem(pod),
    )


def _pod_problem(pod: dict[str, Any]) -> str | None:
    status = pod.get("status", {}) or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f"{condition.get('reason') or 'Unschedulable'}: {condition.get('message') or ''}".rstrip(": ")
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in _WAITING_PROBLEMS:
            return f"{waiting['reason']}: {waiting.get('message') or ''}".rstrip(": ")
        terminated = state.get("terminated") or {}
        if terminated and terminated.get("exitCode", 0) != 0:
            detail = terminated.get("message") or terminated.get("reason") or ""
            return f"exited with code {terminated.get('exitCode')} {detail}".rstrip()
    if status.get("phase") == "Failed":
        return status.get("message") or status.get("reason") or "pod failed"
    return None


def podgroup_of(job: dict[str, Any], podgroups: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The job's PodGroup: owned by the job, or named `<job>` / `<job>-<uid>`."""
    meta = job.get("metadata", {})
    name, uid = meta.get("name"), meta.get("uid")
    for group in podgroups:
        gmeta = group.get("metadata", {})
        for owner in gmeta.get("ownerReferences") or []:
            if owner.get("kind") == names.VOLCANO_JOB_KIND and (
                    (uid and owner.get("uid") == uid) or owner.get("name") == name):
                return group
    for group in podgroups:
        if group.get("metadata", {}).get("name") in (name, f"{name}-{uid}"):
            return group
    return None


def podgroup_problem(group: dict[str, Any] | None) -> str | None:
    """The gang-scheduling failure reported on the PodGroup, e.g. `2/2 tasks in gang unschedulable`."""
    if group is None:
        return None
    for condition in (group.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Unschedulable" and condition.get("status") == "True":
            return condition.get("message") or condition.get("reason") or "gang unschedulable"
    return None


def devices_per_server(job: dict[str, Any]) -> int | None:
    """NPUs each rank pod of the job asks for (its Ascend resource limit)."""
    try:
        container = job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]
        return int(container["resources"]["limits"][names.ASCEND_RESOURCE])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def job_servers(job: dict[str, Any]) -> int:
    return sum(int(task.get("replicas") or 0) for task in job.get("spec", {}).get("tasks") or [])


def summarize(job: dict[str, Any], pods: Sequence[dict[str, Any]],
              podgroups: Sequence[dict[str, Any]] = ()) -> JobStatus:
    """The job's status, with the reason it is stuck or failed when there is one."""
    meta, spec, status = job.get("metadata", {}), job.get("spec", {}), job.get("status") or {}
    name = meta.get("name", "?")
    state = status.get("state") or {}
    phase = state.get("phase") or "Pending"
    pod_states = tuple(sorted((pod_status(p, name) for p in pods),
                              key=lambda p: (p.index is None, p.index or 0, p.name)))
    return JobStatus(
        name=name,
        namespace=meta.get("namespace", ""),
        phase=phase,
        servers=job_servers(job),
        devices_per_server=devices_per_server(job),
        retry_count=int(status.get("retryCount") or 0),
        max_retry=int(spec.get("maxRetry", 3)),
        pods=pod_states,
        reason=_job_reason(phase, state, pod_states, podgroup_of(job, podgroups)),
        created=meta.get("creationTimestamp"),
        loss=(meta.get("labels") or {}).get(names.LABEL_LOSS),
    )


def _job_reason(phase: str, state: dict[str, Any], pods: Sequence[PodStatus],
                group: dict[str, Any] | None) -> str | None:
    if phase == names.JOB_PHASE_SUCCEEDED:
        return None
    pod_reasons = [f"{p.name}: {p.reason}" for p in pods if p.reason]
    if phase in ("Pending", "Inqueue"):
        gang = podgroup_problem(group)
        if gang:
            return f"gang not schedulable: {gang}"
        if pod_reasons:
            return pod_reasons[0]
    elif pod_reasons:
        return pod_reasons[0]
    message = state.get("message") or state.get("reason")
    return str(message) if message else None


def age(timestamp: str | None, now: datetime.datetime | None = None) -> str:
    """`5m`, `2h`, `3d` since an RFC 3339 timestamp; `?` when unknown."""
    if not timestamp:
        return "?"
    try:
        then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "?"
    now = now or datetime.datetime.now(datetime.timezone.utc)
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
