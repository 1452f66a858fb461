"""The contract with the job side: the command line and env a rank pod's container runs with.

`launch_command` is the one place that builds `python -m job launch ...`; `launch_env` the env
vars the launcher reads. Everything else (render, the CPU variant, eval jobs) calls these.
"""
from __future__ import annotations

from typing import Any

from . import names
from .spec import JobSpec


def launch_command(spec: JobSpec, *, local_ranks: int | None = None, data_dir: str | None = None,
                   run_dir: str | None = None, python: str = "python") -> list[str]:
    """The rank pod's command: `python -m job launch --stages ... --loss ... ...`.

    Rank-table mode passes the mounted table; dynamic mode passes nothing cluster-specific on
    the command line (the MS_SCHED_* env of `launch_env` carries it). With `local_ranks`, the
    same launcher on this machine (`--local --ranks N`, CPU), reading `data_dir` and writing
    `run_dir` instead of the pod's mounts.
    """
    if spec.name is None:
        raise ValueError("launch_command needs a spec with a name (JobSpec.with_name())")
    command = [
        python, "-m", "job", "launch",
        "--stages", ",".join(spec.stages),
        "--loss", spec.loss,
        "--data", data_dir or names.DATA_DIR,
        "--run-dir", run_dir or names.run_dir(spec.name),
    ]
    if local_ranks is not None:
        command += ["--local", "--ranks", str(local_ranks), "--device", "cpu"]
    else:
        command += ["--launch", spec.launch]
        if spec.uses_rank_table:
            command += ["--rank-table", names.RANK_TABLE_FILE]
        command += ["--devices-per-server", str(spec.devices_per_server)]
        if spec.on_cpu:
            command += ["--device", "cpu"]
    if local_ranks is not None:   # no data volume here: only an explicit checkpoint
        pretrained = None if spec.pretrained_ckpt == names.NO_PRETRAINED_CKPT else spec.pretrained_ckpt
    else:
        pretrained = pretrained_checkpoint(spec)
    if pretrained is not None:
        command += ["--pretrained-ckpt", pretrained]
    for key, value in spec.overrides:
        command += ["--set", f"{key}={value}"]
    return command


def pretrained_checkpoint(spec: JobSpec) -> str | None:
    """The checkpoint a cluster job's pretrain stage starts from (None: random weights).

    `--pretrained-ckpt PATH` if given ('none': random weights); else, when the stages pretrain on
    Ascend, the ImageNet ResNet50 that `data put-checkpoint` places on the data volume
    (names.DEFAULT_PRETRAINED_CKPT; `submit` refuses when the volume's record lacks it). The CPU
    variant trains the small `resnet-mini` backbone, which no ImageNet ResNet50 fits.
    """
    if spec.pretrained_ckpt == names.NO_PRETRAINED_CKPT:
        return None
    if spec.pretrained_ckpt is not None:
        return spec.pretrained_ckpt
    return names.DEFAULT_PRETRAINED_CKPT if "pretrain" in spec.stages and not spec.on_cpu else None


def _field_env(name: str, field_path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


def launch_env(spec: JobSpec) -> list[dict[str, Any]]:
    """Env vars of the rank container (besides VC_TASK_INDEX, which Volcano's env plugin adds).

    Both modes: POD_IP and HOST_IP (downward API; the rank table's server_id is the host IP)
    and ASCEND_VISIBLE_DEVICES from the device plugin's annotation.
    Dynamic mode adds MS_SCHED_HOST (the pod with task index 0, through the svc plugin's
    headless Service), MS_SCHED_PORT, MS_WORKER_NUM (= servers x devices) and MS_NODE_RANK.
    MS_NODE_RANK comes from the pod label volcano.sh/task-index, which holds the same value as
    VC_TASK_INDEX: an env value cannot reference VC_TASK_INDEX, because Volcano appends that
    variable after the template's own env and Kubernetes only expands earlier variables.
    """
    if spec.name is None:
        raise ValueError("launch_env needs a spec with a name (JobSpec.with_name())")
    env = [
        _field_env(names.ENV_POD_IP, "status.podIP"),
        _field_env(names.ENV_HOST_IP, "status.hostIP"),
    ]
    if not spec.on_cpu:
        env.append(_field_env(names.ENV_ASCEND_VISIBLE_DEVICES,
                              f"metadata.annotations['{names.ANNOTATION_ASCEND_DEVICES}']"))
    if not spec.uses_rank_table:
        env += [
            {"name": names.ENV_MS_SCHED_HOST, "value": names.scheduler_host(spec.name)},
            {"name": names.ENV_MS_SCHED_PORT, "value": str(spec.scheduler_port)},
            {"name": names.ENV_MS_WORKER_NUM, "value": str(spec.rank_size)},
            _field_env(names.ENV_MS_NODE_RANK, f"metadata.labels['{names.LABEL_VOLCANO_TASK_INDEX}']"),
        ]
    return env


def eval_batch_command(checkpoints: list[str], *, devices_per_server: int, servers: int,
                       split: str | None = None, force: bool = False, data_dir: str | None = None,
                       device: str | None = None, python: str = "python") -> list[str]:
    """`python -m job eval-batch ...`: each pod runs one process per device, and device d of
    server s (VC_TASK_INDEX) evaluates share s*devices+d of the checkpoint list."""
    command = [python, "-m", "job", "eval-batch", "--checkpoints", *checkpoints,
               "--data", data_dir or names.DATA_DIR,
               "--devices", str(devices_per_server), "--servers", str(servers)]
    if split:
        command += ["--split", split]
    if force:
        command.append("--force")
    if device:
        command += ["--device", device]
    return command
