"""Logs: every rank pod, pod-prefixed; --follow from Pending to the end, each line exactly once."""
from __future__ import annotations

import pytest

from operator_client.client import JobClient
from operator_client.cluster import Cluster
from operator_client.logs import LogLine, _Dedupe, split_timestamp

from .conftest import NAMESPACE, eventually
from .test_client import start_pods, submit


def test_split_timestamp():
    assert split_timestamp("2025-06-12T15:30:05.123456789Z [rank 3] epoch 1") == \
        ((1749742205, 123456789), "[rank 3] epoch 1")
    assert split_timestamp("2025-06-12T15:30:05.5Z x")[0] == (1749742205, 500000000)
    assert split_timestamp("2025-06-12T17:30:05+02:00 y") == ((1749742205, 0), "y")
    assert split_timestamp("no stamp here") == (None, "no stamp here")


def test_dedupe_drops_what_a_reconnection_repeats():
    first = ["2025-01-01T00:00:01.000000001Z a", "2025-01-01T00:00:02.000000000Z b",
             "2025-01-01T00:00:02.000000000Z c"]
    again = first[1:] + ["2025-01-01T00:00:02.000000000Z d", "2025-01-01T00:00:03.000000000Z e"]
    dedupe = _Dedupe()
    assert [dedupe.accept(line) for line in first] == ["a", "b", "c"]
    dedupe.restart()
    assert [dedupe.accept(line) for line in again] == [None, None, "d", "e"]


def test_dedupe_without_timestamps_counts_lines():
    dedupe = _Dedupe()
    assert [dedupe.accept(x) for x in ("a", "b")] == ["a", "b"]
    dedupe.restart()
    assert [dedupe.accept(x) for x in ("a", "b", "c")] == [None, None, "c"]
    assert dedupe.since_seconds(0.0) is None  # re-read from the start


def test_logs_prints_every_pod_prefixed_and_one_rank(run, cluster):
    submit(run, cluster, "lg", "--servers", "3")
    pods = start_pods(cluster, "lg", hosts=["10.0.0.1", "10.0.0.2", "10.0.0.3"],
                      device_ips=[[f"192.168.{d}.{s}" for d in range(8)] for s in range(3)])
    for index, pod in enumerate(pods[:2]):
        cluster.player.run_pod(pod)
        cluster.server.log(NAMESPACE, pod, f"[rank {8 * index}] step 1", f"[rank {8 * index}] step 2")
    result = run("logs", "lg", *cluster.args())
    assert result.code == 0, result.err
    assert result.out.splitlines() == ["worker-0 | [rank 0] step 1", "worker-0 | [rank 0] step 2",
                                       "worker-1 | [rank 8] step 1", "worker-1 | [rank 8] step 2"]
    assert "worker-2: Pending, no log yet" in result.err
    one = run("logs", "lg", "--rank", "1", *cluster.args())
    assert one.out.splitlines() == ["worker-1 | [rank 8] step 1", "worker-1 | [rank 8] step 2"]


def test_follow_from_pending_to_the_end_without_duplicates(run, cluster, background):
    """Two pods start late, one log stream breaks off mid-way; every line arrives exactly once."""
    submit(run, cluster, "fl", "--servers", "2")
    pods = start_pods(cluster, "fl")
    client = JobClient(Cluster.connect(str(cluster.kubeconfig)), NAMESPACE, poll_interval=0.02)
    waiting: list[str] = []
    lines: list[LogLine] = []

    def follow() -> None:
        for line in client.logs("fl", follow=True, on_progress=waiting.append, read_timeout=5):
            lines.append(line)

    future = background(follow)
    eventually(lambda: waiting)  # the pods are Pending: it waits and says so
    assert waiting[0] == "fl: Pending, 0/2 pods running, retries 0/3"

    cluster.server.drop_after[(NAMESPACE, pods[0])] = 2  # the first stream of worker-0 breaks after 2 lines
    cluster.player.run_pod(pods[0])
    cluster.server.log(NAMESPACE, pods[0], "w0 line 1", "w0 line 2", "w0 line 3")
    eventually(lambda: len(lines) == 3)
    cluster.player.run_pod(pods[1])
    cluster.server.log(NAMESPACE, pods[1], "w1 line 1")
    cluster.server.log(NAMESPACE, pods[0], "w0 line 4")
    eventually(lambda: len(lines) == 5)
    cluster.server.log(NAMESPACE, pods[1], "w1 line 2")
    cluster.player.finish_pod(pods[0])
    cluster.player.finish_pod(pods[1])
    cluster.player.job_state("fl", "Completed")
    future.result(timeout=20)  # follow ends by itself once the job is done

    by_pod = {pod: [line.text for line in lines if line.pod == pod] for pod in pods}
    assert by_pod == {pods[0]: ["w0 line 1", "w0 line 2", "w0 line 3", "w0 line 4"],
                      pods[1]: ["w1 line 1", "w1 line 2"]}
    assert [line.rank for line in lines if line.pod == pods[1]] == [1, 1]
    reconnects = [r for r in cluster.server.log_requests if r["pod"] == pods[0] and r.get("follow") == "true"]
    assert len(reconnects) >= 2 and "sinceSeconds" in reconnects[1]  # it did reconnect, from a point in time


def test_follow_picks_up_the_pods_of_a_restarted_job(run, cluster, background):
    submit(run, cluster, "again")
    (pod,) = start_pods(cluster, "again", run=True)
    cluster.server.log(NAMESPACE, pod, "attempt 1")
    seen = []
    future = background(lambda: [seen.append(line.format("again"))
                                 for line in JobClient(Cluster.connect(str(cluster.kubeconfig)), NAMESPACE,
                                                       poll_interval=0.02).logs("again", follow=True)])
    eventually(lambda: seen == ["worker-0 | attempt 1"])
    cluster.player.finish_pod(pod, exit_code=1)
    cluster.player.job_state("again", "Restarting", retry_count=1)
    cluster.player.delete_pod(pod)
    with cluster.server.log_lock:
        cluster.server.logs.pop((NAMESPACE, pod))  # the new incarnation starts with an empty log
    (pod,) = start_pods(cluster, "again", run=True)
    cluster.server.log(NAMESPACE, pod, "attempt 2")
    eventually(lambda: len(seen) == 2)
    cluster.player.finish_pod(pod)
    cluster.player.job_state("again", "Completed", retry_count=1)
    future.result(timeout=20)
    assert seen == ["worker-0 | attempt 1", "worker-0 | attempt 2"]


def test_follow_cli_prints_prefixed_lines_until_the_job_ends(run, cluster, background):
    submit(run, cluster, "cli")
    (pod,) = start_pods(cluster, "cli", run=True)
    cluster.server.log(NAMESPACE, pod, "[rank 0] epoch 1 loss 0.3", "[rank 0] done")
    cluster.player.finish_pod(pod)
    cluster.player.job_state("cli", "Completed")
    result = background(run, "logs", "cli", "--follow", *cluster.args()).result(timeout=20)
    assert result.code == 0, result.err
    assert result.out == "worker-0 | [rank 0] epoch 1 loss 0.3\nworker-0 | [rank 0] done\n"


@pytest.mark.parametrize("follow", [False, True], ids=["read", "follow"])
def test_logs_of_an_unknown_job(run, cluster, follow):
    result = run("logs", "nope", *(["--follow"] if follow else []), *cluster.args())
    assert (result.code, result.err) == (2, "error: jobs.batch.volcano.sh 'nope' not found in namespace 'ml'\n")


def test_follow_ends_when_a_finished_pods_log_is_unreachable(run, cluster, background, caplog):
    submit(run, cluster, "lost", "--servers", "2")
    pods = start_pods(cluster, "lost", run=True)
    cluster.server.log(NAMESPACE, pods[0], "still here")
    cluster.server.unreachable_logs.add((NAMESPACE, pods[1]))
    for pod in pods:
        cluster.player.finish_pod(pod)
    cluster.player.job_state("lost", "Completed")
    client = JobClient(Cluster.connect(str(cluster.kubeconfig)), NAMESPACE, poll_interval=0.02)
    lines = background(lambda: [line.format("lost") for line in client.logs("lost", follow=True)])
    assert lines.result(timeout=20) == ["worker-0 | still here"]
    assert "giving up on the log of lost-worker-1 (finished)" in caplog.text
