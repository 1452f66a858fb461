"""`job eval-batch`: evaluate many checkpoints, one process per device, each writing its
metrics next to the checkpoint (`<name>.<split>.metrics.json`).

Checkpoint j of the sorted list goes to shard j % S (S = servers x devices), so shards never
overlap and together cover the list. A checkpoint already evaluated on the same split with
the same content (SHA-256) is skipped unless `force`.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import sys
from pathlib import Path

from job import checkpoints
from job.errors import ConfigError, JobError

log = logging.getLogger("job.eval")


def expand_checkpoints(patterns: list[str]) -> list[Path]:
    """Files, globs, or run directories (their epoch checkpoints), sorted and de-duplicated."""
    found: set[Path] = set()
    for pattern in patterns:
        p = Path(pattern)
        if p.is_dir():
            hits = [f for f in p.rglob("*.ckpt") if checkpoints.is_epoch_checkpoint(f)]
        elif any(ch in pattern for ch in "*?["):
            hits = [Path(f) for f in glob.glob(pattern, recursive=True) if f.endswith(".ckpt")]
        elif p.is_file():
            hits = [p]
        else:
            raise JobError(f"{pattern}: no such checkpoint file, directory or pattern")
        if not hits:
            raise JobError(f"{pattern}: matches no checkpoint (*.ckpt)")
        found.update(h.resolve() for h in hits)
    return sorted(found)


def shard(items: list, index: int, count: int) -> list:
    """Round-robin share `index` of `count`: disjoint, and together all of `items`."""
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"shard {index}/{count}: need 0 <= index < count")
    return items[index::count]


def file_sha256(path: Path) -> str:
    """From the checkpoint's manifest when it matches the file's size, else computed."""
    try:
        manifest = json.loads(checkpoints.manifest_path(path).read_text())
        if manifest.get("bytes") == path.stat().st_size and manifest.get("sha256"):
            return manifest["sha256"]
    except (OSError, ValueError):
        pass
    return checkpoints.sha256_of(path)


def metrics_path(ckpt: Path, split: str) -> Path:
    safe = split.replace("/", "_")
    return ckpt.with_name(f"{ckpt.stem}.{safe}.metrics.json")


def already_done(ckpt: Path, split: str, sha: str) -> bool:
    try:
        m = json.loads(metrics_path(ckpt, split).read_text())
    except (OSError, ValueError):
        return False
    return m.get("checkpoint_sha256") == sha and m.get("split") == split


def run_shard(ckpts: list[Path], *, data: Path, split: str | None, force: bool,
              batch_size: int = 64) -> tuple[int, int]:
    """Evaluate this process's checkpoints. Returns (evaluated, skipped)."""
    from job.evaluation.evaluate import evaluate, format_metrics
    from job.train.trainer import write_json

    done = skipped = 0
    for i, ckpt in enumerate(ckpts, 1):
        _, meta = checkpoints.load(ckpt)
        use_split = split or meta.get("config", {}).get("eval_split", "test")
        sha = file_sha256(ckpt)
        if not force and already_done(ckpt, use_split, sha):
            log.info("[%d/%d] %s: already evaluated on %s; skipping (--force to redo)", i,
                     len(ckpts), ckpt.name, use_split)
            skipped += 1
            continue
        log.info("[%d/%d] evaluating %s on %s", i, len(ckpts), ckpt, use_split)
        metrics = evaluate(ckpt, data_root=data, split_name=use_split, batch_size=batch_size)
        metrics["checkpoint_sha256"] = sha
        write_json(metrics_path(ckpt, use_split), metrics)
        print(format_metrics(metrics), flush=True)
        done += 1
    return done, skipped


def spawn_devices(argv_base: list[str], *, devices: int, server_index: int, servers: int,
                  out=None) -> int:
    """One process per local device, each with its shard; rank-prefixed output, fail-fast."""
    from job.launch import ProcessGroup

    total = devices * servers
    group = ProcessGroup(out)
    for d in range(devices):
        index = server_index * devices + d
        env = {**os.environ, "DEVICE_ID": str(d), "RANK_ID": str(index), "RANK_SIZE": "1"}
        env.pop("MS_ROLE", None)
        group.start(f"shard {index}", [sys.executable, "-m", "job", *argv_base,
                                        "--shard", f"{index}/{total}"], env)
    code, label = group.wait()
    if code:
        log.error("%s failed with exit code %d; the other shards were stopped", label, code)
        return code if 0 < code < 128 else 1
    return 0
