"""Checkpoint files: written atomically, self-describing, found again by epoch.

A checkpoint holds the network's parameters plus a JSON `meta` string (stage, epoch, global
step, config and its digest, the network spec), so `eval` and `export` can rebuild the
network from the file alone. Files are written to a temporary name, fsynced and renamed, so
a reader never sees half a checkpoint.
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from job.errors import JobError

log = logging.getLogger("job.checkpoints")

_NAME = re.compile(r"^(?P<stage>[a-z]+)-e(?P<epoch>\d{3,})\.ckpt$")


def checkpoint_name(stage: str, epoch: int) -> str:
    return f"{stage}-e{epoch:03d}.ckpt"


def save(net, path: Path, meta: dict[str, Any], extra_params: list | None = None) -> Path:
    """Write `net`'s parameters (and `extra_params`, e.g. optimizer moments) atomically."""
    import mindspore as ms

    path.parent.mkdir(parents=True, exist_ok=True)
    # MindSpore appends ".ckpt" to names without it, so the temporary name keeps the suffix.
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.ckpt")
    params = [{"name": p.name, "data": p} for p in net.get_parameters()]
    for p in extra_params or []:
        params.append({"name": p.name, "data": p})
    ms.save_checkpoint(params, str(tmp), append_dict={"meta": json.dumps(meta, sort_keys=True)})
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def load(path: str | Path) -> tuple[dict, dict[str, Any]]:
    """(parameter dict, meta). A file that is not a readable checkpoint is a JobError."""
    import mindspore as ms

    p = Path(path)
    if not p.is_file():
        raise JobError(f"checkpoint {p} does not exist")
    try:
        params = ms.load_checkpoint(str(p))
    except Exception as e:  # MindSpore raises ValueError/RuntimeError on corrupt files
        raise JobError(f"checkpoint {p} cannot be read ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else 'corrupt'}); "
                       f"it may be truncated: delete it or pick another") from e
    meta_raw = params.pop("meta", None)
    meta = json.loads(str(meta_raw)) if meta_raw is not None else {}
    return params, meta


def list_checkpoints(directory: Path, stage: str | None = None) -> list[Path]:
    """Checkpoints in `directory` ordered by epoch (oldest first)."""
    if not directory.is_dir():
        return []
    found = []
    for f in directory.iterdir():
        m = _NAME.match(f.name)
        if m and (stage is None or m["stage"] == stage):
            found.append((int(m["epoch"]), f))
    return [f for _, f in sorted(found)]


def latest(directory: Path, stage: str | None = None) -> Path | None:
    ckpts = list_checkpoints(directory, stage)
    return ckpts[-1] if ckpts else None


def prune(directory: Path, stage: str, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints of a stage."""
    for old in list_checkpoints(directory, stage)[:-keep]:
        old.unlink(missing_ok=True)
        log.info("removed old checkpoint %s (keep_checkpoint_max=%d)", old.name, keep)
