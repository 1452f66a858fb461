"""Verbs on jobs: submit, status, list, wait, fill the rank table, logs, cancel.

`JobClient` puts `render`, `rank_table`, `status` and `logs` together over a `Cluster`. Long
waits report progress through an `on_progress(str)` callback and honour a timeout and a poll
interval; nothing here prints.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from . import names, rank_table
from .cluster import Cluster
from .errors import AlreadyExists, ClientError, NotFound, RankTableError, WaitTimeout
from .logs import LogLine, follow_logs, read_logs
from .render import render
from .spec import JobSpec
from .status import JobStatus, devices_per_server, job_servers, pod_index, podgroup_of, podgroup_problem, summarize

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclasses.dataclass(frozen=True)
class RankTableReadiness:
    """Whether the pods of a job can give a rank table yet; if not, why not."""

    servers: tuple[rank_table.Server, ...] | None
    pod_uids: tuple[str, ...]
    waiting_for: str | None


def rank_table_sources(job: dict[str, Any], pods: Sequence[dict[str, Any]]) -> RankTableReadiness:
    """The servers of the rank table, in task-index order, once every pod is scheduled and annotated.

    Pods being deleted (an old incarnation during a restart) and finished pods are ignored.
    """
    name = job["metadata"]["name"]
    expected = job_servers(job)
    devices = devices_per_server(job)
    live: dict[int, dict[str, Any]] = {}
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase") or "Pending"
        index = pod_index(pod, name)
        if index is None or pod["metadata"].get("deletionTimestamp") or phase in ("Succeeded", "Failed"):
            continue
        live[index] = pod
    created = sum(1 for i in range(expected) if i in live)
    scheduled = sum(1 for i in range(expected) if i in live and live[i].get("spec", {}).get("nodeName"))
    annotated = sum(1 for i in range(expected) if i in live and names.ANNOTATION_ASCEND_CONFIGURATION
                    in (live[i]["metadata"].get("annotations") or {}))
    if not (created == scheduled == annotated == expected):
        return RankTableReadiness(None, (), (
            f"waiting for {expected} pod(s): {created} created, {scheduled} scheduled, "
            f"{annotated} annotated with their NPUs"))
    servers = []
    for index in range(expected):
        pod = live[index]
        server = rank_table.server_from_annotation(
            pod["metadata"]["annotations"][names.ANNOTATION_ASCEND_CONFIGURATION],
            pod=pod["metadata"]["name"])
        if devices is not None and len(server.devices) != devices:
            raise RankTableError(
                f"pod {pod['metadata']['name']} was given {len(server.devices)} NPUs by the device "
                f"plugin, but the job asks for {devices} per server")
        servers.append(server)
    uids = tuple(_pod_uid(live[i]) for i in range(expected))
    return RankTableReadiness(tuple(servers), uids, None)


class JobClient:
    """Submit and manage training jobs in one namespace.

    Args:
        cluster: The API access (`Cluster.connect(kubeconfig, context)`).
        namespace: Namespace of the jobs.
        poll_interval: Seconds between looks at the cluster while waiting.
    """

    def __init__(self, cluster: Cluster, namespace: str = names.DEFAULT_NAMESPACE, *,
                 poll_interval: float = 2.0) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.poll_interval = poll_interval

    # --- submit -------------------------------------------------------------------------

    def submit(self, spec: JobSpec, *, fill: bool = True, fill_timeout: float | None = 900.0,
               on_progress: Progress = _quiet) -> dict[str, Any] | None:
        """Create the job (and its rank-table ConfigMap); fill the table unless `fill` is False.

        Returns:
            The rank table written, or None when it was not filled here.
        """
        if spec.name is None:
            raise ValueError("submit needs a named spec: use spec.with_name()")
        self.cluster.require_volcano()
        manifests = render(spec)
        job_manifest = manifests[-1]
        created = self.cluster.create_job(job_manifest)
        log.info("created job %s/%s", spec.namespace, spec.name)
        if spec.uses_rank_table:
            configmap = manifests[0]
            uid = (created or {}).get("metadata", {}).get("uid")
            if uid:  # deleting the job deletes its rank table too
                configmap["metadata"]["ownerReferences"] = [{
                    "apiVersion": names.VOLCANO_API_VERSION, "kind": names.VOLCANO_JOB_KIND,
                    "name": spec.name, "uid": uid}]
            try:
                self.cluster.create_configmap(configmap)
            except AlreadyExists:  # left over from an earlier job of the same name
                self.cluster.patch_configmap(spec.namespace, configmap["metadata"]["name"], {
                    "metadata": {"ownerReferences": configmap["metadata"].get("ownerReferences"),
                                 "annotations": {names.ANNOTATION_RANK_TABLE_PODS: None}},
                    "data": configmap["data"]})
            if fill:
                return self.fill_rank_table(spec.name, timeout=fill_timeout, on_progress=on_progress)
        return None

    # --- rank table ---------------------------------------------------------------------

    def fill_rank_table(self, name: str, *, timeout: float | None = 900.0, watch: bool = False,
                        on_progress: Progress = _quiet) -> dict[str, Any]:
        """Wait until every pod is scheduled and annotated, then write the table to the ConfigMap.

        With `watch`, keep going until the job ends: when Volcano restarts the job (new pods,
        maybe on other servers), reset the table to "initializing" and fill it again.

        Returns:
            The last table written.
        Raises:
            WaitTimeout: The pods were not ready within `timeout` seconds (the message says why).
        """
        job = self.cluster.get_job(self.namespace, name)
        if (job["metadata"].get("annotations") or {}).get(names.ANNOTATION_LAUNCH) == "dynamic":
            raise ClientError(f"job {name} uses --launch dynamic: it has no rank table to fill")
        cm_name = names.rank_table_configmap(name)
        try:
            configmap = self.cluster.get_configmap(self.namespace, cm_name)
        except NotFound:
            raise ClientError(
                f"job {name} has no rank-table ConfigMap {cm_name} in namespace {self.namespace!r}; "
                "was it submitted by an older client or with --launch dynamic?") from None
        filled_for = _recorded_pods(configmap)
        written: dict[str, Any] | None = None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                job = self.cluster.get_job(self.namespace, name)
            except NotFound:
                if written is not None:
                    return written
                raise
            pods = self.cluster.list_pods(self.namespace, names.job_selector(name))
            status = summarize(job, pods)
            if status.finished:
                if written is not None:
                    return written
                raise ClientError(f"job {name} has already ended ({status.phase}); "
                                  "there is no rank table to fill")
            ready = rank_table_sources(job, pods)
            present = {_pod_uid(p) for p in pods if not p["metadata"].get("deletionTimestamp")}
            if filled_for and not set(filled_for) <= present:
                # The pods the table describes are gone: Volcano restarted the job.
                self._write_table(cm_name, rank_table.initializing(), ())
                filled_for = ()
                on_progress("pods replaced (job restart): rank table reset to initializing")
            if ready.servers is not None:
                if ready.pod_uids != filled_for:
                    written = rank_table.build(ready.servers)
                    self._write_table(cm_name, written, ready.pod_uids)
                    filled_for = ready.pod_uids
                    on_progress(f"rank table written: {len(ready.servers)} server(s), "
                                f"{rank_table.rank_size(written)} ranks")
                    if not watch:
                        return written
                elif written is None:  # already filled for these very pods
                    written = rank_table.parse_table(
                        (configmap.get("data") or {}).get(names.RANK_TABLE_KEY, ""))
                    if not watch:
                        return written
                deadline = None  # from now on we only keep the table in step with restarts
            elif not filled_for:
                gang = podgroup_problem(podgroup_of(job, self.cluster.list_podgroups(self.namespace)))
                reason = f"gang not schedulable: {gang}" if gang else status.reason
                message = f"{name}: {ready.waiting_for}" + (f" - {reason}" if reason else "")
                on_progress(message)
                if deadline is not None and time.monotonic() > deadline:
                    raise WaitTimeout(f"timed out after {timeout:g}s: {message}")
            time.sleep(self.poll_interval)

    def _write_table(self, cm_name: str, table: dict[str, Any], pod_uids: tuple[str, ...]) -> None:
        self.cluster.patch_configmap(self.namespace, cm_name, {
            "metadata": {"annotations": {names.ANNOTATION_RANK_TABLE_PODS: ",".join(pod_uids) or None}},
            "data": {names.RANK_TABLE_KEY: rank_table.dumps(table)},
        })

    # --- looking at jobs ------------------------------------------------------------------

    def status(self, name: str) -> JobStatus:
        job = self.cluster.get_job(self.namespace, name)
        pods = self.cluster.list_pods(self.namespace, names.job_selector(name))
        return summarize(job, pods, self.cluster.list_podgroups(self.namespace))

    def list(self, *, all_jobs: bool = False) -> list[JobStatus]:
        """The namespace's jobs (ours only unless `all_jobs`), oldest first."""
        jobs = self.cluster.list_jobs(self.namespace, None if all_jobs else names.OUR_JOBS_SELECTOR)
        jobs.sort(key=lambda j: (j["metadata"].get("creationTimestamp") or "", j["metadata"]["name"]))
        return [summarize(job, ()) for job in jobs]

    def latest_job(self) -> str:
        """Name of the newest job this client submitted in the namespace."""
        jobs = self.list()
        if not jobs:
            raise ClientError(
                f"no jobs submitted with operator_client in namespace {self.namespace!r}; "
                "pass a job name (or --namespace)")
        return jobs[-1].name

    def wait(self, name: str, *, timeout: float | None = None,
             on_progress: Progress = _quiet) -> JobStatus:
        """Block until the job is Completed, Failed, Aborted or Terminated; return its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = False
        while True:
            try:
                status = self.status(name)
            except NotFound:
                if seen:
                    raise ClientError(f"job {name} was deleted while waiting for it") from None
                raise
            seen = True
            on_progress(status.one_line())
            if status.finished:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeout(f"timed out after {timeout:g}s: {status.one_line()}")
            time.sleep(self.poll_interval)

    def logs(self, name: str, *, follow: bool = False, rank: int | None = None,
             on_progress: Progress = _quiet, read_timeout: float = 300.0) -> Iterator[LogLine]:
        if follow:
            return follow_logs(self.cluster, self.namespace, name, rank=rank,
                               poll_interval=self.poll_interval, read_timeout=read_timeout,
                               on_wait=on_progress)
        return read_logs(self.cluster, self.namespace, name, rank=rank, on_note=on_progress)

    def cancel(self, name: str) -> None:
        """Delete the job (Volcano deletes its pods) and its rank-table ConfigMap."""
        self.cluster.get_job(self.namespace, name)
        self.cluster.delete_job(self.namespace, name)
        try:
            self.cluster.delete_configmap(self.namespace, names.rank_table_configmap(name))
        except NotFound:
            pass


def _pod_uid(pod: dict[str, Any]) -> str:
    return str(pod["metadata"].get("uid") or pod["metadata"]["name"])


def _recorded_pods(configmap: dict[str, Any]) -> tuple[str, ...]:
    """The pod uids the ConfigMap's table was built from (empty unless status is completed)."""
    table = rank_table.parse_table((configmap.get("data") or {}).get(names.RANK_TABLE_KEY, ""))
    if table.get("status") != rank_table.STATUS_COMPLETED:
        return ()
    value = (configmap["metadata"].get("annotations") or {}).get(names.ANNOTATION_RANK_TABLE_PODS)
    return tuple(value.split(",")) if value else ()
