"""render(spec): golden output, schema validation for many option sets, and the pod contract."""
from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from operator_client import names
from operator_client.launch_command import launch_command, launch_env
from operator_client.render import render, to_yaml
from operator_client.spec import JobSpec

from .validation import validate

GOLDEN = Path(__file__).parent / "golden" / "triplet-2-servers.yaml"
GOLDEN_SPEC = JobSpec(loss="triplet", servers=2, name="sop-triplet-golden", namespace="ml",
                      queue="research", image="registry.example.com:5000/ml/sop-metric-job:0.1.0",
                      data_subpath="datasets", pretrained_ckpt="/data/pretrained/resnet50.ckpt",
                      overrides=("epochs=30", "lr=0.0001"))

SPECS = {
    "1-server-defaults": JobSpec(loss="triplet", name="one"),
    "4-servers": JobSpec(loss="quadruplet", servers=4, name="four"),
    "4-servers-dynamic": JobSpec(loss="triplet", servers=4, launch="dynamic", name="dyn"),
    "1-device": JobSpec(loss="triplet", devices_per_server=1, stages="finetune,eval", name="tiny"),
    "2-devices-export": JobSpec(loss="quadruplet", devices_per_server=2,
                                stages="pretrain,finetune,eval,export", name="exp"),
    "softmax-pretrain": JobSpec(loss="softmax", stages="pretrain,eval", name="soft"),
    "subpath-ckpt-sets": GOLDEN_SPEC,
    "max-retry-0-custom-pvcs": JobSpec(loss="triplet", max_retry=0, data_pvc="team.sop",
                                       runs_pvc="team-runs", name="custom"),
    "cpu-1-server-2-ranks": JobSpec(loss="triplet", device="cpu", devices_per_server=2, name="cpu"),
    "cpu-4-servers": JobSpec(loss="quadruplet", device="cpu", servers=4, devices_per_server=1,
                             cpus="8", memory="32Gi", name="cpu4"),
}


def _job(manifests):
    return next(m for m in manifests if m["kind"] == "Job")


def _pod(manifests):
    return _job(manifests)["spec"]["tasks"][0]["template"]


def test_golden_manifests():
    text = to_yaml(render(GOLDEN_SPEC))
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "render changed: check the diff, then UPDATE_GOLDEN=1 pytest"


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_every_rendered_manifest_validates(spec):
    manifests = render(spec)
    assert [m["kind"] for m in manifests] == (["ConfigMap", "Job"] if spec.uses_rank_table else ["Job"])
    for manifest in manifests:
        validate(manifest)


ASCEND = {k: s for k, s in SPECS.items() if not s.on_cpu}


@pytest.mark.parametrize("spec", ASCEND.values(), ids=ASCEND.keys())
def test_job_shape(spec):
    job = _job(render(spec))
    body = job["spec"]
    assert body["schedulerName"] == "volcano"
    assert body["minAvailable"] == spec.servers == body["tasks"][0]["replicas"]
    assert body["queue"] == spec.queue and body["maxRetry"] == spec.max_retry
    assert {(p["event"], p["action"]) for p in body["policies"]} == {
        ("PodEvicted", "RestartJob"), ("PodFailed", "RestartJob"), ("TaskCompleted", "CompleteJob")}
    assert set(body["plugins"]) == {"env", "svc"}
    (task,) = body["tasks"]
    assert task["name"] == "worker"
    pod = task["template"]["spec"]
    (container,) = pod["containers"]
    devices = str(spec.devices_per_server)
    assert container["resources"] == {"requests": {"huawei.com/Ascend910": devices},
                                      "limits": {"huawei.com/Ascend910": devices}}
    assert container["image"] == spec.image
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/data"]["name"]]["persistentVolumeClaim"]["claimName"] == spec.data_pvc
    assert mounts["/data"].get("subPath") == (spec.data_subpath or None)
    assert volumes[mounts["/runs"]["name"]]["persistentVolumeClaim"]["claimName"] == spec.runs_pvc
    for host_path in ("/usr/local/Ascend/driver", "/usr/local/dcmi", "/usr/local/bin/npu-smi",
                      "/etc/ascend_install.info"):
        assert volumes[mounts[host_path]["name"]]["hostPath"]["path"] == host_path
        assert mounts[host_path]["readOnly"] is True
    env = {e["name"]: e for e in container["env"]}
    assert env["ASCEND_VISIBLE_DEVICES"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.annotations['huawei.com/Ascend910']"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    term = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term == {"topologyKey": "kubernetes.io/hostname",
                    "labelSelector": {"matchLabels": {"volcano.sh/job-name": spec.name}}}
    assert pod["restartPolicy"] == "Never"
    assert container["command"] == launch_command(spec)  # one source of truth for the command


@pytest.mark.parametrize("spec", [s for s in SPECS.values() if s.uses_rank_table],
                         ids=[k for k, s in SPECS.items() if s.uses_rank_table])
def test_rank_table_mode_mounts_the_configmap(spec):
    configmap, job = render(spec)
    assert configmap["metadata"]["name"] == f"rings-config-{spec.name}"
    assert configmap["metadata"]["labels"]["ring-controller.atlas"] == "ascend-910"
    assert json.loads(configmap["data"]["hccl.json"]) == {"status": "initializing"}
    template = job["spec"]["tasks"][0]["template"]
    assert template["metadata"]["labels"]["ring-controller.atlas"] == "ascend-910"
    volume = next(v for v in template["spec"]["volumes"] if v["name"] == "ascend-910-config")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    mount = next(m for m in template["spec"]["containers"][0]["volumeMounts"] if m["name"] == "ascend-910-config")
    assert mount["mountPath"] == "/user/serverid/devindex/config"
    command = template["spec"]["containers"][0]["command"]
    assert command[command.index("--rank-table") + 1] == "/user/serverid/devindex/config/hccl.json"


def test_dynamic_mode_has_no_rank_table_and_points_at_the_scheduler_pod():
    spec = SPECS["4-servers-dynamic"]
    (job,) = render(spec)
    template = job["spec"]["tasks"][0]["template"]
    assert "ring-controller.atlas" not in template["metadata"]["labels"]
    assert all(v["name"] != "ascend-910-config" for v in template["spec"]["volumes"])
    env = {e["name"]: e for e in template["spec"]["containers"][0]["env"]}
    assert env["MS_SCHED_HOST"]["value"] == "dyn-worker-0.dyn"
    assert env["MS_SCHED_PORT"]["value"] == "8118"
    assert env["MS_WORKER_NUM"]["value"] == "32"
    assert env["MS_NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['volcano.sh/task-index']"


def test_no_template_placeholder_survives():
    for spec in SPECS.values():
        text = to_yaml(render(spec))
        assert "set-by-render" not in text


def test_render_is_pure_and_leaves_the_template_alone():
    first = render(SPECS["4-servers"])
    snapshot = copy.deepcopy(first)
    render(SPECS["4-servers-dynamic"])
    render(GOLDEN_SPEC)
    assert render(SPECS["4-servers"]) == snapshot == first


def test_render_needs_a_name():
    with pytest.raises(ValueError, match="name"):
        render(JobSpec(loss="triplet"))


def test_validation_catches_a_broken_manifest():
    """The checks above can fail: an unknown field or a bad policy is rejected."""
    configmap, job = render(SPECS["1-server-defaults"])
    bad_job = copy.deepcopy(job)
    bad_job["spec"]["policies"][0]["action"] = "Reboot"
    with pytest.raises(jsonschema.ValidationError):
        validate(bad_job)
    bad_pod = copy.deepcopy(job)
    bad_pod["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["gpus"] = 8
    with pytest.raises(Exception, match="gpus"):
        validate(bad_pod)
    bad_configmap = copy.deepcopy(configmap)
    bad_configmap["metadata"]["owner"] = "me"
    with pytest.raises(Exception, match="owner"):
        validate(bad_configmap)


def test_names_module_matches_the_templates():
    """The template's fixed names are the ones names.py declares."""
    job = _job(render(SPECS["1-server-defaults"]))
    pod = job["spec"]["tasks"][0]["template"]["spec"]
    volume_names = {v["name"] for v in pod["volumes"]}
    assert {names.DATA_VOLUME, names.RUNS_VOLUME, names.RANK_TABLE_VOLUME, names.SHM_VOLUME} <= volume_names
    assert pod["containers"][0]["name"] == names.CONTAINER_NAME
    env_names = [e["name"] for e in launch_env(SPECS["1-server-defaults"])]
    assert env_names == [names.ENV_POD_IP, names.ENV_HOST_IP, names.ENV_ASCEND_VISIBLE_DEVICES]


def test_render_cli_prints_the_same_manifests(run, tmp_path):
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump({"loss": "quadruplet", "servers": 4, "name": "from-file",
                                        "devices-per-server": 8, "set": {"epochs": 3}}))
    result = run("render", "-f", str(job_file), "--loss", "triplet", "--set", "lr=0.1")
    assert result.code == 0, result.err
    docs = list(yaml.safe_load_all(result.out))
    expected = JobSpec(loss="triplet", servers=4, name="from-file", overrides=("epochs=3", "lr=0.1"))
    assert docs == render(expected)
    as_json = run("render", "--loss", "triplet", "--name", "j", "-o", "json")
    assert json.loads(as_json.out)["items"] == render(JobSpec(loss="triplet", name="j"))


def test_render_cli_derives_a_valid_unique_name(run):
    first = list(yaml.safe_load_all(run("render", "--loss", "triplet").out))
    second = list(yaml.safe_load_all(run("render", "--loss", "triplet").out))
    name = first[-1]["metadata"]["name"]
    assert re.fullmatch(r"sop-triplet-\d{4}-\d{6}-[0-9a-f]{4}", name)
    assert name != second[-1]["metadata"]["name"]
    for doc in first:
        validate(doc)


def test_cpu_variant_requests_cpu_and_runs_dynamic():
    spec = JobSpec(loss="triplet", device="cpu", devices_per_server=2, name="c")
    assert spec.launch == "dynamic" and spec.image == names.DEFAULT_CPU_IMAGE
    (job,) = render(spec)
    pod = job["spec"]["tasks"][0]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["resources"] == {"requests": {"cpu": "4", "memory": "16Gi"},
                                      "limits": {"cpu": "4", "memory": "16Gi"}}
    assert not any("hostPath" in v for v in pod["spec"]["volumes"])
    assert "ASCEND_VISIBLE_DEVICES" not in {e["name"] for e in container["env"]}
    assert container["command"][-2:] == ["--device", "cpu"]
    assert names.LABEL_RING_CONTROLLER not in pod["metadata"]["labels"]


@pytest.mark.parametrize("kwargs,message", [
    (dict(device="gpu"), "--device must be one of ascend, cpu"),
    (dict(device="cpu", launch="rank-table"), "drop --launch rank-table"),
    (dict(device="cpu", memory="lots"), "is not a Kubernetes quantity"),
], ids=["bad-device", "cpu-rank-table", "bad-memory"])
def test_cpu_variant_errors(kwargs, message):
    from operator_client.errors import SpecError
    with pytest.raises(SpecError, match=message):
        JobSpec(loss="triplet", name="x", **kwargs)
