"""The job-side command line and env: exactly the contract with `python -m job launch`."""
from __future__ import annotations

import pytest

from operator_client.launch_command import launch_command, launch_env
from operator_client.spec import JobSpec


def test_rank_table_command_is_the_contract():
    spec = JobSpec(loss="triplet", name="exp1")
    assert " ".join(launch_command(spec)) == (
        "python -m job launch --stages pretrain,finetune,eval --loss triplet --data /data/sop "
        "--run-dir /runs/exp1 --launch rank-table --rank-table /user/serverid/devindex/config/hccl.json "
        "--devices-per-server 8 --pretrained-ckpt /data/pretrained/resnet50.ckpt")


@pytest.mark.parametrize("kwargs, expected", [
    (dict(), "/data/pretrained/resnet50.ckpt"),                      # the volume's ImageNet backbone
    (dict(pretrained_ckpt="/runs/a/x.ckpt"), "/runs/a/x.ckpt"),
    (dict(pretrained_ckpt="none"), None),                             # random weights
    (dict(stages="finetune,eval"), None),                             # nothing pretrains
    (dict(device="cpu"), None),                                       # resnet-mini: no ImageNet ResNet50
], ids=["default", "explicit", "none", "no-pretrain", "cpu"])
def test_pretrained_checkpoint_of_the_pod(kwargs, expected):
    command = launch_command(JobSpec(loss="triplet", name="p", **kwargs))
    assert (command[command.index("--pretrained-ckpt") + 1] if "--pretrained-ckpt" in command else None) == expected
    local = launch_command(JobSpec(loss="triplet", name="p", **kwargs), local_ranks=1, data_dir="d", run_dir="r")
    assert "--pretrained-ckpt" not in local or kwargs.get("pretrained_ckpt") == "/runs/a/x.ckpt"


def test_optional_arguments_come_last_in_order():
    spec = JobSpec(loss="quadruplet", name="exp2", stages="finetune,eval,export", devices_per_server=4,
                   pretrained_ckpt="/runs/base/pretrain/last.ckpt", overrides=["epochs=5", "batch_size=60"])
    assert launch_command(spec) == [
        "python", "-m", "job", "launch", "--stages", "finetune,eval,export", "--loss", "quadruplet",
        "--data", "/data/sop", "--run-dir", "/runs/exp2", "--launch", "rank-table",
        "--rank-table", "/user/serverid/devindex/config/hccl.json", "--devices-per-server", "4",
        "--pretrained-ckpt", "/runs/base/pretrain/last.ckpt",
        "--set", "epochs=5", "--set", "batch_size=60"]


def test_dynamic_command_has_no_rank_table():
    command = launch_command(JobSpec(loss="triplet", name="d", launch="dynamic", servers=2))
    assert "--rank-table" not in command
    assert command[command.index("--launch") + 1] == "dynamic"
    assert command[command.index("--devices-per-server") + 1] == "8"


def _env(spec):
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in launch_env(spec)}


def test_rank_table_env_gives_ips_and_devices_from_the_downward_api():
    env = _env(JobSpec(loss="triplet", name="r"))
    assert env == {
        "POD_IP": {"fieldRef": {"fieldPath": "status.podIP"}},
        "HOST_IP": {"fieldRef": {"fieldPath": "status.hostIP"}},
        "ASCEND_VISIBLE_DEVICES": {"fieldRef": {"fieldPath": "metadata.annotations['huawei.com/Ascend910']"}},
    }


@pytest.mark.parametrize("servers, devices, workers", [(1, 8, 8), (1, 2, 2), (4, 8, 32)],
                         ids=["1x8", "1x2", "4x8"])
def test_dynamic_env_points_every_pod_at_task_index_0(servers, devices, workers):
    env = _env(JobSpec(loss="triplet", name="dyn", launch="dynamic", servers=servers,
                       devices_per_server=devices, scheduler_port=9000))
    assert env["MS_SCHED_HOST"] == "dyn-worker-0.dyn"
    assert env["MS_SCHED_PORT"] == "9000"
    assert env["MS_WORKER_NUM"] == str(workers)
    assert env["MS_NODE_RANK"] == {"fieldRef": {"fieldPath": "metadata.labels['volcano.sh/task-index']"}}


def test_unnamed_spec_is_refused():
    with pytest.raises(ValueError, match="name"):
        launch_command(JobSpec(loss="triplet"))
