"""summarize(job, pods, podgroups): phase, pods, restarts and the reason a job is stuck."""
from __future__ import annotations

import datetime

import pytest

from operator_client.render import render
from operator_client.spec import JobSpec
from operator_client.status import age, summarize


def job(phase=None, retry=0, servers=2, message=None):
    manifest = render(JobSpec(loss="triplet", name="j", servers=servers))[-1]
    manifest["metadata"]["uid"] = "uid-j"
    if phase:
        manifest["status"] = {"state": {"phase": phase, **({"message": message} if message else {})},
                              "retryCount": retry}
    return manifest


def pod(index, phase="Pending", *, node=None, restarts=0, conditions=(), waiting=None, terminated=None):
    state = {"waiting": waiting} if waiting else {"terminated": terminated} if terminated else {}
    return {"metadata": {"name": f"j-worker-{index}", "labels": {"volcano.sh/task-index": str(index)}},
            "spec": {"nodeName": node} if node else {},
            "status": {"phase": phase, "conditions": list(conditions),
                       "containerStatuses": [{"name": "worker", "restartCount": restarts, "state": state}]}}


def podgroup(message):
    return {"metadata": {"name": "j-uid-j", "ownerReferences": [{"kind": "Job", "name": "j", "uid": "uid-j"}]},
            "status": {"conditions": [{"type": "Unschedulable", "status": "True", "message": message}]}}


CASES = {
    "gang-unschedulable": (
        job("Pending"), [pod(0), pod(1)],
        [podgroup("2/2 tasks in gang unschedulable: pod group is not ready, 2 Pending, 2 minAvailable")],
        "Pending", "gang not schedulable: 2/2 tasks in gang unschedulable"),
    "pod-unschedulable": (
        job("Pending"), [pod(0, conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                             "message": "0/4 nodes are available: 4 Insufficient huawei.com/Ascend910."}])],
        [], "Pending", "j-worker-0: Unschedulable: 0/4 nodes are available: 4 Insufficient huawei.com/Ascend910."),
    "image-pull": (
        job("Pending"), [pod(0, node="n1", waiting={"reason": "ImagePullBackOff", "message": "Back-off pulling image"})],
        [], "Pending", "j-worker-0: ImagePullBackOff: Back-off pulling image"),
    "failed-rank": (
        job("Failed", retry=3, message="job failed: reached maxRetry"),
        [pod(0, "Failed", node="n1", terminated={"exitCode": 1, "reason": "Error"}), pod(1, "Succeeded", node="n2")],
        [], "Failed", "j-worker-0: exited with code 1 Error"),
    "failed-no-pods": (job("Aborted", message="aborted by user"), [], [], "Aborted", "aborted by user"),
    "completed": (job("Completed"), [pod(0, "Succeeded", node="n1"), pod(1, "Succeeded", node="n2")], [],
                  "Completed", None),
    "running": (job("Running"), [pod(0, "Running", node="n1"), pod(1, "Running", node="n2")], [], "Running", None),
    "no-status-yet": (job(), [], [], "Pending", None),
}


@pytest.mark.parametrize("job_obj, pods, groups, phase, reason", CASES.values(), ids=CASES.keys())
def test_phase_and_reason(job_obj, pods, groups, phase, reason):
    status = summarize(job_obj, pods, groups)
    assert status.phase == phase
    if reason is None:
        assert status.reason is None
    else:
        assert status.reason is not None and status.reason.startswith(reason)
    assert status.finished == (phase in ("Completed", "Failed", "Aborted", "Terminated"))
    assert status.succeeded == (phase == "Completed")


def test_counts_pods_restarts_and_retries_in_server_order():
    pods = [pod(i, "Running", node=f"n{i}", restarts=i % 3) for i in (10, 2, 0, 1)]
    status = summarize(job("Restarting", retry=2, servers=11), pods)
    assert [p.index for p in status.pods] == [0, 1, 2, 10]
    assert status.restarts == 0 + 1 + 2 + 1
    assert (status.retry_count, status.max_retry, status.servers, status.devices_per_server) == (2, 3, 11, 8)
    assert status.one_line() == "j: Restarting, 4/11 pods running, retries 2/3"
    assert status.loss == "triplet"


def test_age():
    now = datetime.datetime(2025, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)
    assert age("2025-01-01T11:59:30Z", now) == "30s"
    assert age("2025-01-01T11:00:00Z", now) == "1h"
    assert age("2024-12-29T12:00:00Z", now) == "3d"
    assert age(None, now) == "?" and age("yesterday", now) == "?"
