"""Accuracy against a peer: this project's triplet (batch-hard) fine-tuning against a
PyTorch + pytorch-metric-learning pipeline, on the demo data built from Fashion-MNIST.

What runs, per seed (default seeds 0 1 2):
- data: `make_demo_data(train_classes=400, test_classes=300)`, what `python -m job
  make-demo-data` writes (real Fashion-MNIST items from the Debian package
  dataset-fashion-mnist; 2-12 augmented 64 px views per class; train/test classes disjoint).
- both sides: the `cpu` profile's triplet preset: resnet-mini, 48 px, P x K = 32 x 2 batches
  (batch 64), 10 epochs, const lr 0.01, momentum 0.9, weight decay 1e-4 (not on BatchNorm's
  gamma/beta, MindSpore's default), margin 0.1, no softmax pre-training: both start from the
  *same* random initialisation (the project's MetricNet(seed) weights, copied into PyTorch).
- project: `job.train.trainer.train(stage="finetune")` (the real trainer: PKBatchSampler,
  BatchLoader, TrainTransform, triplet-batch-hard, loss scale 1024, MindSpore Momentum), then
  the test split's features with `job.evaluation.evaluate.extract_features`.
- peer: the same topology in PyTorch (benchmarks/torch_peer.py, MindSpore's asymmetric 'same'
  padding reproduced), pytorch-metric-learning TripletMarginLoss(margin 0.1,
  LpDistance(normalize_embeddings=True, power=2), MeanReducer) with BatchHardMiner, torch SGD.
  It is fed the very same batches: the project's sampler and loader (same seeds, same
  RandomResizedCrop draws), so the comparison isolates framework + loss implementation.
- metrics, on both sides' test features: this project's evaluator (Recall@1, MAP@R, ties
  against the query) and pml's AccuracyCalculator (precision_at_1, mean_average_precision_at_r,
  on L2-normalised features, faiss k-NN).

Run: .venv-bench/bin/python benchmarks/bench_accuracy.py [--seeds 0 1 2] [--epochs 10]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import demo_data, emit, machine_line, run_worker, table, versions  # noqa: E402




def config(seed: int, epochs: int):
    from job.config import build_config
    from job.presets import preset

    return build_config(preset("triplet", "cpu"),
                        overrides=[f"seed={seed}", f"epochs={epochs}", "save_checkpoint_epochs=1000"])


# ---------------------------------------------------------------------------- MindSpore side

def worker_mindspore(args) -> dict:
    import mindspore as ms  # noqa: F401

    from job.data import load_split
    from job.evaluation.evaluate import build_net_from_checkpoint, extract_features
    from job.model.net import MetricNet, NetSpec
    from job.runtime import init_mindspore, setup_logging
    from job.train.trainer import train

    init_mindspore("cpu")
    out_dir = Path(args.out)
    setup_logging(out_dir / "train.log", prefix="rank0")
    import logging
    root = logging.getLogger("job")
    root.handlers = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
    cfg = config(args.seed, args.epochs)
    data = Path(args.data)
    test = load_split(data, cfg.eval_split)
    # the initial weights, exactly what train() builds from the seed
    spec = NetSpec(cfg.backbone, cfg.embedding_dim, 0, cfg.image_size)
    init_net = MetricNet(spec, seed=cfg.seed)
    np.savez(out_dir / "init.npz", **{name: p.asnumpy() for name, p in init_net.parameters_and_names()})
    init_net.set_train(False)
    f0, labels = extract_features(init_net, test, cfg.image_size, cfg.eval_batch_size, 2)
    np.save(out_dir / "ms-init-feats.npy", f0)
    np.save(out_dir / "test-labels.npy", labels)
    t0 = time.perf_counter()
    summary = train(cfg, data_root=data, run_dir=out_dir / "run", stage="finetune")
    seconds = time.perf_counter() - t0
    net, _, _ = build_net_from_checkpoint(Path(summary["checkpoint"]))
    f1, _ = extract_features(net, test, cfg.image_size, cfg.eval_batch_size, 2)
    np.save(out_dir / "ms-feats.npy", f1)
    return {"seconds": seconds, "final_loss": summary["final_loss"], "steps": summary["steps"],
            "losses": [h["loss"] for h in summary["history"]]}


# ---------------------------------------------------------------------------- PyTorch side

def worker_torch(args) -> dict:
    import torch

    from job.data import BatchLoader, EvalTransform, TrainTransform, iter_eval_batches, load_split
    from job.train.trainer import Ranks, build_sampler
    from torch_peer import ResNet, load_mindspore_weights, make_optimizer, make_pml_loss

    torch.manual_seed(args.seed)
    out_dir = Path(args.out)
    cfg = config(args.seed, args.epochs)
    data = Path(args.data)
    train_split = load_split(data, cfg.train_split)
    test = load_split(data, cfg.eval_split)
    model = ResNet(cfg.backbone, exact_padding=True)
    init = dict(np.load(out_dir / "init.npz"))
    load_mindspore_weights(model, init)

    def features() -> np.ndarray:
        model.eval()
        feats = []
        with torch.no_grad():
            for images, _ in iter_eval_batches(test, EvalTransform(cfg.image_size),
                                               cfg.eval_batch_size, 2):
                feats.append(model(torch.from_numpy(images)).numpy())
        model.train()
        return np.concatenate(feats)

    f0 = features()
    ms0 = np.load(out_dir / "ms-init-feats.npy")
    init_diff = float(np.abs(f0 - ms0).max() / max(np.abs(ms0).max(), 1e-12))
    sampler = build_sampler(cfg, train_split.class_ids, Ranks())
    transform = TrainTransform(cfg.image_size)
    miner, loss_fn = make_pml_loss(cfg.margin)
    opt = make_optimizer(model, lr=cfg.lr_max, momentum=cfg.momentum,
                         weight_decay=cfg.weight_decay)
    model.train()
    losses = []
    steps = 0
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        batches = sampler.batches(epoch)
        loader = BatchLoader(train_split, batches, transform, seed=cfg.seed, epoch=epoch,
                             num_workers=cfg.num_workers, batch_ids=sampler.batch_ids()[:len(batches)])
        epoch_losses = []
        for images, labels in loader:
            x = torch.from_numpy(images)
            y = torch.from_numpy(labels.astype(np.int64))
            feats = model(x)
            loss = loss_fn(feats, y, miner(feats, y))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            epoch_losses.append(float(loss.detach()))
            steps += 1
        losses.append(float(np.mean(epoch_losses)))
    seconds = time.perf_counter() - t0
    np.save(out_dir / "torch-feats.npy", features())
    return {"seconds": seconds, "final_loss": losses[-1], "steps": steps, "losses": losses,
            "init_feature_rel_diff": init_diff}


# ---------------------------------------------------------------------------- metrics

def metrics(feats: np.ndarray, labels: np.ndarray) -> dict:
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    from job.evaluation.retrieval import normalize, retrieval_metrics

    ours = retrieval_metrics(feats, labels, (1, 10))
    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"),
                              k="max_bin_count")
    pml = calc.get_accuracy(normalize(feats), labels)
    return {"r1": ours.recall[1], "mapr": ours.map_at_r,
            "pml_p1": float(pml["precision_at_1"]), "pml_mapr": float(pml["mean_average_precision_at_r"])}


def worker_main(args) -> None:
    fn = {"mindspore": worker_mindspore, "torch": worker_torch}[args.kind]
    emit(fn(args))


def _mean_sd(values) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs (cpu profile: 10)")
    ap.add_argument("--data", type=Path, help="demo data dir (default: built in $TMPDIR/sop-bench-demo)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main(args)
        return

    header = machine_line()
    print(f"# accuracy benchmark: {header}", flush=True)
    data = demo_data(args.data)
    info = json.loads((data / "DEMO_INFO.json").read_text())
    rows, per_side = [], {"project (MindSpore)": [], "peer (PyTorch + pml)": []}
    untrained = []
    with tempfile.TemporaryDirectory(prefix="bench-acc-") as tmp:
        for seed in args.seeds:
            out = Path(tmp) / f"seed{seed}"
            out.mkdir()
            common = ["--data", str(data), "--seed", str(seed), "--epochs", str(args.epochs),
                      "--out", str(out)]
            ms_out = run_worker(Path(__file__), ["--kind", "mindspore", *common])
            th_out = run_worker(Path(__file__), ["--kind", "torch", *common])
            labels = np.load(out / "test-labels.npy")
            m0 = metrics(np.load(out / "ms-init-feats.npy"), labels)
            untrained.append(m0)
            for side, res, feats in (("project (MindSpore)", ms_out, "ms-feats.npy"),
                                     ("peer (PyTorch + pml)", th_out, "torch-feats.npy")):
                m = metrics(np.load(out / feats), labels)
                per_side[side].append(m)
                rows.append([str(seed), side, f"{m['r1']:.4f}", f"{m['mapr']:.4f}",
                             f"{m['pml_p1']:.4f}", f"{m['pml_mapr']:.4f}",
                             f"{res['final_loss']:.4f}", f"{res['seconds']:.0f}"])
            print(f"  seed {seed}: project R@1 {per_side['project (MindSpore)'][-1]['r1']:.4f}, "
                  f"peer R@1 {per_side['peer (PyTorch + pml)'][-1]['r1']:.4f}; initial features "
                  f"agree to {th_out['init_feature_rel_diff']:.1e} (relative)", flush=True)
    for side, ms in per_side.items():
        rows.append(["mean ± sd", side, *(_mean_sd([m[k] for m in ms])
                                          for k in ("r1", "mapr", "pml_p1", "pml_mapr")), "", ""])
    rows.append(["mean", "untrained (same init)", *(f"{statistics.mean([m[k] for m in untrained]):.4f}"
                                                    for k in ("r1", "mapr", "pml_p1", "pml_mapr")), "", ""])
    print()
    print(f"Triplet batch-hard fine-tuning from the same random init, demo data "
          f"({info['source']}: {info['train']['classes']} train classes / {info['train']['images']} "
          f"images, {info['test']['classes']} test classes / {info['test']['images']} images), "
          f"resnet-mini 48 px, 32x2 batches, {args.epochs} epochs, "
          f"lr 0.01; {header}; {versions('mindspore', 'torch', 'pytorch_metric_learning')}")
    print()
    print(table(["seed", "side", "R@1 (ours)", "MAP@R (ours)", "P@1 (pml)", "MAP@R (pml)",
                 "final epoch loss", "train s"], rows, aligns="ll" + "r" * 6))


if __name__ == "__main__":
    main()
