"""`job eval`: features of a split from a checkpoint, then exact retrieval metrics."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from job import checkpoints
from job.data import EvalTransform, iter_eval_batches, check_images, load_split
from job.errors import DataError
from job.evaluation.retrieval import retrieval_metrics

log = logging.getLogger("job.eval")


def build_net_from_checkpoint(path: Path):
    """Rebuild the network a checkpoint was trained with, weights loaded, head dropped."""
    import mindspore as ms

    from job.model.net import MetricNet, NetSpec

    params, meta = checkpoints.load(path)
    if "net" in meta:
        net_meta = meta["net"]
        spec = NetSpec(net_meta["backbone"], net_meta.get("embedding_dim", 0), 0,
                       net_meta.get("image_size", 224))
    else:  # a bare backbone checkpoint (e.g. the model zoo's): assume ResNet50 at 224
        spec = NetSpec("resnet50", 0, 0, 224)
    net = MetricNet(spec)
    own = {p.name for p in net.get_parameters()}
    wanted = {k: v for k, v in params.items() if k in own}
    if not wanted:
        from job.model.net import load_backbone
        load_backbone(net, params, source=str(path))
    else:
        ms.load_param_into_net(net, wanted, strict_load=False)
        missing = sorted(own - set(wanted))
        if missing:
            log.warning("%s lacks %d parameters of the %s network (first: %s)", path,
                        len(missing), spec.backbone, missing[0])
    net.set_train(False)
    return net, spec, meta


def extract_features(net, split, image_size: int, batch_size: int,
                     num_workers: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Features for every image of the split, in list order. The last batch is padded to the
    batch size so the compiled forward pass is reused."""
    import mindspore as ms

    @ms.jit
    def forward(x):
        return net(x)

    feats, labels = [], []
    n = len(split)
    done, t0, last = 0, time.monotonic(), time.monotonic()
    for images, batch_labels in iter_eval_batches(split, EvalTransform(image_size), batch_size,
                                                  num_workers=num_workers):
        b = len(images)
        if b < batch_size:
            images = np.concatenate([images, np.zeros((batch_size - b, *images.shape[1:]),
                                                      images.dtype)])
        feats.append(forward(ms.Tensor(images)).asnumpy()[:b])
        labels.append(batch_labels)
        done += b
        now = time.monotonic()
        if now - last >= 10 or done == n:
            last = now
            log.info("features: %d/%d images, %.1f img/s", done, n, done / max(now - t0, 1e-9))
    return np.concatenate(feats).astype(np.float32), np.concatenate(labels)


def evaluate(checkpoint: Path, *, data_root: Path, split_name: str | None = None,
             batch_size: int = 64, num_workers: int = 2,
             image_size: int | None = None, show: int = 0,
             grid_path: Path | None = None) -> dict:
    """Every image of the split is a query against all the others. Returns metrics.json.

    With `show` > 0, also writes the retrieval picture of that many random queries to
    `grid_path`."""
    net, spec, meta = build_net_from_checkpoint(checkpoint)
    cfg = meta.get("config", {})
    split_name = split_name or cfg.get("eval_split", "test")
    size = image_size or spec.image_size
    split = load_split(data_root, split_name)
    if len(split) < 2:
        raise DataError(f"{split.source}: evaluation needs at least 2 images, found {len(split)}")
    report = check_images(split, verify=True)
    if not report.ok:
        # Left out, not replaced: a stand-in copy of a class-mate would match it at distance 0.
        log.warning("%s; left out of the evaluation", report.summary())
        gone = set(report.missing) | set(report.undecodable)
        split = split.subset([i for i, p in enumerate(split.paths) if p not in gone])
        if len(split) < 2:
            raise DataError(f"{split.source}: fewer than 2 images exist under {split.root}")
    log.info("eval: %s, %d images, %d classes, %s at %dpx", split.source, len(split),
             split.num_classes, spec.backbone, size)
    t0 = time.monotonic()
    feats, labels = extract_features(net, split, size, batch_size, num_workers)
    t1 = time.monotonic()
    result = retrieval_metrics(feats, labels)
    metrics = result.to_dict()
    if show:
        from job.evaluation.grid import retrieval_grid

        metrics["retrieval_grid"] = str(retrieval_grid(split, feats, labels, grid_path,
                                                       queries=show))
        log.info("retrieval grid of %d queries written to %s", show, grid_path)
    metrics.update({
        "acc": metrics["recall@1"],   # the reference's output key
        "checkpoint": str(checkpoint), "split": split_name, "data": str(data_root),
        "stage": meta.get("stage"), "epoch": meta.get("epoch"), "loss": cfg.get("loss"),
        "feature_dim": int(feats.shape[1]), "image_size": size,
        "seconds_features": round(t1 - t0, 1), "seconds_metrics": round(time.monotonic() - t1, 1),
    })
    return metrics


def format_metrics(m: dict) -> str:
    """One line: the reference's `result: {'acc': ...} ckpt=...` plus our metrics."""
    return (f"result: {{'acc': {m['acc']:.4f}}} ckpt={m['checkpoint']}  "
            f"Recall@1 {m['recall@1']:.4f}  Recall@10 {m['recall@10']:.4f}  "
            f"Recall@100 {m['recall@100']:.4f}  Recall@1000 {m['recall@1000']:.4f}  "
            f"MAP@R {m['map@r']:.4f}  ({m['num_queries']} queries)")
