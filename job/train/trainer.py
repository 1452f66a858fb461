"""One training stage (softmax pre-training or metric fine-tuning) on one or more ranks.

The loop is explicit (no `Model.train`) so the learning rate, progress lines, non-finite loss
checks, resume state and the sampler position are all ours. The compiled step is forward +
loss + backward (+ gradient all-reduce across ranks) + Momentum update; with
`micro_batches > 1`, the gradients of that many consecutive batches are averaged first (one
rank then computes exactly what as many ranks would).

Durability: at each epoch end (and every `resume_every_steps`) rank 0 writes `resume.ckpt`
(weights, optimizer moments, position). A restarted stage continues from it; a stage whose
`metrics.json` says complete is skipped; a run directory made with another config is refused.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
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


def build_sampler(cfg: TrainConfig, class_ids: np.ndarray, ranks: Ranks):
    """The batch sampler the loss's layout needs, for this rank."""
    layout = LOSSES[cfg.loss].layout
    common = {"rank": ranks.rank, "world_size": ranks.size, "seed": cfg.seed}
    if layout == "shuffle":
        return ShuffleBatchSampler(class_ids, cfg.batch_size, **common)
    if layout == "pk":
        k = cfg.pk_images
        p = cfg.pk_classes or cfg.batch_size // k
        if p < 2:
            raise DataError(f"a P x K batch needs at least 2 classes: batch_size={cfg.batch_size} "
                            f"with pk_images={k} gives P={p}; raise batch_size")
        return PKBatchSampler(class_ids, p, k, singletons=cfg.singletons, **common)
    if layout == "triplet-tuples":
        return TripletTupleSampler(class_ids, cfg.batch_size, **common)
    raise AssertionError(f"unknown layout {layout}")


def format_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# ------------------------------------------------------------------ run-directory state

def finished_summary(run_dir: Path, cfg: TrainConfig) -> dict | None:
    """The stage's metrics.json if it completed with this config, else None."""
    try:
        summary = json.loads((run_dir / "metrics.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    if summary.get("complete") and summary.get("config_digest") == cfg.digest():
        return summary
    return None


def check_run_dir(run_dir: Path, cfg: TrainConfig, *, force_new: bool) -> None:
    """Refuse a run directory started with another config, unless `force_new` (which moves
    the old stage directory aside rather than deleting it)."""
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        return
    try:
        old = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        old = {}
    if old.get("config_digest") == cfg.digest():
        return
    if force_new:
        aside = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(str(run_dir), aside)
        log.warning("--force-new: moved the previous %s to %s", run_dir, aside)
        return
    before = old.get("config", {})
    changed = [f"{k} {before.get(k)!r} -> {v!r}" for k, v in cfg.result_fields().items()
               if before.get(k) != v]
    raise JobError(f"{run_dir} was started with another config ({'; '.join(changed[:4]) or 'digest differs'}"
                   f"{' ...' if len(changed) > 4 else ''}); resume with the same settings, use a "
                   f"new --run-dir, or pass --force-new to start this stage over")


@dataclass
class ResumeState:
    epoch: int = 0            # epoch to continue (0-based)
    step_in_epoch: int = 0    # optimizer steps of that epoch already done
    global_step: int = 0
    history: list | None = None
    params: dict | None = None


def find_resume_state(ckpt_dir: Path, cfg: TrainConfig) -> ResumeState:
    """The last complete resume state of this stage with this config, or a fresh start."""
    path = ckpt_dir / checkpoints.RESUME_NAME
    if not path.exists():
        return ResumeState()
    try:
        params, meta = checkpoints.load(path, verified=True)
    except JobError as e:
        log.warning("ignoring the resume state: %s; starting the stage from scratch", e)
        return ResumeState()
    if meta.get("config_digest") != cfg.digest():
        log.warning("ignoring %s: written with another config", path)
        return ResumeState()
    return ResumeState(meta["epoch"], meta["step_in_epoch"], meta["global_step"],
                       meta.get("history", []), params)


# ------------------------------------------------------------------ training

def train(cfg: TrainConfig, *, data_root: Path, run_dir: Path, stage: str,
          init_checkpoint: Path | None = None, ranks: Ranks = Ranks(),
          device_target: str = "CPU", force_new: bool = False) -> dict:
    """Train one stage; write checkpoints, `metrics.json` and `config.yaml` into `run_dir`.

    Returns the stage's summary (also in metrics.json).
    """
    import mindspore as ms
    from mindspore import nn, ops

    from job.model.net import MetricNet, NetSpec, load_backbone

    is_writer = ranks.rank == 0
    if is_writer:
        check_run_dir(run_dir, cfg, force_new=force_new)
    done = finished_summary(run_dir, cfg)
    if done is not None:
        log.info("%s already finished (%s, final loss %.4f); skipping", stage,
                 run_dir / "metrics.json", done["final_loss"])
        return done

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
    k = cfg.micro_batches
    steps_per_epoch = len(sampler) // k
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise DataError(f"{split.source}: {len(split)} images are not enough for {k} batch(es) "
                        f"of {cfg.batch_size} on each of {ranks.size} ranks; lower batch_size")
    total_steps = steps_per_epoch * cfg.epochs

    spec = NetSpec(cfg.backbone, cfg.embedding_dim,
                   int(labels.max()) + 1 if loss_cls.needs_head else 0, cfg.image_size)
    net = MetricNet(spec, seed=cfg.seed)
    ckpt_dir = run_dir / "checkpoints"
    state = find_resume_state(ckpt_dir, cfg)
    if state.params is None and init_checkpoint is not None:
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
    if state.params is not None:
        _restore(net, opt, state.params)
        log.info("resuming %s from %s: epoch %d, step %d of %d (global step %d)", stage,
                 ckpt_dir / checkpoints.RESUME_NAME, state.epoch + 1, state.step_in_epoch,
                 steps_per_epoch, state.global_step)
    step = _make_step(net, loss_fn, opt, scale=cfg.loss_scale, head=loss_cls.needs_head,
                      ranks=ranks, micro_batches=k)

    run_dir.mkdir(parents=True, exist_ok=True)
    if is_writer:
        write_config(run_dir, cfg, stage=stage, data_root=data_root, init=init_checkpoint,
                     ranks=ranks.size)
    log.info("%s: %s on %s (%d images, %d classes), %s %dpx, %d ranks x %d x batch %d, "
             "%d epochs x %d steps", stage, cfg.loss, split.source, len(split),
             split.num_classes, cfg.backbone, cfg.image_size, ranks.size, k, cfg.batch_size,
             cfg.epochs, steps_per_epoch)

    def save_resume(epoch: int, step_in_epoch: int, global_step: int, history: list) -> None:
        meta = {"stage": stage, "epoch": epoch, "step_in_epoch": step_in_epoch,
                "global_step": global_step, "config_digest": cfg.digest(),
                "net": spec.to_dict(), "history": history}
        checkpoints.save(net, ckpt_dir / checkpoints.RESUME_NAME, meta,
                         extra_params=list(opt.moments))

    transform = TrainTransform(cfg.image_size)
    net.set_train(True)
    history: list[dict] = list(state.history or [])
    global_step = state.global_step
    t_start = time.monotonic()
    timed_images, timed_seconds, timed_steps = 0, 0.0, 0
    bad_images: set[str] = set()
    compiled = False
    for epoch in range(state.epoch, cfg.epochs):
        first_step = state.step_in_epoch if epoch == state.epoch else 0
        batches = sampler.batches(epoch)[:steps_per_epoch * k]
        loader = BatchLoader(split, batches, transform, seed=cfg.seed, epoch=epoch,
                             num_workers=cfg.num_workers, start_batch=first_step * k,
                             batch_ids=sampler.batch_ids()[:len(batches)])
        epoch_losses: list[float] = []
        window_start, window_images = time.monotonic(), 0
        micro: list[tuple[np.ndarray, np.ndarray]] = []
        i = first_step
        for images, batch_labels in loader:
            micro.append((images, batch_labels))
            if len(micro) < k:
                continue
            # assign, not set_data: a compiled step keeps reading the original storage
            ops.assign(opt.learning_rate, ms.Tensor(lrs[global_step], ms.float32))
            loss = step(micro)
            micro = []
            global_step += 1
            i += 1
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"loss is {loss} at epoch {epoch + 1} step {i} (global step {global_step}, "
                    f"lr {lrs[global_step - 1]:.3g}); lower lr_max, add warm-up "
                    f"(warmup_epochs) or check loss_scale={cfg.loss_scale:g}")
            epoch_losses.append(loss)
            window_images += k * len(images)
            if not compiled:          # the first step includes graph compilation
                compiled = True
                log.info("first step done in %.1fs (graph compiled), loss %.4f",
                         time.monotonic() - t_start, loss)
                window_start, window_images = time.monotonic(), 0
            elif i % cfg.log_every == 0 or i == steps_per_epoch:
                elapsed = time.monotonic() - window_start
                timed_images += window_images
                timed_seconds += elapsed
                timed_steps += cfg.log_every if i % cfg.log_every == 0 else i % cfg.log_every
                per_step = timed_seconds / max(timed_steps, 1)
                log.info("epoch %d/%d step %d/%d loss %.4f lr %.3g %.1f img/s ETA %s",
                         epoch + 1, cfg.epochs, i, steps_per_epoch,
                         float(np.mean(epoch_losses[-cfg.log_every:])), lrs[global_step - 1],
                         window_images * ranks.size / elapsed if elapsed > 0 else 0.0,
                         format_eta(per_step * (total_steps - global_step)))
                window_start, window_images = time.monotonic(), 0
            if (is_writer and cfg.resume_every_steps and i % cfg.resume_every_steps == 0
                    and i < steps_per_epoch):
                save_resume(epoch, i, global_step, history)
        bad_images.update(loader.bad_images)
        mean_loss = float(np.mean(epoch_losses)) if epoch_losses else float("nan")
        history.append({"epoch": epoch + 1, "step": global_step, "loss": mean_loss,
                        "lr": float(lrs[global_step - 1])})
        log.info("epoch %d/%d done: mean loss %.4f", epoch + 1, cfg.epochs, mean_loss)
        if is_writer:
            if (epoch + 1) % cfg.save_checkpoint_epochs == 0 or epoch + 1 == cfg.epochs:
                meta = {"stage": stage, "epoch": epoch + 1, "global_step": global_step,
                        "config": cfg.to_dict(), "config_digest": cfg.digest(),
                        "net": spec.to_dict(), "loss": mean_loss}
                path = checkpoints.save(net, ckpt_dir / checkpoints.checkpoint_name(stage, epoch + 1), meta)
                checkpoints.prune(ckpt_dir, stage, cfg.keep_checkpoint_max)
                log.info("saved checkpoint %s", path)
            save_resume(epoch + 1, 0, global_step, history)
    seconds = time.monotonic() - t_start
    digest = weights_digest(net)
    # Every rank prints it: equal digests prove the ranks stayed in sync.
    log.info("trainable weights sha256 %s", digest)
    last = checkpoints.latest(ckpt_dir, stage) if is_writer else None
    summary = {
        "stage": stage, "loss": cfg.loss, "epochs": cfg.epochs, "steps": global_step,
        "final_loss": history[-1]["loss"], "history": history, "seconds": round(seconds, 1),
        "images_per_second": round(timed_images * ranks.size / timed_seconds, 2) if timed_seconds else None,
        "checkpoint": str(last) if last else None, "ranks": ranks.size,
        "resumed_from_step": state.global_step or None,
        "bad_images": sorted(bad_images)[:20], "num_bad_images": len(bad_images),
        "config_digest": cfg.digest(), "weights_sha256": digest, "complete": True,
    }
    if is_writer:
        write_json(run_dir / "metrics.json", summary)
    log.info("%s finished in %s: final loss %.4f", stage, format_eta(seconds), summary["final_loss"])
    return summary


def weights_digest(net) -> str:
    """SHA-256 over the trainable parameters in name order (BN running statistics are
    per-rank in data parallelism and left out)."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(net.trainable_params(), key=lambda p: p.name):
        h.update(p.name.encode())
        h.update(p.asnumpy().tobytes())
    return h.hexdigest()


def lr_values(cfg: TrainConfig, steps_per_epoch: int) -> np.ndarray:
    from job.train.schedules import lr_schedule

    return lr_schedule(cfg.lr_schedule, total_steps=steps_per_epoch * cfg.epochs,
                       lr_max=cfg.lr_max, lr_init=cfg.lr_init, lr_end=cfg.lr_end,
                       warmup_steps=cfg.warmup_epochs * steps_per_epoch)


def _restore(net, opt, params: dict) -> None:
    """Weights, BN statistics and Momentum's moments from a resume state."""
    import mindspore as ms

    not_loaded, _ = ms.load_param_into_net(net, params, strict_load=True)
    missing = [n for n in not_loaded if not n.startswith("moments.")]
    if missing:
        raise JobError(f"the resume state lacks {len(missing)} parameters (first: {missing[0]})")
    for moment in opt.moments:
        if moment.name not in params:
            raise JobError(f"the resume state lacks the optimizer moment {moment.name}")
        moment.set_data(ms.Tensor(params[moment.name].asnumpy()))


def _make_step(net, loss_fn, opt, *, scale: float, head: bool, ranks: Ranks, micro_batches: int):
    """The training step: `step(list of (images, labels)) -> mean loss`.

    The loss is multiplied by the fixed loss scale and the optimizer divides the gradients by
    it again (Momentum's `loss_scale`). Gradients are averaged over micro-batches, then over
    ranks (all-reduce mean), then applied.
    """
    import mindspore as ms
    from mindspore import nn, ops

    def forward(x, y):
        out = net(x)
        if head:
            out = net.head(out)
        return loss_fn(out, y) * scale

    grad_fn = ms.value_and_grad(forward, None, opt.parameters)
    reducer = (nn.DistributedGradReducer(opt.parameters, mean=True, degree=ranks.size)
               if ranks.size > 1 else None)

    if micro_batches == 1:
        @ms.jit
        def fused(x, y):
            loss, grads = grad_fn(x, y)
            if reducer is not None:
                grads = reducer(grads)
            opt(grads)
            return loss / scale

        def step(batch):
            (x, y), = batch
            return float(fused(ms.Tensor(x), ms.Tensor(y)).asnumpy())
        return step

    @ms.jit
    def grads_of(x, y):
        return grad_fn(x, y)

    @ms.jit
    def apply(grads):
        if reducer is not None:
            grads = reducer(grads)
        opt(grads)
        return grads[0].sum()

    def step(batch):
        total, acc = 0.0, None
        for x, y in batch:
            loss, grads = grads_of(ms.Tensor(x), ms.Tensor(y))
            total += float(loss.asnumpy())
            acc = grads if acc is None else tuple(a + g for a, g in zip(acc, grads))
        apply(tuple(ops.div(a, len(batch)) for a in acc))
        return total / (scale * len(batch))
    return step


def write_config(run_dir: Path, cfg: TrainConfig, **context) -> None:
    """The effective config (what really ran) next to the checkpoints."""
    import yaml

    doc = {"config": cfg.to_dict(), "config_digest": cfg.digest(),
           **{k: (str(v) if isinstance(v, Path) else v) for k, v in context.items()}}
    checkpoints.write_atomic(run_dir / "config.yaml", yaml.safe_dump(doc, sort_keys=False).encode())


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoints.write_atomic(path, (json.dumps(data, indent=2) + "\n").encode())
