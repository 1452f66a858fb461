"""Errors users hit: one clear line `error: ...` on stderr, exit code 2, no traceback."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from operator_client.cluster import Cluster
from operator_client.errors import AlreadyExists, Forbidden, VolcanoNotInstalled

from .conftest import NAMESPACE, write_kubeconfig

REPO = Path(__file__).resolve().parents[2]


def assert_one_line_error(result, message):
    assert result.code == 2, (result.code, result.err)
    assert result.err == f"error: {message}\n"
    assert "Traceback" not in result.err


@pytest.fixture
def no_kube_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def test_no_kubeconfig(run, no_kube_env):
    assert_one_line_error(run("status", "x"), "no Kubernetes configuration: ~/.kube/config does not exist and "
                                              "KUBECONFIG is not set; pass --kubeconfig FILE (or run inside the cluster)")


def test_kubeconfig_flag_names_a_missing_file(run, no_kube_env, tmp_path):
    assert_one_line_error(run("list", "--kubeconfig", str(tmp_path / "missing")),
                          f"kubeconfig '{tmp_path / 'missing'}' does not exist")


def test_kubeconfig_env_names_no_file(run, no_kube_env, monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope"))
    result = run("list")
    assert result.code == 2 and result.err.startswith("error: KUBECONFIG names no existing file")


def test_unknown_context(run, cluster):
    assert_one_line_error(run("list", "--context", "prod", *cluster.args()),
                          f"context 'prod' is not in kubeconfig {cluster.kubeconfig} (its contexts: emulator)")


def test_volcano_not_installed(run, cluster_without_volcano):
    message = ("the cluster does not serve Volcano jobs (no API batch.volcano.sh/v1alpha1): install Volcano "
               "(https://volcano.sh/en/docs/installation/) or check --context")
    assert_one_line_error(run("submit", "--loss", "triplet", *cluster_without_volcano.args()), message)
    # a 404 on the job resource itself is recognised too
    assert_one_line_error(run("status", "any", *cluster_without_volcano.args()), message)
    assert_one_line_error(run("list", *cluster_without_volcano.args()), message)
    assert not cluster_without_volcano.client_requests("configmaps")  # no stray rank-table ConfigMap


def test_forbidden_names_the_missing_verb_and_resource(run, cluster):
    cluster.server.forbidden.add(("create", "jobs"))
    assert_one_line_error(
        run("submit", "--loss", "triplet", "--name", "f", *cluster.args()),
        "forbidden: you may not create jobs.batch.volcano.sh in namespace 'ml' (server: jobs.batch.volcano.sh is "
        "forbidden: User \"tester\" cannot create resource \"jobs\" in API group \"batch.volcano.sh\" in the "
        "namespace \"ml\"); ask a cluster admin to grant 'create' on 'jobs.batch.volcano.sh', e.g. by binding "
        "the Role sop-submitter from manifests/cluster")


def test_forbidden_logs(run, cluster):
    from .test_client import start_pods, submit

    submit(run, cluster, "secret")
    (pod,) = start_pods(cluster, "secret", run=True)
    cluster.server.forbidden.add(("get", "pods/log"))
    result = run("logs", "secret", *cluster.args())
    assert result.code == 2
    assert result.err.startswith("error: forbidden: you may not get pods/log in namespace 'ml'")


def test_job_name_already_exists(run, cluster):
    assert run("submit", "--loss", "triplet", "--name", "twice", "--no-fill", *cluster.args()).code == 0
    assert_one_line_error(
        run("submit", "--loss", "quadruplet", "--name", "twice", "--no-fill", *cluster.args()),
        "a job named 'twice' already exists in namespace 'ml': choose another --name, or remove it with: "
        "python -m operator_client cancel twice -n ml")
    assert cluster.player.job("twice")["metadata"]["labels"]["sop-metric-job/loss"] == "triplet"  # untouched


def test_namespace_missing(run, cluster):
    args = cluster.args()
    args[args.index("-n") + 1] = "nowhere"
    assert_one_line_error(run("submit", "--loss", "triplet", *args),
                          "namespace 'nowhere' does not exist: create it (kubectl apply -k manifests/cluster) "
                          "or pass --namespace")


def test_invalid_values(run, cluster):
    assert_one_line_error(run("submit", "--loss", "contrastive", *cluster.args()),
                          "unknown loss 'contrastive': choose one of triplet, quadruplet, softmax")
    assert_one_line_error(run("submit", "--loss", "triplet", "--name", "Bad_Name", *cluster.args()),
                          "job name 'Bad_Name' must be lower-case letters, digits and '-', start with a letter "
                          "and end with a letter or digit")
    assert not cluster.client_requests("jobs")  # nothing reached the cluster
    result = run("wait", "x", "--timeout", "soon", *cluster.args())
    assert result.code == 2 and result.err.startswith("error: argument --timeout: invalid float value: 'soon'")


def test_no_server_listening(tmp_path):
    """A real process: urllib3's retry warnings must not clutter the one line."""
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")
    done = subprocess.run([sys.executable, "-m", "operator_client", "list", "--kubeconfig", str(kubeconfig)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: cannot reach the Kubernetes API at http://127.0.0.1:{port}: ")
    assert done.stderr.count("\n") == 1


def test_errors_chain_the_api_exception(cluster):
    from kubernetes.client.exceptions import ApiException

    api = Cluster.connect(str(cluster.kubeconfig))
    cluster.server.forbidden.add(("list", "jobs"))
    with pytest.raises(Forbidden) as info:
        api.list_jobs(NAMESPACE)
    assert isinstance(info.value.__cause__, ApiException) and info.value.__cause__.status == 403
    job = {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
           "metadata": {"name": "dup", "namespace": NAMESPACE}, "spec": {"tasks": []}}
    api.create_job(job)
    with pytest.raises(AlreadyExists) as info:
        api.create_job(job)
    assert info.value.__cause__.status == 409


def test_volcano_missing_from_the_library(cluster_without_volcano):
    with pytest.raises(VolcanoNotInstalled):
        Cluster.connect(str(cluster_without_volcano.kubeconfig)).get_job(NAMESPACE, "x")


def test_a_real_process_prints_one_line_and_exits_2(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("KUBECONFIG", None)
    env.pop("KUBERNETES_SERVICE_HOST", None)
    done = subprocess.run([sys.executable, "-m", "operator_client", "cancel", "x"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: no Kubernetes configuration") and done.stderr.count("\n") == 1
    assert done.stdout == ""
