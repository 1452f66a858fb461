"""Checkpoint files: written atomically, self-describing, verified before use.

A checkpoint `<stage>-eNNN.ckpt` holds the network's parameters plus a JSON `meta` string
(stage, epoch, global step, config and its digest, the network spec), so `eval` and `export`
rebuild the network from the file alone. Beside it, a manifest `<name>.ckpt.json` records
the same facts plus the file's size and SHA-256. Both are written to a temporary name,
fsynced and renamed: a reader never sees half a file, and a checkpoint whose manifest is
missing or does not match (truncated, corrupted, or killed between the two renames) is
skipped with a warning, never loaded.

`resume.ckpt` is the stage's latest resume state: weights, optimizer moments and the
position (epoch, step in epoch, global step); it is overwritten as training goes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from job.errors import JobError

log = logging.getLogger("job.checkpoints")

_NAME = re.compile(r"^(?P<stage>[a-z]+)-e(?P<epoch>\d{3,})\.ckpt$")
RESUME_NAME = "resume.ckpt"
# The training stages of a run directory, in pipeline order: RUN/<stage>/checkpoints/.
TRAIN_STAGES = ("pretrain", "finetune")


class CorruptCheckpoint(JobError):
    """A checkpoint file that does not match its manifest or cannot be parsed."""


def checkpoint_name(stage: str, epoch: int) -> str:
    return f"{stage}-e{epoch:03d}.ckpt"


def is_epoch_checkpoint(path: Path) -> bool:
    """`<stage>-eNNN.ckpt` (not resume state, not temporary files)."""
    return bool(_NAME.match(path.name))


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def save(net, path: Path, meta: dict[str, Any], extra_params: list | None = None) -> Path:
    """Write `net`'s parameters (and `extra_params`, e.g. optimizer moments) atomically, then
    the manifest. Returns `path`."""
    import mindspore as ms

    path.parent.mkdir(parents=True, exist_ok=True)
    # MindSpore appends ".ckpt" to names without it, so the temporary name keeps the suffix.
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.ckpt")
    params = [{"name": p.name, "data": p} for p in net.get_parameters()]
    params += [{"name": p.name, "data": p} for p in extra_params or []]
    ms.save_checkpoint(params, str(tmp), append_dict={"meta": json.dumps(meta, sort_keys=True)})
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    manifest = {**{k: meta[k] for k in ("stage", "epoch", "global_step", "config_digest")
                   if k in meta},
                "file": path.name, "bytes": tmp.stat().st_size, "sha256": sha256_of(tmp)}
    manifest_path(path).unlink(missing_ok=True)   # never a stale manifest beside a new file
    os.replace(tmp, path)
    write_atomic(manifest_path(path), (json.dumps(manifest, indent=2) + "\n").encode())
    return path


def verify(path: Path) -> dict[str, Any]:
    """The manifest of a checkpoint whose size and SHA-256 match it; else CorruptCheckpoint."""
    mpath = manifest_path(path)
    if not path.is_file():
        raise CorruptCheckpoint(f"{path} does not exist")
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise CorruptCheckpoint(f"{path} has no manifest {mpath.name} (its write was "
                                f"interrupted)") from None
    except ValueError:
        raise CorruptCheckpoint(f"{mpath} is not valid JSON") from None
    size = path.stat().st_size
    if size != manifest.get("bytes"):
        raise CorruptCheckpoint(f"{path} has {size} bytes, its manifest says "
                                f"{manifest.get('bytes')} (truncated?)")
    if sha256_of(path) != manifest.get("sha256"):
        raise CorruptCheckpoint(f"{path} does not match the SHA-256 in its manifest (corrupt)")
    return manifest


def load(path: str | Path, *, verified: bool = False) -> tuple[dict, dict[str, Any]]:
    """(parameter dict, meta). With `verified`, the manifest must match first.

    A file that is not a readable checkpoint is a JobError naming it.
    """
    import mindspore as ms

    p = Path(path)
    if not p.is_file():
        raise JobError(f"checkpoint {p} does not exist")
    if verified:
        verify(p)
    try:
        params = ms.load_checkpoint(str(p))
    except Exception as e:  # MindSpore raises ValueError/RuntimeError on corrupt files
        first = str(e).strip().splitlines()[0] if str(e).strip() else "corrupt"
        raise CorruptCheckpoint(f"checkpoint {p} cannot be read ({type(e).__name__}: {first}); "
                                f"it may be truncated: delete it or pick another") from e
    meta_raw = params.pop("meta", None)
    meta = json.loads(str(meta_raw)) if meta_raw is not None else {}
    return params, meta


def list_checkpoints(directory: Path, stage: str | None = None) -> list[Path]:
    """Epoch checkpoints in `directory` ordered by epoch (oldest first)."""
    if not directory.is_dir():
        return []
    found = []
    for f in directory.iterdir():
        m = _NAME.match(f.name)
        if m and (stage is None or m["stage"] == stage):
            found.append((int(m["epoch"]), f))
    return [f for _, f in sorted(found)]


def latest(directory: Path, stage: str | None = None) -> Path | None:
    """The newest epoch checkpoint that matches its manifest; damaged ones are skipped with
    a warning."""
    for path in reversed(list_checkpoints(directory, stage)):
        try:
            verify(path)
            return path
        except CorruptCheckpoint as e:
            log.warning("skipping checkpoint: %s", e)
    return None


def newest_in_run(run_dir: Path) -> Path | None:
    """The newest sound checkpoint of the last stage of `run_dir` that has one."""
    for stage in reversed(TRAIN_STAGES):
        found = latest(run_dir / stage / "checkpoints")
        if found:
            return found
    return None


def prune(directory: Path, stage: str, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints of a stage (and their manifests)."""
    for old in list_checkpoints(directory, stage)[:-keep]:
        old.unlink(missing_ok=True)
        manifest_path(old).unlink(missing_ok=True)
        log.info("removed old checkpoint %s (keep_checkpoint_max=%d)", old.name, keep)
