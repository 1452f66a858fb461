"""JobSpec: defaults, validation messages that state the rule, YAML file + flags."""
from __future__ import annotations

import datetime
import re

import pytest
import yaml

from operator_client import names
from operator_client.errors import SpecError
from operator_client.spec import JobSpec, load_spec_file, spec_from_sources


def test_defaults():
    spec = JobSpec(loss="triplet")
    assert spec.stages == ("pretrain", "finetune", "eval")
    assert (spec.servers, spec.devices_per_server, spec.rank_size) == (1, 8, 8)
    assert spec.launch == "rank-table" and spec.uses_rank_table
    assert (spec.namespace, spec.queue) == (names.DEFAULT_NAMESPACE, names.DEFAULT_QUEUE)
    assert (spec.data_pvc, spec.runs_pvc, spec.data_subpath) == ("sop-data", "sop-runs", "")
    assert spec.name is None and spec.pretrained_ckpt is None and spec.overrides == ()
    assert spec.max_retry == 3


INVALID = {
    "unknown-loss": (dict(loss="arcface"), "unknown loss 'arcface': choose one of triplet, quadruplet, softmax"),
    "softmax-finetune": (dict(loss="softmax"), "softmax' is the pretraining loss"),
    "devices-3": (dict(devices_per_server=3), "--devices-per-server must be 1, 2, 4 or 8"),
    "devices-16": (dict(devices_per_server=16), "--devices-per-server must be 1, 2, 4 or 8"),
    "servers-0": (dict(servers=0), "--servers must be between 1 and 1000"),
    "servers-text": (dict(servers="two"), "--servers must be a whole number, got 'two'"),
    "multi-server-partial": (dict(servers=2, devices_per_server=4), "must use all 8 devices"),
    "stage-unknown": (dict(stages="pretrain,train"), "unknown stage 'train'"),
    "stage-order": (dict(stages="eval,finetune"), "write finetune,eval instead of eval,finetune"),
    "stage-twice": (dict(stages="eval,eval"), "lists a stage twice"),
    "stage-empty": (dict(stages=""), "--stages must name at least one"),
    "image-upper": (dict(image="Registry/SOP:1"), "--image 'Registry/SOP:1' is not a valid image reference"),
    "image-space": (dict(image="sop job"), "not a valid image reference"),
    "namespace": (dict(namespace="ML_team"), "--namespace 'ML_team' is not a valid Kubernetes name"),
    "queue": (dict(queue=""), "--queue '' is not a valid Kubernetes name"),
    "pvc": (dict(data_pvc="-sop"), "--data-pvc '-sop' is not a valid Kubernetes name"),
    "subpath-absolute": (dict(data_subpath="/datasets"), "must be a relative folder inside the volume"),
    "subpath-dotdot": (dict(data_subpath="a/../b"), "without '..'"),
    "ckpt-relative": (dict(pretrained_ckpt="resnet.ckpt"), "must be an absolute path as the pod sees it"),
    "set-no-equals": (dict(overrides=["epochs"]), "--set 'epochs' must look like key=value"),
    "set-bad-key": (dict(overrides=["1lr=3"]), "--set key '1lr' must be a dotted identifier"),
    "launch": (dict(launch="mpirun"), "--launch must be one of rank-table, dynamic, got 'mpirun'"),
    "max-retry": (dict(max_retry=-1), "max-retry must be between 0 and 100"),
    "name-upper": (dict(name="MyJob"), "job name 'MyJob' must be lower-case letters"),
    "name-digit-first": (dict(name="1job"), "start with a letter"),
    "name-too-long": (dict(name="a" * 60), "is too long: pod name"),
}


@pytest.mark.parametrize("kwargs, message", INVALID.values(), ids=INVALID.keys())
def test_invalid_values_state_the_rule(kwargs, message):
    with pytest.raises(SpecError) as info:
        JobSpec(**{"loss": "triplet", **kwargs})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


VALID_IMAGES = ["sop-metric-job", "sop-metric-job:0.1.0", "localhost:5000/sop:latest",
                "swr.cn-south-1.myhuaweicloud.com/team/mindspore_ascend:2.8.0-cann8",
                "registry.example.com/a/b/c@sha256:" + "a" * 64]


@pytest.mark.parametrize("image", VALID_IMAGES)
def test_valid_image_references(image):
    assert JobSpec(loss="triplet", image=image).image == image


def test_softmax_may_pretrain_and_evaluate():
    assert JobSpec(loss="softmax", stages="pretrain,eval").stages == ("pretrain", "eval")


def test_overrides_forms_and_last_one_wins():
    from_list = JobSpec(loss="triplet", overrides=["epochs=3", "lr=0.1", "epochs=5"])
    from_map = JobSpec(loss="triplet", overrides={"epochs": 5, "lr": 0.1, "amp": True})
    assert from_list.overrides == (("lr", "0.1"), ("epochs", "5"))
    assert from_map.overrides == (("epochs", "5"), ("lr", "0.1"), ("amp", "true"))
    assert JobSpec(loss="triplet", overrides=["note=a=b"]).overrides == (("note", "a=b"),)


def test_name_length_depends_on_the_number_of_servers():
    name = "a" * 54  # + "-worker-9" is 63 characters, + "-worker-10" is 64
    assert JobSpec(loss="triplet", name=name, servers=1).name == name
    with pytest.raises(SpecError, match="too long"):
        JobSpec(loss="triplet", name=name, servers=11)


def test_default_job_name_is_a_valid_unique_dns_label():
    fixed = names.default_job_name("triplet", datetime.datetime(2025, 6, 12, 15, 30, 5), "a3f9")
    assert fixed == "sop-triplet-0612-153005-a3f9"
    generated = {JobSpec(loss="quadruplet").with_name().name for _ in range(20)}
    assert len(generated) == 20
    for name in generated:
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= names.JOB_NAME_MAX
    assert JobSpec(loss="triplet", name="keep").with_name().name == "keep"


def test_file_values_and_flags_flags_win(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({
        "loss": "quadruplet", "servers": 2, "devices-per-server": 8, "queue": "team",
        "data_subpath": "datasets", "set": {"epochs": 10, "lr": 0.001}}))
    spec = spec_from_sources(load_spec_file(path), {
        "loss": "triplet", "servers": None, "queue": "urgent", "overrides": ["lr=0.01", "seed=1"]})
    assert (spec.loss, spec.servers, spec.queue, spec.data_subpath) == ("triplet", 2, "urgent", "datasets")
    assert spec.overrides == (("epochs", "10"), ("lr", "0.01"), ("seed", "1"))


FILE_ERRORS = {
    "unknown-key": ("loss: triplet\ngpus: 8\n", "unknown option 'gpus' in"),
    "not-a-mapping": ("- loss\n", "must hold a mapping of options"),
    "bad-yaml": ("loss: [triplet\n", "is not valid YAML"),
}


@pytest.mark.parametrize("text, message", FILE_ERRORS.values(), ids=FILE_ERRORS.keys())
def test_bad_job_files(tmp_path, text, message):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec_file(path)


def test_missing_job_file_and_missing_loss(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec_file(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="the loss is required: pass --loss triplet"):
        spec_from_sources({}, {"servers": 2})


def test_invalid_value_on_the_command_line_is_one_line_exit_2(run):
    result = run("render", "--loss", "triplet", "--devices-per-server", "6")
    assert result.code == 2
    assert result.err == "error: --devices-per-server must be 1, 2, 4 or 8 (Ascend 910 servers have 8 devices), got 6\n"
    assert result.out == ""
