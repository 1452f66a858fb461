"""`eval-batch`: one Volcano job that evaluates many checkpoints, one per device at a time.

The pods run `python -m job eval-batch` (see launch_command.eval_batch_command); each device
takes a round-robin share of the checkpoint list, writes `<checkpoint>.<split>.metrics.json`
next to each checkpoint, and skips checkpoints already evaluated (same SHA-256 and split)
unless --force. Devices are independent, so the job needs no rank table.
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import names
from .errors import SpecError
from .launch_command import eval_batch_command
from .render import render_job
from .spec import JobSpec

LABEL_KIND = "sop-metric-job/kind"


def check_checkpoints(checkpoints: list[str]) -> list[str]:
    """Checkpoint arguments as the pods see them: absolute paths, globs or run directories."""
    if not checkpoints:
        raise SpecError("eval-batch needs --checkpoints: files, globs or run directories")
    for c in checkpoints:
        if not c.startswith("/"):
            raise SpecError(f"--checkpoints {c!r} must be a path as the pods see it, e.g. "
                            f"{names.RUNS_MOUNT}/<job>/finetune/checkpoints/*.ckpt or {names.RUNS_MOUNT}/<job>")
    return list(checkpoints)


def render_eval_batch(spec: JobSpec, checkpoints: list[str], *, split: str | None = None,
                      force: bool = False) -> list[dict[str, Any]]:
    """The eval-batch Volcano job: `spec` gives servers, devices, image, volumes and queue."""
    checkpoints = check_checkpoints(checkpoints)
    base = dataclasses.replace(spec, launch="dynamic", stages=("eval",))
    job = render_job(base)
    job["metadata"]["labels"][LABEL_KIND] = "eval-batch"
    job["metadata"]["annotations"] = {names.ANNOTATION_STAGES: "eval-batch"}
    pod = job["spec"]["tasks"][0]["template"]
    (container,) = pod["spec"]["containers"]
    container["command"] = eval_batch_command(
        checkpoints, devices_per_server=spec.devices_per_server, servers=spec.servers,
        split=split, force=force, device="cpu" if spec.on_cpu else None)
    # independent devices: no MindSpore cluster, so none of the dynamic-mode env
    container["env"] = [e for e in container["env"] if not e["name"].startswith("MS_")]
    return [job]


def run_local(checkpoints: list[str], *, data: Path, devices: int, split: str | None,
              force: bool) -> int:
    """The same evaluation on this machine: `devices` processes on the CPU."""
    missing = [c for c in checkpoints if not any(ch in c for ch in "*?[") and not Path(c).exists()]
    if missing:
        raise SpecError(f"--checkpoints {missing[0]!r} does not exist here")
    if not data.is_dir():
        raise SpecError(f"--data {data} is not a directory")
    command = eval_batch_command([str(c) for c in checkpoints], devices_per_server=devices,
                                 servers=1, split=split, force=force, data_dir=str(data),
                                 device="cpu", python=sys.executable)
    return subprocess.call(command)
