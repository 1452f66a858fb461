"""The pod contract: what the client renders is what the job understands.

Render a job, take the worker container's command and env from the pod template, fill in what
Kubernetes would (downward-API values, Volcano's VC_TASK_INDEX, the svc plugin's DNS name of
pod 0, the mounted rank-table file, the volumes as local folders) and run it here. The stages
must run and write their metrics; any drift between the rendered command and `job launch`
fails this test.
"""
import json
import shutil
import subprocess
import sys

import pytest

from operator_client import names
from operator_client.render import render
from operator_client.spec import JobSpec

pytest.importorskip("mindspore")

TINY_SETS = ("image_size=32", "batch_size=16", "epochs=1", "max_steps_per_epoch=3")


def _pod(manifests):
    job = next(m for m in manifests if m["kind"] == "Job")
    return job["spec"]["tasks"][0]["template"]


def _materialise(template, tmp_path, data, *, configmaps):
    """Local folders for the pod's volumes; returns (mount path -> folder, container)."""
    (container,) = template["spec"]["containers"]
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    mounts = {}
    for m in container["volumeMounts"]:
        vol = volumes[m["name"]]
        folder = tmp_path / "volumes" / m["name"]
        if "persistentVolumeClaim" in vol:
            folder.mkdir(parents=True, exist_ok=True)
            if vol["persistentVolumeClaim"]["claimName"] == names.DEFAULT_DATA_PVC:
                target = folder / m.get("subPath", "") / "sop"
                if not target.exists():
                    shutil.copytree(data, target)
            folder = folder / m.get("subPath", "")
        elif "configMap" in vol:
            folder.mkdir(parents=True, exist_ok=True)
            for item in vol["configMap"]["items"]:
                (folder / item["path"]).write_text(configmaps[vol["configMap"]["name"]][item["key"]])
        elif "emptyDir" in vol or "hostPath" in vol:
            # hostPath: the Ascend driver files; a CPU run does not read them
            folder.mkdir(parents=True, exist_ok=True)
        else:
            raise AssertionError(f"unexpected volume {vol}")
        mounts[m["mountPath"]] = folder
    return mounts, container


def _env(container, *, pod_ip, job):
    """What the kubelet (downward API) and Volcano (env plugin, svc DNS) provide."""
    fields = {"status.podIP": pod_ip, "status.hostIP": pod_ip,
              f"metadata.labels['{names.LABEL_VOLCANO_TASK_INDEX}']": "0",
              f"metadata.annotations['{names.ANNOTATION_ASCEND_DEVICES}']": "Ascend910-0"}
    env = {"VC_TASK_INDEX": "0"}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
    if env.get("MS_SCHED_HOST") == names.scheduler_host(job):
        env["MS_SCHED_HOST"] = pod_ip          # cluster DNS: pod 0 of the job is this pod
    return env


def _localise(args, mounts):
    out = []
    for a in args:
        for path, folder in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
            if a == path or a.startswith(path + "/"):
                a = str(folder) + a[len(path):]
                break
        out.append(a)
    return out


def _run(spec, tmp_path, data, configmaps=None):
    template = _pod(render(spec))
    mounts, container = _materialise(template, tmp_path, data, configmaps=configmaps or {})
    argv = _localise(container["command"] + container.get("args", []), mounts)
    assert argv[:4] == ["python", "-m", "job", "launch"]
    env = {**__import__("os").environ, **_env(container, pod_ip="127.0.0.1", job=spec.name)}
    r = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, text=True,
                       timeout=900, cwd=tmp_path)
    return r, mounts


def test_cpu_variant_one_server_two_ranks(tiny_demo, tmp_path):
    spec = JobSpec(loss="triplet", device="cpu", devices_per_server=2, name="contract",
                   overrides=TINY_SETS)
    r, mounts = _run(spec, tmp_path, tiny_demo)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run = mounts[names.RUNS_MOUNT] / "contract"
    assert json.loads((run / "finetune" / "metrics.json").read_text())["ranks"] == 2
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["checkpoint"].startswith(str(run)) and metrics["num_queries"] > 0
    assert "[rank 1] " in r.stdout and "(dynamic)" in r.stdout


def test_ascend_variant_rank_table_plumbing_one_device(tiny_demo, tmp_path):
    """Rank-table mode end to end with one device: the mounted ConfigMap's table (filled as
    `rank-table --fill` would) is read, this pod's entry found by its host IP, and the stages
    run (one rank needs no HCCL, so it runs on this CPU)."""
    from operator_client import rank_table

    spec = JobSpec(loss="quadruplet", devices_per_server=1, name="ascend1",
                   stages="pretrain,finetune,eval", overrides=TINY_SETS,
                   pretrained_ckpt="none")  # on this CPU: resnet-mini, no ImageNet ResNet50 fits
    table = rank_table.build([rank_table.server_from_ips("127.0.0.1", ["192.168.100.101"])])
    configmaps = {names.rank_table_configmap("ascend1"): {names.RANK_TABLE_KEY: rank_table.dumps(table)}}
    r, mounts = _run(spec, tmp_path, tiny_demo, configmaps)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "rank table: server 1/1 (127.0.0.1), 1 local devices" in r.stdout
    run = mounts[names.RUNS_MOUNT] / "ascend1"
    assert json.loads((run / "eval" / "metrics.json").read_text())["loss"] == "quadruplet-chen"
