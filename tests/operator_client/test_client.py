"""Integration: the CLI and JobClient against the emulated API server, with the test playing
Volcano's controller and the Ascend device plugin."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from operator_client import names
from operator_client.client import JobClient
from operator_client.cluster import Cluster
from operator_client.render import manifests_dir, render
from operator_client.spec import JobSpec

from .conftest import NAMESPACE, eventually
from .emulator import PODS

EXPECTED_2X8 = json.loads((Path(__file__).parent / "data" / "rank_table_2x8.json").read_text())
HOSTS = ["10.0.0.11", "10.0.0.12"]
DEVICE_IPS = [[f"192.168.{100 + d % 4}.{10 * (s + 1) + 1 + d // 4}" for d in range(8)] for s in range(2)]


def job_client(cluster, poll=0.02) -> JobClient:
    return JobClient(Cluster.connect(str(cluster.kubeconfig)), NAMESPACE, poll_interval=poll)


def submit(run, cluster, name, *extra):
    result = run("submit", "--loss", "triplet", "--name", name, "--no-fill", *extra, *cluster.args())
    assert result.code == 0, result.err
    return result


def start_pods(cluster, job, hosts=HOSTS, device_ips=DEVICE_IPS, *, run=False):
    """Volcano creates the pods; the scheduler places them; the device plugin annotates them."""
    pods = cluster.player.create_pods(job)
    for index, pod in enumerate(pods):
        cluster.player.schedule(pod, f"node-{index}", hosts[index])
        cluster.player.annotate(pod, hosts[index], device_ips[index])
        if run:
            cluster.player.run_pod(pod)
    return pods


def configmap(cluster, job):
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    return json.loads(api.read_namespaced_config_map(names.rank_table_configmap(job), NAMESPACE,
                                                      _preload_content=False).data)


def table_of(cluster, job):
    return json.loads(configmap(cluster, job)["data"]["hccl.json"])


def test_submit_creates_the_job_and_its_configmap(run, cluster):
    result = submit(run, cluster, "exp1", "--servers", "2", "--queue", "research", "--set", "epochs=3")
    assert result.out == "exp1\n"
    assert "submitted job exp1 to namespace ml: 2 server(s) x 8 NPUs, queue research" in result.err
    stored = cluster.player.job("exp1")
    configmap_manifest, job_manifest = render(JobSpec(loss="triplet", name="exp1", servers=2, namespace=NAMESPACE,
                                                      queue="research", overrides=["epochs=3"]))
    assert stored["spec"] == job_manifest["spec"]
    assert stored["metadata"]["labels"] == job_manifest["metadata"]["labels"]
    cm = configmap(cluster, "exp1")
    assert cm["data"] == {"hccl.json": '{"status":"initializing"}'}
    assert cm["metadata"]["labels"]["ring-controller.atlas"] == "ascend-910"
    assert cm["metadata"]["ownerReferences"] == [{"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
                                                  "name": "exp1", "uid": stored["metadata"]["uid"]}]


def test_submit_fills_the_rank_table_once_the_pods_are_annotated(run, cluster, background):
    future = background(run, "submit", "--loss", "triplet", "--name", "exp2", "--servers", "2",
                        "--fill-timeout", "20", *cluster.args())
    eventually(lambda: cluster.player.job("exp2"))
    pods = start_pods(cluster, "exp2")
    result = future.result(timeout=30)
    assert result.code == 0, result.err
    assert result.out == "exp2\n"
    assert "rank table written: 2 server(s), 16 ranks" in result.err
    assert table_of(cluster, "exp2") == EXPECTED_2X8
    uids = [cluster.server.objects[PODS, NAMESPACE, pod]["metadata"]["uid"] for pod in pods]
    assert configmap(cluster, "exp2")["metadata"]["annotations"][names.ANNOTATION_RANK_TABLE_PODS] == ",".join(uids)


def test_fill_reports_an_unschedulable_gang_then_fills(run, cluster, background):
    submit(run, cluster, "gang", "--servers", "2")
    cluster.player.podgroup("gang", unschedulable="2/2 tasks in gang unschedulable: pod group is not ready, "
                                                  "2 Pending, 2 minAvailable; Pending: 2 Unschedulable")
    progress: list[str] = []
    future = background(job_client(cluster).fill_rank_table, "gang", timeout=20, on_progress=progress.append)
    eventually(lambda: any("2/2 tasks in gang unschedulable" in p for p in progress))
    assert progress[0].startswith("gang: waiting for 2 pod(s): 0 created, 0 scheduled, 0 annotated "
                                  "with their NPUs - gang not schedulable: 2/2 tasks in gang unschedulable")
    start_pods(cluster, "gang")
    assert future.result(timeout=20) == EXPECTED_2X8
    assert table_of(cluster, "gang") == EXPECTED_2X8
    assert progress[-1] == "rank table written: 2 server(s), 16 ranks"


def test_fill_times_out_with_the_reason(run, cluster):
    submit(run, cluster, "stuck", "--servers", "2")
    pods = cluster.player.create_pods("stuck")
    cluster.player.schedule(pods[0], "node-0", HOSTS[0])
    cluster.player.pod_status(pods[1], {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient huawei.com/Ascend910."}]})
    result = run("rank-table", "--fill", "stuck", "--timeout", "0.3", *cluster.args())
    assert result.code == 124
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("error: timed out after 0.3s: stuck: waiting for 2 pod(s): 2 created, 1 scheduled, "
                           "0 annotated with their NPUs - stuck-worker-1: Unschedulable: 0/3 nodes are available")
    assert table_of(cluster, "stuck") == {"status": "initializing"}


def test_fill_watch_refills_after_a_job_restart(run, cluster, background):
    submit(run, cluster, "rs", "--servers", "2")
    progress: list[str] = []
    future = background(job_client(cluster).fill_rank_table, "rs", timeout=20, watch=True,
                        on_progress=progress.append)
    pods = start_pods(cluster, "rs", run=True)
    eventually(lambda: table_of(cluster, "rs") == EXPECTED_2X8)
    cluster.player.job_state("rs", "Restarting", retry_count=1)
    for pod in pods:  # Volcano's RestartJob deletes every pod ...
        cluster.player.delete_pod(pod)
    eventually(lambda: table_of(cluster, "rs") == {"status": "initializing"})
    new_hosts = ["10.0.0.21", "10.0.0.22"]
    new_pods = start_pods(cluster, "rs", hosts=new_hosts)  # ... and creates new ones, maybe elsewhere
    refilled = eventually(lambda: (t := table_of(cluster, "rs")).get("status") == "completed" and t)
    assert [s["server_id"] for s in refilled["server_list"]] == new_hosts
    for pod in new_pods:  # the ranks finish: that is no restart, the table stays
        cluster.player.finish_pod(pod)
    seen = len(cluster.client_requests("pods"))
    eventually(lambda: len(cluster.client_requests("pods")) > seen + 3)
    assert table_of(cluster, "rs") == refilled
    cluster.player.job_state("rs", "Completed", retry_count=1)
    assert future.result(timeout=20) == refilled
    assert "pods replaced (job restart): rank table reset to initializing" in progress


def test_fill_refuses_a_dynamic_job(run, cluster):
    submit(run, cluster, "dyn", "--launch", "dynamic")
    result = run("rank-table", "--fill", "dyn", *cluster.args())
    assert (result.code, result.err) == (2, "error: job dyn uses --launch dynamic: it has no rank table to fill\n")


def test_status_shows_phase_pods_restarts_retries_and_reason(run, cluster):
    submit(run, cluster, "st", "--servers", "2")
    pods = start_pods(cluster, "st")
    cluster.player.run_pod(pods[0], restarts=2)
    cluster.player.pod_status(pods[1], {"phase": "Pending", "containerStatuses": [{
        "name": "worker", "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"sop:9\""}}}]})
    cluster.player.job_state("st", "Pending", retry_count=1)
    result = run("status", "st", *cluster.args())
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("job st  namespace ml  phase Pending  servers 2 x 8 NPUs  retries 1/3  restarts 2")
    assert lines[1].split() == ["POD", "PHASE", "NODE", "RESTARTS", "PROBLEM"]
    assert lines[2].split() == ["worker-0", "Running", "node-0", "2"]
    assert lines[3].split()[:4] == ["worker-1", "Pending", "node-1", "0"]
    assert "ImagePullBackOff" in lines[3]
    assert lines[-1] == 'reason: st-worker-1: ImagePullBackOff: Back-off pulling image "sop:9"'
    as_json = json.loads(run("status", "st", "-o", "json", *cluster.args()).out)
    assert (as_json["phase"], as_json["retry_count"], as_json["restarts"]) == ("Pending", 1, 2)


def test_status_reports_a_stuck_gang(run, cluster):
    submit(run, cluster, "big", "--servers", "4")
    cluster.player.podgroup("big", unschedulable="4/4 tasks in gang unschedulable: pod group is not ready, "
                                                 "4 Pending, 4 minAvailable")
    result = run("status", "big", *cluster.args())
    assert "no pods yet" in result.out
    assert "reason: gang not schedulable: 4/4 tasks in gang unschedulable" in result.out


def test_list_shows_our_jobs_and_all_with_all(run, cluster):
    submit(run, cluster, "first")
    submit(run, cluster, "second", "--servers", "2")
    cluster.player.custom.create_namespaced_custom_object(
        "batch.volcano.sh", "v1alpha1", NAMESPACE, "jobs",
        {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job", "metadata": {"name": "someone-else"},
         "spec": {"tasks": [{"name": "t", "replicas": 1, "template": {"spec": {"containers": []}}}]}},
        _preload_content=False)
    ours = run("list", *cluster.args())
    rows = [line.split() for line in ours.out.splitlines()]
    assert rows[0] == ["NAME", "PHASE", "LOSS", "SERVERS", "NPUS", "RETRIES", "AGE"]
    assert [row[:6] for row in rows[1:]] == [["first", "Pending", "triplet", "1", "8", "0/3"],
                                             ["second", "Pending", "triplet", "2", "8", "0/3"]]
    everything = run("list", "--all", *cluster.args())
    assert "someone-else" in everything.out
    newest = run("status", *cluster.args())
    assert newest.code == 0 and newest.out.startswith("job second ")
    assert "(newest job in ml: second)" in newest.err


@pytest.mark.parametrize("phase, code, message", [
    ("Completed", 0, "ok: Completed"),
    ("Failed", 1, "ok: Failed - ok-worker-0: exited with code 137 Error"),
    ("Aborted", 1, "ok: Aborted"),
], ids=["completed", "failed", "aborted"])
def test_wait_exit_code_reflects_the_outcome(run, cluster, background, phase, code, message):
    submit(run, cluster, "ok")
    (pod,) = start_pods(cluster, "ok", run=True)
    cluster.player.job_state("ok", "Running", running=1)
    seen = len(cluster.client_requests("jobs"))
    future = background(run, "wait", "ok", "--timeout", "20", *cluster.args())
    eventually(lambda: len(cluster.client_requests("jobs")) > seen + 1)  # it is polling a running job
    if phase == "Failed":
        cluster.player.finish_pod(pod, exit_code=137)
    cluster.player.job_state("ok", phase)
    result = future.result(timeout=20)
    assert (result.code, result.out.strip()) == (code, message)


def test_wait_times_out_with_exit_124(run, cluster):
    submit(run, cluster, "slow")
    result = run("wait", "slow", "--timeout", "0.2", *cluster.args())
    assert result.code == 124
    assert result.err.strip().splitlines()[-1] == "error: timed out after 0.2s: slow: Pending, 0/1 pods running, retries 0/3"


def test_wait_for_a_job_deleted_meanwhile(run, cluster, background):
    submit(run, cluster, "gone")
    seen = len(cluster.client_requests("jobs"))
    future = background(job_client(cluster).wait, "gone", timeout=20)
    eventually(lambda: len(cluster.client_requests("jobs")) > seen + 1)
    assert run("cancel", "gone", *cluster.args()).code == 0
    with pytest.raises(Exception, match="job gone was deleted while waiting for it"):
        future.result(timeout=20)


def test_cancel_deletes_the_job_and_its_rank_table(run, cluster):
    submit(run, cluster, "bye")
    result = run("cancel", "bye", *cluster.args())
    assert result.code == 0, result.err
    assert result.err == "deleted job bye (Volcano deletes its pods) and its rank table\n"
    assert run("status", "bye", *cluster.args()).err == \
        "error: jobs.batch.volcano.sh 'bye' not found in namespace 'ml'\n"
    with pytest.raises(Exception, match="404"):
        configmap(cluster, "bye")
    again = run("cancel", "bye", *cluster.args())
    assert (again.code, again.err) == (2, "error: jobs.batch.volcano.sh 'bye' not found in namespace 'ml'\n")


def _allowed(rules, verb, group, resource):
    return any(verb in r["verbs"] and group in r["apiGroups"] and resource in r["resources"] for r in rules)


def test_the_submitter_role_allows_every_call_the_client_makes(run, cluster, background):
    """Record the API requests of a whole session and check each against Role sop-submitter."""
    submit(run, cluster, "rbac", "--servers", "2")
    cluster.player.podgroup("rbac")
    start_pods(cluster, "rbac", run=True)
    assert run("rank-table", "--fill", "rbac", "--timeout", "5", *cluster.args()).code == 0
    for command in (["status", "rbac"], ["list"], ["logs", "rbac"]):
        assert run(*command, *cluster.args()).code == 0
    cluster.player.job_state("rbac", "Completed")
    assert run("wait", "rbac", *cluster.args()).code == 0
    assert run("cancel", "rbac", *cluster.args()).code == 0
    client_requests = cluster.client_requests()
    role = next(doc for doc in yaml.safe_load_all((manifests_dir() / "cluster" / "rbac.yaml").read_text())
                if doc["kind"] == "Role" and doc["metadata"]["name"] == names.SUBMITTER_ROLE)
    verbs = {"CREATE": "create", "FETCH": "get", "LIST": "list", "UPDATE": "patch", "DELETE": "delete"}
    used = {(verbs[r.action.value], r.resource.group,
             r.resource.plural + (f"/{r.subresource}" if r.subresource else "")) for r in client_requests}
    assert ("get", "", "pods/log") in used and ("patch", "", "configmaps") in used
    assert ("list", "scheduling.volcano.sh", "podgroups") in used
    missing = [u for u in used if not _allowed(role["rules"], *u)]
    assert missing == []


def test_submit_resets_a_leftover_rank_table(run, cluster):
    """A ConfigMap left by an earlier job of the same name must not hand its table to the new pods."""
    cluster.player.core.create_namespaced_config_map(NAMESPACE, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rings-config-reuse"},
        "data": {"hccl.json": json.dumps(EXPECTED_2X8)}}, _preload_content=False)
    submit(run, cluster, "reuse", "--servers", "2")
    assert table_of(cluster, "reuse") == {"status": "initializing"}
    assert configmap(cluster, "reuse")["metadata"]["ownerReferences"][0]["name"] == "reuse"
