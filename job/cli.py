"""`python -m job <command>`: the job's command line (what a rank pod runs, also locally).

Run directory layout (one per job):  RUN/pretrain/  RUN/finetune/  (each: config.yaml,
metrics.json, train.log, checkpoints/)  RUN/eval/metrics.json  RUN/export/.
A user error prints one `error: ...` line and exits with code 2.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from job.checkpoints import TRAIN_STAGES
from job.errors import ConfigError, JobError

log = logging.getLogger("job.cli")

DEMO_CLASSES = (400, 300)   # train, test classes of the demo data: a few minutes on 2 cores
LOSS_CHOICES = ("triplet", "quadruplet", "softmax")   # softmax: only with --stages pretrain[,eval]


def _add_common_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="dataset root in SOP layout")
    p.add_argument("--run-dir", type=Path, required=True, help="the run directory (RUN)")
    p.add_argument("--profile", default="auto", choices=("auto", "ascend", "cpu"),
                   help="preset overlay: cpu = small images and backbone (auto: by device)")
    p.add_argument("--config", type=Path, help="YAML file of config overrides")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value (repeatable), e.g. --set epochs=5")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "ascend"))
    p.add_argument("--force-new", action="store_true",
                   help="start a stage over when RUN holds it with another config")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m job", description=__doc__.splitlines()[0])
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prepare-sop", help="write the list files (train.txt, *_half, *_tiny)")
    p.add_argument("--root", type=Path, required=True, help="folder holding Ebay_train.txt")

    p = sub.add_parser("make-demo-data", help="build a small dataset in SOP layout")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--source", default="auto", choices=("auto", "fashion-mnist", "synthetic"))
    p.add_argument("--train-classes", type=int, default=DEMO_CLASSES[0])
    p.add_argument("--test-classes", type=int, default=DEMO_CLASSES[1])
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("train", help="train one stage: pretrain (softmax) or finetune")
    p.add_argument("--stage", required=True, choices=TRAIN_STAGES)
    p.add_argument("--loss", default="triplet", choices=LOSS_CHOICES,
                   help="fine-tuning loss preset (pretrain always uses softmax)")
    p.add_argument("--init", type=Path, help="checkpoint to start the backbone from "
                   "(finetune default: the newest RUN/pretrain checkpoint)")
    _add_common_train(p)

    p = sub.add_parser("eval", help="Recall@K and MAP@R of a checkpoint")
    p.add_argument("--data", type=Path, required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path)
    src.add_argument("--run-dir", type=Path, help="evaluate the newest checkpoint of RUN")
    p.add_argument("--split", help="split to evaluate (default: the checkpoint's eval_split)")
    p.add_argument("--out", type=Path, help="metrics JSON (default RUN/eval/metrics.json or "
                   "next to the checkpoint)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int)
    p.add_argument("--show", type=int, default=0, metavar="N",
                   help="also write a PNG of N random queries and their top-5 neighbours")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "ascend"))

    p = sub.add_parser("eval-batch", help="evaluate many checkpoints, one process per device")
    p.add_argument("--checkpoints", nargs="+", required=True, metavar="FILE|GLOB|RUN_DIR")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", help="default: each checkpoint's eval_split")
    p.add_argument("--force", action="store_true", help="re-evaluate already evaluated ones")
    p.add_argument("--shard", help="I/N: evaluate only share I of N (what each device runs)")
    p.add_argument("--devices", type=int, default=1, help="processes (devices) on this server")
    p.add_argument("--servers", type=int, default=1)
    p.add_argument("--server-index", type=int,
                   help="this server's index (default: VC_TASK_INDEX, else 0)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "ascend"))

    p = sub.add_parser("export", help="export the feature extractor (MINDIR by default)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path)
    src.add_argument("--run-dir", type=Path, help="export the newest checkpoint of RUN")
    p.add_argument("--out", type=Path, help="output file (default RUN/export/<name>.mindir)")
    p.add_argument("--format", default="MINDIR", choices=("MINDIR", "AIR", "ONNX"))
    p.add_argument("--image-size", type=int)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "ascend"))

    p = sub.add_parser("launch", help="run stages as a rank pod does (or --local on this machine)")
    p.add_argument("--stages", default="pretrain,finetune,eval",
                   help="comma-separated, in order: pretrain,finetune,eval,export")
    p.add_argument("--loss", default="triplet", choices=LOSS_CHOICES)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--launch", dest="mode", default="single", choices=("rank-table", "dynamic", "single"))
    p.add_argument("--rank-table", type=Path, help="the mounted hccl.json (rank-table mode)")
    p.add_argument("--rank-table-timeout", type=float, default=900.0, metavar="SECONDS")
    p.add_argument("--devices-per-server", type=int)
    p.add_argument("--pretrained-ckpt", type=Path, help="ImageNet backbone for pretrain")
    p.add_argument("--local", action="store_true", help="run on this machine (CPU, msrun-style ranks)")
    p.add_argument("--ranks", type=int, default=1, help="with --local: number of ranks")
    p.add_argument("--profile", default="auto", choices=("auto", "ascend", "cpu"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "ascend"))
    p.add_argument("--force-new", action="store_true")

    _add_data_parsers(sub)
    return ap


# ---------------------------------------------------------------- commands

def cmd_prepare_sop(a) -> int:
    from job.data import prepare_sop

    written = prepare_sop(a.root)
    for name, lines in written.items():
        print(f"{a.root / name}: {lines} lines")
    return 0


def cmd_make_demo_data(a) -> int:
    from job.data import make_demo_data

    info = make_demo_data(a.out, source=a.source, train_classes=a.train_classes,
                          test_classes=a.test_classes, image_size=a.image_size, seed=a.seed)
    print(f"demo dataset in {a.out}: {json.dumps(info)}")
    return 0


def _profile(profile: str, device_target: str) -> str:
    if profile == "auto":
        return "ascend" if device_target == "Ascend" else "cpu"
    return profile


def run_train(*, stage: str, loss: str, data: Path, run_dir: Path, profile: str = "auto",
              config: Path | None = None, overrides: list[str] | None = None,
              init: Path | None = None, device: str = "auto", force_new: bool = False) -> dict:
    from job import checkpoints
    from job.config import build_config
    from job.presets import preset, preset_for_stage
    from job.runtime import init_mindspore, setup_logging
    from job.train.trainer import train

    from job.distributed import init_distributed

    target = init_mindspore(device)
    ranks = init_distributed()          # a dynamic-cluster scheduler process exits here
    stage_dir = run_dir / stage
    setup_logging(stage_dir / "train.log" if ranks.rank == 0 else None)
    cfg = build_config(preset(preset_for_stage(stage, loss), _profile(profile, target)),
                       yaml_file=config, overrides=overrides)
    if stage == "finetune" and init is None:
        init = checkpoints.latest(run_dir / "pretrain" / "checkpoints")
        if init is None:
            raise JobError(f"no pretrain checkpoint in {run_dir / 'pretrain' / 'checkpoints'}: "
                           f"run `python -m job train --stage pretrain` first or pass --init CKPT")
    if stage == "pretrain" and init is None:
        log.warning("no --init checkpoint: pretraining starts from random weights "
                    "(the reference starts from an ImageNet ResNet50)")
    return train(cfg, data_root=data, run_dir=stage_dir, stage=stage, init_checkpoint=init,
                 device_target=target, ranks=ranks, force_new=force_new)


def cmd_train(a) -> int:
    run_train(stage=a.stage, loss=a.loss, data=a.data, run_dir=a.run_dir, profile=a.profile,
              config=a.config, overrides=a.overrides, init=a.init, device=a.device,
              force_new=a.force_new)
    return 0


def newest_checkpoint(run_dir: Path) -> Path:
    """The newest checkpoint of the last trained stage of a run directory."""
    from job import checkpoints

    found = checkpoints.newest_in_run(run_dir)
    if found:
        return found
    raise JobError(f"no checkpoint under {run_dir}/{{pretrain,finetune}}/checkpoints; "
                   f"train first or pass --checkpoint")


def run_eval(*, data: Path, checkpoint: Path | None = None, run_dir: Path | None = None,
             split: str | None = None, out: Path | None = None, batch_size: int = 64,
             image_size: int | None = None, device: str = "auto", show: int = 0) -> dict:
    from job.evaluation.evaluate import evaluate, format_metrics
    from job.runtime import init_mindspore, setup_logging
    from job.train.trainer import write_json

    init_mindspore(device)
    ckpt = checkpoint or newest_checkpoint(run_dir)
    if out is None:
        out = (run_dir / "eval" / "metrics.json") if run_dir else ckpt.with_suffix(".metrics.json")
    setup_logging(out.parent / "eval.log")
    if show < 0:
        raise ConfigError(f"--show must be >= 0, got {show}")
    metrics = evaluate(ckpt, data_root=data, split_name=split, batch_size=batch_size,
                       image_size=image_size, show=show,
                       grid_path=out.with_name(out.stem.replace("metrics", "retrieval") + ".png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, metrics)
    print(format_metrics(metrics), flush=True)
    log.info("metrics written to %s", out)
    return metrics


def cmd_eval(a) -> int:
    run_eval(data=a.data, checkpoint=a.checkpoint, run_dir=a.run_dir, split=a.split,
             out=a.out, batch_size=a.batch_size, image_size=a.image_size, device=a.device,
             show=a.show)
    return 0


def cmd_eval_batch(a) -> int:
    import os

    from job.evaluation import batch
    from job.runtime import init_mindspore, setup_logging

    ckpts = batch.expand_checkpoints(a.checkpoints)
    if a.shard:
        index, _, count = a.shard.partition("/")
        if not (index.isdigit() and count.isdigit()):
            raise ConfigError(f"--shard {a.shard!r} must look like I/N, e.g. 3/8")
        mine = batch.shard(ckpts, int(index), int(count))
        init_mindspore(a.device)
        setup_logging()
        if not mine:
            log.info("shard %s: nothing to do (%d checkpoints over %s shards)", a.shard,
                     len(ckpts), count)
            return 0
        done, skipped = batch.run_shard(mine, data=a.data, split=a.split, force=a.force,
                                        batch_size=a.batch_size)
        log.info("shard %s: %d evaluated, %d skipped", a.shard, done, skipped)
        return 0
    if a.devices < 1 or a.servers < 1:
        raise ConfigError("--devices and --servers must be >= 1")
    server = a.server_index if a.server_index is not None else int(os.environ.get("VC_TASK_INDEX", "0") or 0)
    if not 0 <= server < a.servers:
        raise ConfigError(f"--server-index {server} is outside 0..{a.servers - 1}")
    setup_logging(prefix="eval-batch")
    log.info("%d checkpoints over %d shards (%d servers x %d devices)", len(ckpts),
             a.servers * a.devices, a.servers, a.devices)
    base = ["eval-batch", "--checkpoints", *map(str, ckpts), "--data", str(a.data),
            "--batch-size", str(a.batch_size), "--device", a.device]
    if a.split:
        base += ["--split", a.split]
    if a.force:
        base.append("--force")
    return batch.spawn_devices(base, devices=a.devices, server_index=server, servers=a.servers)


def cmd_export(a) -> int:
    from job.export import FORMATS, export
    from job.runtime import init_mindspore, setup_logging

    init_mindspore(a.device)
    setup_logging()
    ckpt = a.checkpoint or newest_checkpoint(a.run_dir)
    out = a.out or ((a.run_dir / "export") if a.run_dir else ckpt.parent) / (
        ckpt.stem + FORMATS[a.format])
    written = export(ckpt, out, file_format=a.format, image_size=a.image_size)
    print(written)
    return 0


def cmd_launch(a) -> int:
    from job.launch import LaunchOptions, parse_stages, run
    from job.runtime import setup_logging

    setup_logging(a.run_dir / "launch.log", verbose=a.verbose, prefix="launch")
    opts = LaunchOptions(
        stages=parse_stages(a.stages), loss=a.loss, data=a.data, run_dir=a.run_dir,
        mode=a.mode, rank_table=a.rank_table, devices_per_server=a.devices_per_server,
        pretrained_ckpt=a.pretrained_ckpt, overrides=a.overrides, profile=a.profile,
        device="cpu" if a.local and a.device == "auto" else a.device, force_new=a.force_new,
        local_ranks=a.ranks if a.local else None, rank_table_timeout=a.rank_table_timeout,
        verbose=a.verbose)
    return run(opts)


# ---------------------------------------------------------------- the data volume (job/data/volume.py)

def _add_data_parsers(sub) -> None:
    """What the data pods of `python -m operator_client data ...` run (and --local runs here)."""
    p = sub.add_parser("data-install", help="fetch, verify and unpack SOP into a folder, write the lists",
                       description="Fetch (http/https) or read (path) the SOP archive or unpacked "
                                   "folder, verify it, unpack it next to --dest and rename it into "
                                   "place, then write the list files. Does nothing when --dest is "
                                   "already prepared.")
    p.add_argument("--source", required=True, metavar="URL|PATH",
                   help="http(s) URL (object stores: a pre-signed https URL), a .zip/.tar[.gz] "
                        "archive, or a folder holding the unpacked dataset")
    p.add_argument("--dest", type=Path, required=True, help="dataset folder to create, e.g. /data/sop")
    p.add_argument("--sha256", metavar="HEX", help="expected SHA-256 of the archive")
    p.add_argument("--allow-partial", action="store_true",
                   help="install even if image counts differ from the expected ones or images are missing")
    p.add_argument("--expect-train", type=int, metavar="N", help="train images (default: 59,551)")
    p.add_argument("--expect-test", type=int, metavar="N", help="test images (default: 60,502)")
    p.add_argument("--force", action="store_true", help="replace a dataset already at --dest")
    p.add_argument("--consume-source", action="store_true",
                   help="remove the source afterwards (a folder is moved instead of copied)")
    p.add_argument("--pretrained", type=Path, metavar="FILE", help="also report this checkpoint")
    p.add_argument("--progress-interval", type=float, default=5.0, metavar="SECONDS")

    p = sub.add_parser("data-status", help="what a dataset folder holds, as `sop-data {json}` lines")
    p.add_argument("--root", type=Path, required=True, help="the dataset folder, e.g. /data/sop")
    p.add_argument("--pretrained", type=Path, metavar="FILE", help="also report this checkpoint")
    p.add_argument("--sample", type=int, default=200, metavar="N",
                   help="listed images per split to look for on disk (default: 200)")

    p = sub.add_parser("data-receive", help="unpack a tar stream from stdin into a folder, atomically")
    p.add_argument("--dest", type=Path, required=True)
    p.add_argument("--sha256", action="append", default=[], metavar="NAME=HEX",
                   help="expected SHA-256 of a member (repeatable)")
    p.add_argument("--replace", action="store_true", help="replace folders of the same name")
    p.add_argument("--progress-interval", type=float, default=5.0, metavar="SECONDS")


def cmd_data_install(a) -> int:
    from job.data import volume

    expect = dict(volume.OFFICIAL_COUNTS)
    for split, value in (("train", a.expect_train), ("test", a.expect_test)):
        if value is not None:
            if value < 1:
                raise ConfigError(f"--expect-{split} must be at least 1, got {value}")
            expect[split] = value
    with volume.os_errors_as_data_errors():
        result = volume.install(a.source, a.dest, sha256=a.sha256, allow_partial=a.allow_partial,
                                expect=expect, force=a.force, consume_source=a.consume_source,
                                interval=a.progress_interval)
        findings = volume.status(a.dest, pretrained=a.pretrained)
    for finding in [result, *findings]:
        volume.emit(finding)
    return 0


def cmd_data_status(a) -> int:
    from job.data import volume

    if a.sample < 0:
        raise ConfigError(f"--sample must be >= 0, got {a.sample}")
    with volume.os_errors_as_data_errors():
        findings = volume.status(a.root, pretrained=a.pretrained, sample=a.sample)
    for finding in findings:
        volume.emit(finding)
    return 0


def cmd_data_receive(a) -> int:
    from job.data import volume

    wanted = {}
    for item in a.sha256:
        name, sep, digest = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--sha256 {item!r} must look like NAME=HEX")
        wanted[name] = digest
    # progress goes to stderr: stdout carries the finding the client reads
    with volume.os_errors_as_data_errors():
        finding = volume.receive(sys.stdin.buffer, a.dest, sha256=wanted, replace=a.replace,
                                 report=lambda line: print(line, file=sys.stderr, flush=True),
                                 interval=a.progress_interval)
    volume.emit(finding)
    return 0


COMMANDS = {"prepare-sop": cmd_prepare_sop, "make-demo-data": cmd_make_demo_data,
            "train": cmd_train, "eval": cmd_eval, "export": cmd_export, "launch": cmd_launch,
            "eval-batch": cmd_eval_batch, "data-install": cmd_data_install,
            "data-status": cmd_data_status, "data-receive": cmd_data_receive}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except JobError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "mindspore":
            print("error: MindSpore is not installed; install the job extra: "
                  "pip install -e '.[job]'", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
