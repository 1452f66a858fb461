"""Training-step cost: this project's step (data pipeline, loss, optimizer, logging) against
a bare MindSpore `value_and_grad` step on the same tensors, and against the same model and loss
in PyTorch CPU; plus the data pipeline's throughput per core.

Per model (default: the CPU profile's resnet-mini at 48 px, batch 64 = 32 classes x 2, and
ResNet50 at 224 px, batch 16 = 8 x 2, triplet-batch-hard, margin 0.1, Momentum 0.9, wd 1e-4):
- project: the trainer's loop body on demo data: PKBatchSampler -> BatchLoader (2 decode
  threads, prefetch 2, TrainTransform) -> LR assigned into the compiled step -> `_make_step`
  (loss scale 1024, forward + loss + backward + Momentum in one `ms.jit`) -> loss read back,
  finite check -> a progress line every `log_every` steps to a log file. One loader over all
  the timed batches (steady state; the trainer makes one per epoch, and SOP epochs are long).
- bare MindSpore: `ms.value_and_grad` of the same net + loss, Momentum, one `ms.jit`, fed the
  same tensors (one batch converted once), synchronised once per round.
  Project and bare run in the same process, one step each per cycle, the order alternating;
  overhead = median over cycles of project / bare (and the ratio of the fastest steps). A third
  side, the project's step function on one fixed pre-loaded batch, splits that overhead into
  the data pipeline's share (project / fixed) and the step function's (fixed / bare).
- PyTorch: the same topology and loss (pytorch-metric-learning TripletMarginLoss +
  BatchHardMiner, squared L2 on normalised features), SGD momentum 0.9, in its own process
  on the same batch, right after; framework ratio = MindSpore bare / PyTorch (medians; the
  two run in separate processes: in one process their thread pools slow each other down).
- pipeline: decode + RandomResizedCrop + normalise, one thread, images/s per core, for the
  demo's 64 px JPEGs and for SOP-sized (500 x 500) JPEGs, against what the step consumes.

The machine is shared and noisy: every number is a median over single steps, with the fastest
step (min) beside it; the per-cycle ratio is the most robust number. ResNet50 at 224 px is slow
on 2 cores (~5 s a step at batch 16): 4 cycles by default, plus one compile step per side.
Run: .venv-bench/bin/python benchmarks/bench_train_step.py [--models mini resnet50] [--cycles N]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import demo_data, emit, machine_line, median, run_worker, table, versions  # noqa: E402

MODELS = {
    # name: backbone, image size, batch (P x 2), timed cycles (one step of each side per cycle)
    "mini": ("resnet-mini", 48, 64, 60),
    "resnet50": ("resnet50", 224, 16, 4),
}




def _config(model: str, seed: int):
    from job.config import build_config
    from job.presets import preset

    backbone, size, batch, _ = MODELS[model]
    return build_config(preset("triplet", "cpu"), overrides=[
        f"backbone={backbone}", f"image_size={size}", f"batch_size={batch}", f"seed={seed}"])


# ---------------------------------------------------------------------------- MindSpore worker

def worker_mindspore(args) -> dict:
    import logging
    import math

    import mindspore as ms
    from mindspore import nn, ops

    from job.data import BatchLoader, TrainTransform, load_split
    from job.losses import create_loss
    from job.model.net import MetricNet, NetSpec
    from job.runtime import init_mindspore, setup_logging
    from job.train.trainer import Ranks, _make_step, build_sampler, lr_values

    init_mindspore("cpu")
    log_file = Path(args.tmp) / f"train-{args.model}.log"
    setup_logging(log_file, prefix="rank0")
    logging.getLogger("job").handlers = [h for h in logging.getLogger("job").handlers
                                         if isinstance(h, logging.FileHandler)]
    log = logging.getLogger("job.train")
    cfg = _config(args.model, args.seed)
    cycles = args.cycles or MODELS[args.model][3]
    split = load_split(Path(args.data), cfg.train_split)
    sampler = build_sampler(cfg, split.class_ids, Ranks())
    transform = TrainTransform(cfg.image_size)

    def build(scale: float):
        spec = NetSpec(cfg.backbone, cfg.embedding_dim, 0, cfg.image_size)
        net = MetricNet(spec, seed=cfg.seed)
        net.set_train(True)
        loss_fn = create_loss(cfg.loss, margin=cfg.margin)
        opt = nn.Momentum(net.trainable_params(), learning_rate=cfg.lr_max,
                          momentum=cfg.momentum, weight_decay=cfg.weight_decay, loss_scale=scale)
        return net, loss_fn, opt

    # --- the project's step, as the trainer runs it: one loader over the batches of as many
    #     epochs as needed (the trainer makes one loader per epoch; SOP epochs are long)
    net, loss_fn, opt = build(cfg.loss_scale)
    step = _make_step(net, loss_fn, opt, scale=cfg.loss_scale, head=False, ranks=Ranks(),
                      micro_batches=1)
    lrs = lr_values(cfg, len(sampler))
    batches, ids = [], []
    epoch = 0
    while len(batches) < cycles + 2:
        batches += sampler.batches(epoch)
        ids += list(sampler.batch_ids() + epoch * len(sampler))
        epoch += 1
    loader = BatchLoader(split, batches, transform, seed=cfg.seed, epoch=0,
                         num_workers=cfg.num_workers, batch_ids=ids)
    it = iter(loader)
    losses: list[float] = []

    def project_step(i: int, fixed: tuple | None = None) -> None:
        # fixed: the same step function on one pre-loaded batch (no data pipeline)
        images, labels = next(it) if fixed is None else fixed   # decoded by the loader's threads
        g = i % len(lrs)
        ops.assign(opt.learning_rate, ms.Tensor(lrs[g], ms.float32))
        loss = step([(images, labels)])
        if not math.isfinite(loss):
            raise RuntimeError(f"loss is {loss}")
        losses.append(loss)
        if (i + 1) % cfg.log_every == 0:
            log.info("step %d loss %.4f lr %.3g", i + 1, float(np.mean(losses[-cfg.log_every:])),
                     lrs[g])

    # --- the bare step on the same tensors (one batch, converted once)
    bnet, bloss, bopt = build(1.0)
    x_np, y_np = next(iter(BatchLoader(split, batches[:1], transform, seed=cfg.seed, epoch=0,
                                       num_workers=0, batch_ids=ids[:1])))
    x, y = ms.Tensor(x_np), ms.Tensor(y_np)

    def forward(x, y):
        return bloss(bnet(x), y)

    grad_fn = ms.value_and_grad(forward, None, bopt.parameters)

    @ms.jit
    def bare(x, y):
        loss, grads = grad_fn(x, y)
        bopt(grads)
        return loss

    def bare_step(i: int) -> None:
        bare(x, y).asnumpy()

    def timed(fn, i):
        t, c = time.perf_counter(), time.process_time()
        fn(i)
        return time.perf_counter() - t, time.process_time() - c

    def fixed_step(i: int) -> None:
        project_step(i, (x_np, y_np))

    compile_project = timed(project_step, 0)[0]      # graph compile + first step
    compile_bare = timed(bare_step, 0)[0]
    sides = {"project": project_step, "stepfn": fixed_step, "bare": bare_step}
    wall = {k: [] for k in sides}
    cpu = {k: [] for k in sides}
    names = list(sides)
    for i in range(1, cycles + 1):
        # one step of each side per cycle, the order rotating: load bursts from other work on
        # a shared machine hit all sides alike, and per-cycle ratios cancel slow drifts
        for name in names[i % 3:] + names[:i % 3]:
            w, c = timed(sides[name], i)
            wall[name].append(w)
            cpu[name].append(c)
    np.save(Path(args.tmp) / f"batch-{args.model}-x.npy", x_np)
    np.save(Path(args.tmp) / f"batch-{args.model}-y.npy", y_np)
    return {"project": wall["project"], "stepfn": wall["stepfn"], "bare": wall["bare"],
            "project_cpu": cpu["project"], "stepfn_cpu": cpu["stepfn"], "bare_cpu": cpu["bare"],
            "compile_project": compile_project, "compile_bare": compile_bare,
            "batch": int(len(x_np)), "cycles": cycles,
            "log_lines": sum(1 for _ in open(log_file))}


# ---------------------------------------------------------------------------- PyTorch worker

def worker_torch(args) -> dict:
    import torch

    from torch_peer import ResNet, make_optimizer, make_pml_loss, train_step

    torch.manual_seed(args.seed)
    cfg_backbone, _, _, cycles = MODELS[args.model]
    cycles = args.cycles or cycles
    x = torch.from_numpy(np.load(Path(args.tmp) / f"batch-{args.model}-x.npy"))
    y = torch.from_numpy(np.load(Path(args.tmp) / f"batch-{args.model}-y.npy")).long()
    model = ResNet(cfg_backbone)
    for m in model.modules():          # identity-start residual blocks, as the project's init
        if hasattr(m, "bn2") and not hasattr(m, "bn3"):
            torch.nn.init.zeros_(m.bn2.weight)
        if hasattr(m, "bn3"):
            torch.nn.init.zeros_(m.bn3.weight)
    model.train()
    miner, loss_fn = make_pml_loss(0.1)
    opt = make_optimizer(model, lr=0.01)
    t0 = time.perf_counter()
    train_step(model, miner, loss_fn, opt, x, y)
    first = time.perf_counter() - t0
    times, cpu = [], []
    for _ in range(cycles):
        t, c = time.perf_counter(), time.process_time()
        train_step(model, miner, loss_fn, opt, x, y)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"torch": times, "torch_cpu": cpu, "first": first, "threads": torch.get_num_threads()}


# ---------------------------------------------------------------------------- pipeline worker

def worker_pipeline(args) -> dict:
    """Decode + train transform on one thread (num_workers=0), images/s."""
    from PIL import Image

    from job.data import BatchLoader, TrainTransform, load_split

    split = load_split(Path(args.data), "train")
    out = {}
    n = args.pipeline_images
    idx = np.arange(min(n, len(split)))
    for size in sorted({MODELS[m][1] for m in args.models}):
        tr = TrainTransform(size)
        loader = BatchLoader(split, [idx], tr, seed=0, epoch=0, num_workers=0)
        t0 = time.perf_counter()
        next(iter(loader))
        out[f"demo64->{size}"] = len(idx) / (time.perf_counter() - t0)
    # SOP-sized JPEGs (SOP photos are mostly ~500 px): the demo images upscaled
    big = Path(args.tmp) / "sop-size"
    big.mkdir(exist_ok=True)
    files = []
    for i in idx[:200]:
        p = big / f"{i}.jpg"
        Image.open(split.image_path(int(i))).convert("RGB").resize((500, 500), Image.BICUBIC).save(p, quality=90)
        files.append(p)
    from job.data.images import decode_rgb
    for size in sorted({MODELS[m][1] for m in args.models}):
        tr = TrainTransform(size)
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for p in files:
            tr(decode_rgb(p), rng)
        out[f"sop500->{size}"] = len(files) / (time.perf_counter() - t0)
    return out


# ---------------------------------------------------------------------------- driver

def worker_main(args) -> None:
    fn = {"mindspore": worker_mindspore, "torch": worker_torch, "pipeline": worker_pipeline}[args.kind]
    emit(fn(args))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mini", "resnet50"], choices=list(MODELS))
    ap.add_argument("--cycles", type=int, default=0,
                    help="timed cycles, one step of each side per cycle (default: 60 mini, 4 resnet50)")
    ap.add_argument("--data", type=Path, help="demo data dir (default: built in $TMPDIR/sop-bench-demo)")
    ap.add_argument("--pipeline-images", type=int, default=512)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main(args)
        return

    header = machine_line()
    print(f"# training-step benchmark: {header}", flush=True)
    data = demo_data(args.data)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        common = ["--data", str(data), "--tmp", tmp, "--seed", str(args.seed),
                  "--cycles", str(args.cycles),
                  "--pipeline-images", str(args.pipeline_images), "--models", *args.models]
        for model in args.models:
            ms_out = run_worker(Path(__file__), ["--kind", "mindspore", "--model", model, *common])
            print(f"  {model}: project {median(ms_out['project']):.3f} s/step, bare "
                  f"{median(ms_out['bare']):.3f} s/step", flush=True)
            th_out = run_worker(Path(__file__), ["--kind", "torch", "--model", model, *common])
            print(f"  {model}: torch {median(th_out['torch']):.3f} s/step", flush=True)
            results[model] = (ms_out, th_out)
        pipe = run_worker(Path(__file__), ["--kind", "pipeline", "--model", "-", *common])

    rows = []
    for model, (ms_out, th_out) in results.items():
        backbone, size, _, _ = MODELS[model]
        batch = ms_out["batch"]
        p, b, t = median(ms_out["project"]), median(ms_out["bare"]), median(th_out["torch"])
        ratios = [pp / bb for pp, bb in zip(ms_out["project"], ms_out["bare"])]
        f = median(ms_out["stepfn"])
        r_pipe = median([pp / ff for pp, ff in zip(ms_out["project"], ms_out["stepfn"])])
        r_step = median([ff / bb for ff, bb in zip(ms_out["stepfn"], ms_out["bare"])])
        consumed = batch / p
        demo_rate = pipe[f"demo64->{size}"]
        sop_rate = pipe[f"sop500->{size}"]
        rows.append([f"{backbone} {size}px b{batch}", str(ms_out["cycles"]),
                     f"{p:.3g} / {min(ms_out['project']):.3g}",
                     f"{f:.3g} / {min(ms_out['stepfn']):.3g}",
                     f"{b:.3g} / {min(ms_out['bare']):.3g}",
                     f"{t:.3g} / {min(th_out['torch']):.3g}",
                     f"{median(ratios):.3f} / {min(ms_out['project']) / min(ms_out['bare']):.3f}",
                     f"{r_pipe:.3f} x {r_step:.3f}",
                     f"{b / t:.2f} / {min(ms_out['bare']) / min(th_out['torch']):.2f}",
                     f"{consumed:.3g}", f"{demo_rate:.0f} / {sop_rate:.0f}",
                     f"{consumed / demo_rate:.3f} / {consumed / sop_rate:.3f}"])
    print()
    print(f"Training step (triplet-batch-hard, P x 2 batches), s/step median / min over single "
          f"steps; {header}; {versions('mindspore', 'torch', 'pytorch_metric_learning', 'numpy')}")
    print()
    print(table(["model", "cycles", "project s/step", "project step, fixed batch", "bare MindSpore s/step",
                 "PyTorch s/step", "overhead project/bare (median of cycles / of mins)",
                 "= pipeline x step function", "MindSpore bare / PyTorch",
                 "step consumes img/s", "pipeline img/s/core (demo 64px / SOP 500px)",
                 "cores the pipeline needs (demo / SOP)"], rows))
    print()
    for model, (ms_out, th_out) in results.items():
        print(f"{model}: first step incl. graph compile: project {ms_out['compile_project']:.1f}s, "
              f"bare {ms_out['compile_bare']:.1f}s, PyTorch {th_out['first']:.1f}s; CPU s/step "
              f"(median, all threads): project {median(ms_out['project_cpu']):.3g}, fixed batch "
              f"{median(ms_out['stepfn_cpu']):.3g}, bare "
              f"{median(ms_out['bare_cpu']):.3g}, PyTorch {median(th_out['torch_cpu']):.3g}; "
              f"{ms_out['log_lines']} progress lines logged; torch threads {th_out['threads']}")


if __name__ == "__main__":
    main()
