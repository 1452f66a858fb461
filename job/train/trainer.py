"""One training stage (softmax pre-training or metric fine-tuning) on one or more ranks.

The loop is explicit (no `Model.train`) so the learning rate, progress lines, non-finite loss
checks and the sampler position are all ours. The compiled step is forward + loss + backward
(+ gradient all-reduce when there are several ranks) + Momentum update.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from job import checkpoints
from job.config import TrainConfig
from job.data import (BatchLoader, PKBatchSampler, ShuffleBatchSampler, TrainTransform,
                      TripletTupleSampler, check_images, load_split)
from job.errors import DataError, JobError
from job.losses import LOSSES, create_loss

log = logging.getLogger("job.train")


class TrainingDiverged(JobError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among the data-parallel ranks."""

    rank: int = 0
    size: int = 1


def build_sampler(cfg: TrainConfig, labels: np.ndarray, ranks: Ranks):
    """The batch sampler the loss's layout needs, for this rank."""
    layout = LOSSES[cfg.loss].layout
    common = {"rank": ranks.rank, "world_size": ranks.size, "seed": cfg.seed}
    if layout == "shuffle":
        return ShuffleBatchSampler(labels, cfg.batch_size, **common)
    if layout == "pk":
        k = cfg.pk_images
        p = cfg.pk_classes or cfg.batch_size // k
        if p < 2:
            raise DataError(f"a P x K batch needs at least 2 classes: batch_size={cfg.batch_size} "
                            f"with pk_images={k} gives P={p}; raise batch_size")
        return PKBatchSampler(labels, p, k, singletons=cfg.singletons, **common)
    if layout == "triplet-tuples":
        return TripletTupleSampler(labels, cfg.batch_size, **common)
    raise AssertionError(f"unknown layout {layout}")


def _format_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def train(cfg: TrainConfig, *, data_root: Path, run_dir: Path, stage: str,
          init_checkpoint: Path | None = None, ranks: Ranks = Ranks(),
          device_target: str = "CPU") -> dict:
    """Train one stage; write checkpoints, `metrics.json` and `config.yaml` into `run_dir`.

    Returns the stage's summary (also in metrics.json).
    """
    import mindspore as ms
    from mindspore import nn

    from job.model.net import MetricNet, NetSpec, load_backbone

    is_writer = ranks.rank == 0
    split = load_split(data_root, cfg.train_split)
    report = check_images(split)
    if report.missing:
        if len(report.missing) == report.total:
            raise DataError(f"none of the {report.total} images of {split.source} exist under "
                            f"{split.root}; check --data")
        log.warning("%s (they will be replaced by another image of their class)",
                    report.summary())
    labels = split.labels()
    loss_cls = LOSSES[cfg.loss]
    # class ids (not contiguous labels) so messages name the dataset's own classes
    sampler = build_sampler(cfg, split.class_ids, ranks)
    if getattr(sampler, "dropped_classes", None):
        dropped = sampler.dropped_classes
        log.warning("%d classes have a single image and cannot form a positive pair; "
                    "left out of %s (set singletons=error to stop instead): %s%s",
                    len(dropped), cfg.loss, ", ".join(str(c) for c in dropped[:5]),
                    " ..." if len(dropped) > 5 else "")
    steps_per_epoch = len(sampler)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise DataError(f"{split.source}: {len(split)} images are not enough for one batch of "
                        f"{cfg.batch_size} on each of {ranks.size} ranks; lower batch_size")
    total_steps = steps_per_epoch * cfg.epochs

    spec = NetSpec(cfg.backbone, cfg.embedding_dim,
                   int(labels.max()) + 1 if loss_cls.needs_head else 0, cfg.image_size)
    net = MetricNet(spec, seed=cfg.seed)
    if init_checkpoint is not None:
        params, _ = checkpoints.load(init_checkpoint)
        load_backbone(net, params, source=str(init_checkpoint))
    amp = cfg.amp_level if cfg.amp_level != "auto" else ("O3" if device_target == "Ascend" else "O0")
    if amp != "O0":
        # fp16 backbone (the reference's O3 on Ascend); embedding, head and loss stay fp32.
        net.backbone = ms.amp.auto_mixed_precision(net.backbone, amp)
    loss_fn = create_loss(cfg.loss, margin=cfg.margin, margin2=cfg.margin2,
                          label_smoothing=cfg.label_smoothing)
    lrs = lr_values(cfg, steps_per_epoch)
    opt = nn.Momentum(net.trainable_params(), learning_rate=float(lrs[0]), momentum=cfg.momentum,
                      weight_decay=cfg.weight_decay, loss_scale=cfg.loss_scale)
    step = _make_step(net, loss_fn, opt, scale=cfg.loss_scale, head=loss_cls.needs_head,
                      ranks=ranks)

    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = run_dir / "checkpoints"
    if is_writer:
        write_config(run_dir, cfg, stage=stage, data_root=data_root, init=init_checkpoint,
                     ranks=ranks)
    log.info("%s: %s on %s (%d images, %d classes), %s %dpx, %d ranks x batch %d, "
             "%d epochs x %d steps", stage, cfg.loss, split.source, len(split),
             split.num_classes, cfg.backbone, cfg.image_size, ranks.size, cfg.batch_size,
             cfg.epochs, steps_per_epoch)

    transform = TrainTransform(cfg.image_size)
    net.set_train(True)
    history: list[dict] = []
    global_step = 0
    t_start = time.monotonic()
    timed_images, timed_seconds = 0, 0.0
    bad_images: set[str] = set()
    last_ckpt = None
    for epoch in range(cfg.epochs):
        batches = sampler.batches(epoch)[:steps_per_epoch]
        loader = BatchLoader(split, batches, transform, seed=cfg.seed, epoch=epoch,
                             num_workers=cfg.num_workers)
        epoch_losses = []
        window_start, window_images = time.monotonic(), 0
        for i, (images, batch_labels) in enumerate(loader):
            opt.learning_rate.set_data(ms.Tensor(lrs[global_step], ms.float32))
            loss = float(step(ms.Tensor(images), ms.Tensor(batch_labels)).asnumpy())
            global_step += 1
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"loss is {loss} at epoch {epoch + 1} step {i + 1} (global step "
                    f"{global_step}, lr {lrs[global_step - 1]:.3g}); lower lr_max, add warm-up "
                    f"(warmup_epochs) or check loss_scale={cfg.loss_scale:g}")
            epoch_losses.append(loss)
            window_images += len(images)
            if global_step == 1:          # the first step includes graph compilation
                window_start, window_images = time.monotonic(), 0
                log.info("first step done in %.1fs (graph compiled), loss %.4f",
                         time.monotonic() - t_start, loss)
                continue
            if (i + 1) % cfg.log_every == 0 or i + 1 == len(batches):
                elapsed = time.monotonic() - window_start
                speed = window_images / elapsed if elapsed > 0 else 0.0
                timed_images += window_images
                timed_seconds += elapsed
                per_step = timed_seconds / max(global_step - 1, 1)
                log.info("epoch %d/%d step %d/%d loss %.4f lr %.3g %.1f img/s ETA %s",
                         epoch + 1, cfg.epochs, i + 1, len(batches), float(np.mean(epoch_losses[-cfg.log_every:])),
                         lrs[global_step - 1], speed * ranks.size,
                         _format_eta(per_step * (total_steps - global_step)))
                window_start, window_images = time.monotonic(), 0
        bad_images.update(loader.bad_images)
        mean_loss = float(np.mean(epoch_losses))
        history.append({"epoch": epoch + 1, "step": global_step, "loss": mean_loss,
                        "lr": float(lrs[global_step - 1])})
        log.info("epoch %d/%d done: mean loss %.4f", epoch + 1, cfg.epochs, mean_loss)
        last_epoch = epoch + 1 == cfg.epochs
        if is_writer and ((epoch + 1) % cfg.save_checkpoint_epochs == 0 or last_epoch):
            meta = {"stage": stage, "epoch": epoch + 1, "global_step": global_step,
                    "config": cfg.to_dict(), "config_digest": cfg.digest(),
                    "net": spec.to_dict(), "loss": mean_loss}
            last_ckpt = checkpoints.save(net, ckpt_dir / checkpoints.checkpoint_name(stage, epoch + 1), meta)
            checkpoints.prune(ckpt_dir, stage, cfg.keep_checkpoint_max)
            log.info("saved checkpoint %s", last_ckpt)
    seconds = time.monotonic() - t_start
    summary = {
        "stage": stage, "loss": cfg.loss, "epochs": cfg.epochs, "steps": global_step,
        "final_loss": history[-1]["loss"], "history": history, "seconds": round(seconds, 1),
        "images_per_second": round(timed_images * ranks.size / timed_seconds, 2) if timed_seconds else None,
        "checkpoint": str(last_ckpt) if last_ckpt else None, "ranks": ranks.size,
        "bad_images": sorted(bad_images)[:20], "num_bad_images": len(bad_images),
    }
    if is_writer:
        write_json(run_dir / "metrics.json", summary)
    log.info("%s finished in %s: final loss %.4f", stage, _format_eta(seconds), summary["final_loss"])
    return summary


def lr_values(cfg: TrainConfig, steps_per_epoch: int) -> np.ndarray:
    from job.train.schedules import lr_schedule

    return lr_schedule(cfg.lr_schedule, total_steps=steps_per_epoch * cfg.epochs,
                       lr_max=cfg.lr_max, lr_init=cfg.lr_init, lr_end=cfg.lr_end,
                       warmup_steps=cfg.warmup_epochs * steps_per_epoch)


def _make_step(net, loss_fn, opt, *, scale: float, head: bool, ranks: Ranks):
    """The compiled training step. The loss is multiplied by the fixed loss scale and the
    optimizer divides the gradients by it again (Momentum's `loss_scale`)."""
    import mindspore as ms
    from mindspore import nn

    def forward(x, y):
        out = net(x)
        if head:
            out = net.head(out)
        return loss_fn(out, y) * scale

    grad_fn = ms.value_and_grad(forward, None, opt.parameters)
    if ranks.size > 1:
        reducer = nn.DistributedGradReducer(opt.parameters, mean=True, degree=ranks.size)

        @ms.jit
        def step(x, y):
            loss, grads = grad_fn(x, y)
            opt(reducer(grads))
            return loss / scale
    else:
        @ms.jit
        def step(x, y):
            loss, grads = grad_fn(x, y)
            opt(grads)
            return loss / scale
    return step


def write_config(run_dir: Path, cfg: TrainConfig, **context) -> None:
    """The effective config (what really ran) next to the checkpoints."""
    import yaml

    doc = {"config": cfg.to_dict(), "config_digest": cfg.digest(),
           **{k: (str(v) if isinstance(v, Path) else v) for k, v in context.items()
              if not isinstance(v, Ranks)},
           "ranks": context["ranks"].size if "ranks" in context else 1}
    tmp = run_dir / ".config.yaml.tmp"
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    tmp.replace(run_dir / "config.yaml")


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
