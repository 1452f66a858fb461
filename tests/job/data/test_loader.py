"""Batch loader: order, determinism across thread counts, resilience to bad files."""

from __future__ import annotations

import logging
import pathlib

import numpy as np
import pytest

from job.data import BatchLoader, EvalTransform, PKBatchSampler, TrainTransform, iter_eval_batches, load_split
from job.errors import ConfigError, DataError


def _collect(loader) -> tuple[np.ndarray, np.ndarray]:
    parts = list(loader)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def test_yields_batches_in_order_with_labels(sop_root: pathlib.Path) -> None:
    split = load_split(sop_root, "train")
    batches = [np.array([0, 3, 5]), np.array([14, 1])]
    loader = BatchLoader(split, batches, EvalTransform(16), seed=0, epoch=0, num_workers=2)
    out = list(loader)
    assert len(loader) == 2 and len(out) == 2
    (x0, y0), (x1, y1) = out
    assert x0.shape == (3, 3, 16, 16) and x0.dtype == np.float32 and x1.shape == (2, 3, 16, 16)
    assert y0.dtype == np.int32 and y0.tolist() == split.labels()[[0, 3, 5]].tolist()
    assert y1.tolist() == [5, 0]


@pytest.mark.parametrize("prefetch", [0, 2], ids=["no-prefetch", "prefetch-2"])
def test_deterministic_across_worker_counts(demo_root: pathlib.Path, prefetch: int) -> None:
    split = load_split(demo_root, "train")
    sampler = PKBatchSampler(split.labels(), 4, 2, seed=1)
    batches = sampler.batches(0)[:4]
    t = TrainTransform(24)
    one = _collect(BatchLoader(split, batches, t, seed=9, epoch=2, num_workers=1, prefetch=prefetch))
    three = _collect(BatchLoader(split, batches, t, seed=9, epoch=2, num_workers=3, prefetch=prefetch))
    inline = _collect(BatchLoader(split, batches, t, seed=9, epoch=2, num_workers=0))
    for other in (three, inline):
        assert np.array_equal(one[0], other[0]) and np.array_equal(one[1], other[1])
    other_epoch = _collect(BatchLoader(split, batches, t, seed=9, epoch=3, num_workers=2))
    assert not np.array_equal(one[0], other_epoch[0]), "augmentation changes with the epoch"


def test_repeated_index_gets_its_own_augmentation(sop_root: pathlib.Path) -> None:
    split = load_split(sop_root, "train")
    (x, _), = list(BatchLoader(split, [np.array([2, 2])], TrainTransform(16), seed=0, epoch=0))
    assert not np.array_equal(x[0], x[1]), "position in the epoch is part of the seed"


def test_start_batch_resumes_identically(demo_root: pathlib.Path) -> None:
    split = load_split(demo_root, "train")
    batches = PKBatchSampler(split.labels(), 3, 2, seed=4).batches(1)[:5]
    t = TrainTransform(16)
    full = list(BatchLoader(split, batches, t, seed=1, epoch=1))
    resumed = BatchLoader(split, batches, t, seed=1, epoch=1, start_batch=3)
    assert len(resumed) == 2
    for (a, la), (b, lb) in zip(full[3:], resumed, strict=True):
        assert np.array_equal(a, b) and np.array_equal(la, lb)


def test_bad_images_replaced_and_counted(sop_root: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    split = load_split(sop_root, "train")
    # class 1 = rows 0..2, class 3 = row 5 alone
    (sop_root / split.paths[0]).unlink()
    (sop_root / split.paths[5]).write_bytes(b"\x00corrupt")
    batches = [np.arange(0, 8), np.array([0, 5, 1])]
    t = EvalTransform(16)
    loader = BatchLoader(split, batches, t, seed=0, epoch=4, num_workers=3)
    with caplog.at_level(logging.WARNING, logger="job.data"):
        (x0, y0), (x1, y1) = list(loader)
    warnings = [r for r in caplog.records if r.name == "job.data"]
    assert loader.replaced == 4  # rows 0 and 5 in each batch
    assert loader.bad_images == sorted([split.paths[0], split.paths[5]])
    clean = BatchLoader(split, [np.array([1, 5])], t, seed=0, epoch=4)
    (ref, _), = list(clean)
    assert np.array_equal(x0[0], ref[0]), "missing row 0 replaced by the next image of its class (row 1)"
    assert np.array_equal(x0[5], np.zeros((3, 16, 16), np.float32)), "a class with no good image: zeros"
    assert y0.tolist() == split.labels()[:8].tolist(), "labels unchanged by replacement"
    assert len(warnings) == 1
    assert "epoch 4" in warnings[0].message and "4 sample(s)" in warnings[0].message
    assert split.paths[0] in warnings[0].message


def test_iter_eval_batches_covers_split_in_order(sop_root: pathlib.Path) -> None:
    split = load_split(sop_root, "test")
    parts = list(iter_eval_batches(split, EvalTransform(8), batch_size=4, num_workers=2))
    assert [p[0].shape[0] for p in parts] == [4, 4, 3]
    assert np.concatenate([p[1] for p in parts]).tolist() == split.labels().tolist()
    with pytest.raises(ConfigError, match="batch_size=0"):
        list(iter_eval_batches(split, EvalTransform(8), batch_size=0))


def test_loader_validation(sop_root: pathlib.Path) -> None:
    split = load_split(sop_root, "train")
    with pytest.raises(DataError, match="indexes beyond"):
        BatchLoader(split, [np.array([0, 99])], EvalTransform(8), seed=0, epoch=0)
    with pytest.raises(ConfigError, match="num_workers=-1"):
        BatchLoader(split, [], EvalTransform(8), seed=0, epoch=0, num_workers=-1)


def test_early_stop_does_not_hang(demo_root: pathlib.Path) -> None:
    split = load_split(demo_root, "train")
    batches = [np.arange(i, i + 8) for i in range(0, 80, 8)]
    for x, _ in BatchLoader(split, batches, EvalTransform(16), seed=0, epoch=0, num_workers=2, prefetch=3):
        assert x.shape[0] == 8
        break
