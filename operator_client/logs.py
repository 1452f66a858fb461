"""Logs of a job's rank pods, as generators of `LogLine` (never printed here).

`read_logs` returns what the pods have logged so far, pod by pod. `follow_logs` follows the job
from Pending to its end: it starts following each pod (each pod *incarnation*: a pod restarted
by Volcano under the same name is a new uid) as soon as its container has started, reconnects
when a stream breaks off, and drops the lines it has already yielded (by their timestamps), so
every line comes out exactly once. It stops when the job has finished (or was deleted) and
every pod's log has been read to its end.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from . import names
from .cluster import Cluster, iter_lines
from .errors import ClusterError, Forbidden, KubeconfigError, NotFound
from .status import pod_index, summarize

log = logging.getLogger(__name__)
_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d) ?(.*)$", re.S)
# Clock skew between this machine and the API server tolerated when reconnecting.
SINCE_SLACK_SECONDS = 10
# A finished pod whose log cannot be read (its node is gone, say) is given up after this many tries.
FINISHED_POD_ATTEMPTS = 3


@dataclasses.dataclass(frozen=True)
class LogLine:
    """One line of one rank pod's log."""

    pod: str
    rank: int | None    # the pod's server index (VC_TASK_INDEX)
    text: str

    def format(self, job: str) -> str:
        """`worker-0 | text`: the pod prefix in front of the launcher's own `[rank N]` prefixes."""
        return f"{names.pod_short_name(self.pod, job)} | {self.text}"


def split_timestamp(raw: str) -> tuple[tuple[int, int] | None, str]:
    """`2024-05-01T10:00:00.123456789Z text` -> ((epoch seconds, nanoseconds), text)."""
    match = _TIMESTAMP.match(raw)
    if not match:
        return None, raw
    base, fraction, zone, text = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    try:
        seconds = int(datetime.datetime.fromisoformat(base + zone).timestamp())
    except ValueError:
        return None, raw
    nanos = int((fraction or "0").ljust(9, "0"))
    return (seconds, nanos), text


class _Dedupe:
    """Remembers how far a pod's log has been yielded, across reconnections.

    With timestamps: lines older than the last one yielded are dropped, and of the lines
    sharing the last timestamp, as many as were already yielded. Without timestamps (a server
    that ignores `timestamps=true`) it counts lines and re-reads the whole log.
    """

    def __init__(self) -> None:
        self.last: tuple[int, int] | None = None
        self.at_last = 0          # lines yielded with timestamp == last
        self.seen_now = 0         # lines with timestamp == last in the current stream
        self.count = 0            # lines yielded in all
        self.index = 0            # lines seen in the current stream (no-timestamp mode)
        self.timestamps = True

    def restart(self) -> None:
        self.seen_now = 0
        self.index = 0

    def since_seconds(self, now: float) -> int | None:
        if self.last is None or not self.timestamps:
            return None
        return max(1, math.ceil(now - self.last[0]) + SINCE_SLACK_SECONDS)

    def accept(self, raw: str) -> str | None:
        """The line's text if it is new, else None."""
        stamp, text = split_timestamp(raw)
        self.index += 1
        if stamp is None:
            self.timestamps = False
            if self.index <= self.count:
                return None
            self.count += 1
            return text
        if self.last is not None and stamp < self.last:
            return None
        if stamp == self.last:
            self.seen_now += 1
            if self.seen_now <= self.at_last:
                return None
            self.at_last += 1
        else:
            self.last, self.at_last, self.seen_now = stamp, 1, 1
        self.count += 1
        return text


def read_logs(cluster: Cluster, namespace: str, job: str, *, rank: int | None = None,
              on_note: Callable[[str], None] | None = None) -> Iterator[LogLine]:
    """What every rank pod (or pod `rank`) has logged so far, pod after pod."""
    cluster.get_job(namespace, job)  # NotFound with a clear message when the job does not exist
    pods = sorted(cluster.list_pods(namespace, names.job_selector(job)),
                  key=lambda p: (pod_index(p, job) is None, pod_index(p, job) or 0))
    selected = [p for p in pods if rank is None or pod_index(p, job) == rank]
    if not selected and on_note:
        on_note(f"job {job} has no pod{'' if rank is None else f' of rank {rank}'} yet")
    for pod in selected:
        name = pod["metadata"]["name"]
        phase = (pod.get("status") or {}).get("phase") or "Pending"
        if phase == "Pending":
            if on_note:
                on_note(f"{names.pod_short_name(name, job)}: Pending, no log yet")
            continue
        try:
            response = cluster.pod_log(namespace, name)
        except NotFound:
            continue
        for text in iter_lines(response):
            yield LogLine(name, pod_index(pod, job), text)


@dataclasses.dataclass(frozen=True)
class _Done:
    key: str


@dataclasses.dataclass(frozen=True)
class _Failed:
    key: str
    error: BaseException


class _PodFollower(threading.Thread):
    """Follows one pod incarnation (name + uid) until its log has been read to the end."""

    def __init__(self, *, cluster: Cluster, namespace: str, job: str, pod: dict[str, Any],
                 key: str, out: queue.Queue[Any], stop: threading.Event,
                 job_finished: threading.Event, poll_interval: float, read_timeout: float) -> None:
        super().__init__(daemon=True, name=f"log-{pod['metadata']['name']}")
        self.cluster, self.namespace, self.job = cluster, namespace, job
        self.pod_name: str = pod["metadata"]["name"]
        self.uid: str | None = pod["metadata"].get("uid")
        self.rank = pod_index(pod, job)
        self.key, self.out, self.stop, self.job_finished = key, out, stop, job_finished
        self.poll_interval, self.read_timeout = poll_interval, read_timeout
        self.dedupe = _Dedupe()
        self.response: Any = None

    def run(self) -> None:
        try:
            self._follow()
        except BaseException as e:  # handed to the consumer, which raises it
            self.out.put(_Failed(self.key, e))
        else:
            self.out.put(_Done(self.key))

    def close(self) -> None:
        response = self.response
        if response is not None:
            try:
                response.close()
            except Exception:  # closing a stream another thread reads: best effort
                pass

    def _follow(self) -> None:
        import urllib3

        failures = 0
        while not self.stop.is_set():
            try:
                pod = self.cluster.get_pod(self.namespace, self.pod_name)
            except NotFound:
                return
            if self.uid and pod["metadata"].get("uid") not in (None, self.uid):
                return  # replaced by a new incarnation, which has its own follower
            phase = (pod.get("status") or {}).get("phase") or "Pending"
            if phase == "Pending":
                if self.job_finished.is_set():
                    return  # the job ended before this pod ever started
                self.stop.wait(self.poll_interval)
                continue
            finished = phase in ("Succeeded", "Failed")
            self.dedupe.restart()
            try:
                self.response = self.cluster.pod_log(
                    self.namespace, self.pod_name, follow=not finished, timestamps=True,
                    since_seconds=self.dedupe.since_seconds(time.time()),
                    read_timeout=self.read_timeout)
                for raw in iter_lines(self.response):
                    if self.stop.is_set():
                        return
                    text = self.dedupe.accept(raw)
                    if text is not None:
                        self.out.put(LogLine(self.pod_name, self.rank, text))
            except NotFound:
                return
            except (Forbidden, KubeconfigError):
                raise
            except (ClusterError, urllib3.exceptions.HTTPError, OSError) as e:
                log.debug("log stream of %s broke off: %s", self.pod_name, e)
                failures += 1
                if finished and failures >= FINISHED_POD_ATTEMPTS:
                    log.warning("giving up on the log of %s (finished): %s", self.pod_name, e)
                    return
                self.stop.wait(self.poll_interval)
                continue
            finally:
                self.response = None
            if finished:
                return  # a complete read of a finished container
            # The stream ended while the pod was running: it has just finished, or the
            # connection broke off. Look again (a finished pod gets one last complete read).
            self.stop.wait(self.poll_interval)


def _pod_key(pod: dict[str, Any]) -> str:
    meta = pod["metadata"]
    return meta.get("uid") or f"{meta['name']}@{meta.get('creationTimestamp', '')}"


def follow_logs(cluster: Cluster, namespace: str, job: str, *, rank: int | None = None,
                poll_interval: float = 2.0, read_timeout: float = 300.0,
                on_wait: Callable[[str], None] | None = None) -> Iterator[LogLine]:
    """Every rank pod's log (or pod `rank`'s) from the start until the job ends, each line once.

    Args:
        poll_interval: Seconds between looks at the job and its pods.
        read_timeout: Seconds a silent log stream stays open before it is reopened.
        on_wait: Called with a one-line status while no pod has started yet.
    """
    cluster.get_job(namespace, job)  # NotFound when there is no such job
    out: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    job_finished = threading.Event()
    followers: dict[str, _PodFollower] = {}
    done: set[str] = set()
    try:
        while True:
            try:
                job_obj: dict[str, Any] | None = cluster.get_job(namespace, job)
            except NotFound:
                job_obj = None
            pods = cluster.list_pods(namespace, names.job_selector(job))
            for pod in pods:
                key = _pod_key(pod)
                if key in followers or (rank is not None and pod_index(pod, job) != rank):
                    continue
                follower = _PodFollower(cluster=cluster, namespace=namespace, job=job, pod=pod,
                                        key=key, out=out, stop=stop, job_finished=job_finished,
                                        poll_interval=poll_interval, read_timeout=read_timeout)
                followers[key] = follower
                follower.start()
            if on_wait and job_obj is not None:
                status = summarize(job_obj, pods, cluster.list_podgroups(namespace)
                                   if not any(_started(p) for p in pods) else ())
                if not any(pod.started for pod in status.pods) and not status.finished:
                    on_wait(status.one_line())
            finished = job_obj is None or (
                (job_obj.get("status") or {}).get("state", {}).get("phase") in names.JOB_PHASES_TERMINAL)
            if finished:
                job_finished.set()
            deadline = time.monotonic() + poll_interval
            while True:
                remaining = deadline - time.monotonic()
                wait = remaining if remaining > 0 else 0
                if finished and set(followers) <= done:
                    wait = 0
                try:
                    item = out.get(timeout=wait) if wait > 0 else out.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, LogLine):
                    yield item
                elif isinstance(item, _Done):
                    done.add(item.key)
                elif isinstance(item, _Failed):
                    raise item.error
            if finished and set(followers) <= done:
                return
    finally:
        stop.set()
        for follower in followers.values():
            follower.close()


def _started(pod: dict[str, Any]) -> bool:
    return ((pod.get("status") or {}).get("phase") or "Pending") != "Pending"
