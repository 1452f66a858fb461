"""A real kubectl against the same emulated API server: what users do beside the client.

Debian's `kubernetes-client` package (kubectl 1.20; `apt-get install -y kubernetes-client`)
is the reference; set KUBECTL=/path/to/kubectl to pick another binary. In CI (env CI set) a
missing kubectl fails the test; elsewhere the test is skipped and says why.
"""
from __future__ import annotations

import json
import subprocess

from operator_client.render import manifests_dir

from .conftest import NAMESPACE
from .emulator import VOLCANO_JOBS
from .test_client import start_pods, submit


def kubectl_run(kubectl, cluster, *argv, check=True):
    done = subprocess.run([kubectl, "--kubeconfig", str(cluster.kubeconfig), *argv],
                          capture_output=True, text=True, timeout=60)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_kubectl_lists_the_job_and_reads_a_pod_log(kubectl, run, cluster):
    version = kubectl_run(kubectl, cluster, "version", "--client", check=False)
    print(f"using {kubectl}: {version.stdout.strip()}")
    submit(run, cluster, "kube", "--servers", "2")
    pods = start_pods(cluster, "kube", run=True)
    cluster.server.log(NAMESPACE, pods[1], "[rank 8] epoch 1/30 loss 0.0931", "[rank 8] epoch 2/30 loss 0.0874")

    table = kubectl_run(kubectl, cluster, "get", "vcjob", "-n", NAMESPACE)
    assert table.stdout.splitlines()[0].split()[0] == "NAME"
    assert [line.split()[0] for line in table.stdout.splitlines()[1:]] == ["kube"]
    as_json = json.loads(kubectl_run(kubectl, cluster, "get", "jobs.batch.volcano.sh", "-n", NAMESPACE,
                                     "-o", "json").stdout)
    assert [item["spec"]["minAvailable"] for item in as_json["items"]] == [2]
    listed = kubectl_run(kubectl, cluster, "get", "pods", "-n", NAMESPACE, "-l", "volcano.sh/job-name=kube",
                         "-o", "name").stdout.split()
    assert listed == [f"pod/{pod}" for pod in pods]

    log = kubectl_run(kubectl, cluster, "logs", pods[1], "-n", NAMESPACE)
    assert log.stdout == "[rank 8] epoch 1/30 loss 0.0931\n[rank 8] epoch 2/30 loss 0.0874\n"


def test_kubectl_applies_the_cluster_setup(kubectl, cluster):
    """`kubectl apply -k manifests/cluster` creates every object (schema validation is the emulator's gap:
    test_manifests.py validates the objects against the official schemas)."""
    done = kubectl_run(kubectl, cluster, "apply", "-k", str(manifests_dir() / "cluster"), "--validate=false")
    assert "namespace/metric-learn created" in done.stdout
    created = {(key[0].plural, key[1], key[2]) for key in cluster.server.objects}
    assert {("queues", None, "metric-learn"), ("persistentvolumeclaims", "metric-learn", "sop-data"),
            ("persistentvolumeclaims", "metric-learn", "sop-runs"), ("serviceaccounts", "metric-learn", "sop-job"),
            ("roles", "metric-learn", "sop-job"), ("roles", "metric-learn", "sop-submitter"),
            ("rolebindings", "metric-learn", "sop-job")} <= created
    assert "metric-learn" in cluster.server.namespaces
    assert VOLCANO_JOBS  # the Volcano kinds are declared in the fixture's server


def test_rendered_manifests_apply_with_kubectl(kubectl, run, cluster):
    """`render | kubectl apply -f -` creates the job and its rank-table ConfigMap."""
    rendered = run("render", "--loss", "quadruplet", "--servers", "4", "--name", "piped", "-n", NAMESPACE)
    assert rendered.code == 0, rendered.err
    done = subprocess.run([kubectl, "--kubeconfig", str(cluster.kubeconfig), "apply", "--validate=false", "-f", "-"],
                          input=rendered.out, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["configmap/rings-config-piped", "created", "job.batch.volcano.sh/piped", "created"]
    assert cluster.player.job("piped")["spec"]["minAvailable"] == 4
