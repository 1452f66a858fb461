"""Sampler invariants: batch layout, rank sharding of whole global batches, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from job.data import PKBatchSampler, ShuffleBatchSampler, TripletTupleSampler
from job.errors import ConfigError, DataError

from .conftest import labels_with_sizes

# 61 classes with 2..12 images each, a few with fewer than k=4, plus 3 singletons.
SIZES = [2 + (i * 7) % 11 for i in range(61)] + [1, 1, 1]
LABELS = labels_with_sizes(SIZES)
SINGLETONS = [61, 62, 63]

FACTORIES = {
    "shuffle": lambda **kw: ShuffleBatchSampler(LABELS, 12, **kw),
    "pk": lambda **kw: PKBatchSampler(LABELS, 3, 4, **kw),
    "triplet": lambda **kw: TripletTupleSampler(LABELS, 12, **kw),
}


def _check_pk_batch(batch: np.ndarray, p: int, k: int) -> None:
    assert batch.shape == (p * k,) and batch.dtype == np.int64
    groups = LABELS[batch].reshape(p, k)
    assert (groups == groups[:, :1]).all(), "k consecutive rows share a class"
    assert len(set(groups[:, 0].tolist())) == p, "p distinct classes"


@pytest.mark.parametrize(("p", "k"), [(3, 4), (5, 2), (2, 6)], ids=["3x4", "5x2", "2x6"])
def test_pk_layout(p: int, k: int) -> None:
    sampler = PKBatchSampler(LABELS, p, k, seed=5)
    batches = sampler.batches(0)
    assert len(batches) == len(sampler) == 61 // p
    for b in batches:
        _check_pk_batch(b, p, k)
    used = np.concatenate([b.reshape(p, k)[:, 0] for b in batches])
    assert len(set(LABELS[used].tolist())) == len(used), "each class at most once per epoch"


def test_pk_small_classes_use_every_image_then_repeat() -> None:
    sampler = PKBatchSampler(LABELS, 3, 4, seed=1)
    for epoch in range(3):
        for batch in sampler.batches(epoch):
            for group in batch.reshape(3, 4):
                members = np.flatnonzero(LABELS == LABELS[group[0]])
                assert set(group.tolist()) <= set(members.tolist())
                if len(members) >= 4:
                    assert len(set(group.tolist())) == 4, "distinct images when the class has k"
                else:
                    assert set(group.tolist()) == set(members.tolist()), "each image at least once"


def test_pk_singletons_dropped_and_listed() -> None:
    sampler = PKBatchSampler(LABELS, 3, 4)
    assert sampler.dropped_classes == SINGLETONS
    seen = np.concatenate(sampler.global_batches(0))
    assert not set(LABELS[seen].tolist()) & set(SINGLETONS)


def test_pk_singletons_error_names_them() -> None:
    with pytest.raises(DataError) as exc:
        PKBatchSampler(LABELS, 3, 4, singletons="error")
    msg = str(exc.value)
    assert "3 class(es)" in msg and "61, 62, 63" in msg and "singletons=drop" in msg
    with pytest.raises(ConfigError, match="drop, error"):
        PKBatchSampler(LABELS, 3, 4, singletons="keep")


def test_pk_too_few_classes() -> None:
    labels = labels_with_sizes([3, 3, 3, 1])
    with pytest.raises(DataError) as exc:
        PKBatchSampler(labels, 4, 2)
    msg = str(exc.value)
    assert "p=4" in msg and "only 3" in msg and "pk_classes (at most 3)" in msg
    with pytest.raises(DataError, match="fewer than world_size=4"):
        PKBatchSampler(labels, 3, 2, world_size=4)


@pytest.mark.parametrize("world_size", [2, 8], ids=["W2", "W8"])
@pytest.mark.parametrize("kind", list(FACTORIES), ids=list(FACTORIES))
def test_ranks_share_one_global_order(kind: str, world_size: int) -> None:
    samplers = [FACTORIES[kind](rank=r, world_size=world_size, seed=7) for r in range(world_size)]
    for epoch in (0, 3):
        glob = samplers[0].global_batches(epoch)
        for s in samplers[1:]:
            assert all(np.array_equal(a, b) for a, b in zip(s.global_batches(epoch), glob, strict=True))
        per_rank = [s.batches(epoch) for s in samplers]
        assert len({len(b) for b in per_rank}) == 1 and len(per_rank[0]) == len(samplers[0])
        assert len(glob) == len(samplers[0]) * world_size
        for i, batch in enumerate(glob):  # batch i is rank i % W's (i // W)-th batch, whole
            assert np.array_equal(per_rank[i % world_size][i // world_size], batch)
        rows = np.concatenate(glob)
        if kind == "shuffle":
            assert len(set(rows.tolist())) == rows.size, "ranks see disjoint images"
        elif kind == "pk":
            for batch in glob:
                _check_pk_batch(batch, 3, 4)
        else:
            for batch in glob:
                a, p, n = batch.reshape(-1, 3).T
                assert (LABELS[a] == LABELS[p]).all() and (LABELS[a] != LABELS[n]).all()


@pytest.mark.parametrize("world_size", [1, 2, 8], ids=["W1", "W2", "W8"])
def test_triplet_tuples_never_split(world_size: int) -> None:
    for rank in range(world_size):
        sampler = TripletTupleSampler(LABELS, 12, rank=rank, world_size=world_size, seed=2)
        for batch in sampler.batches(1):
            assert batch.size == 12 and batch.size % 3 == 0
            a, p, n = batch.reshape(-1, 3).T
            assert (LABELS[a] == LABELS[p]).all()
            multi = np.isin(LABELS[a], SINGLETONS, invert=True)
            assert (a[multi] != p[multi]).all(), "positive is another image when the class has one"
            assert (LABELS[a] != LABELS[n]).all()


def test_triplet_anchors_follow_one_permutation() -> None:
    sampler = TripletTupleSampler(LABELS, 9)
    anchors = np.concatenate([b.reshape(-1, 3)[:, 0] for b in sampler.batches(0)])
    assert len(set(anchors.tolist())) == anchors.size == (LABELS.size // 3) * 3


def test_triplet_batch_must_be_multiple_of_3() -> None:
    with pytest.raises(ConfigError, match=r"multiple of 3 .*; use 60 or 63"):
        TripletTupleSampler(LABELS, 61)
    with pytest.raises(DataError, match="at least 2 classes"):
        TripletTupleSampler(np.zeros(10, dtype=int), 6)


@pytest.mark.parametrize("kind", list(FACTORIES), ids=list(FACTORIES))
def test_deterministic_per_seed_and_epoch(kind: str) -> None:
    a, b = FACTORIES[kind](seed=11), FACTORIES[kind](seed=11)
    same = lambda x, y: all(np.array_equal(u, v) for u, v in zip(x, y, strict=True))  # noqa: E731
    assert same(a.batches(4), b.batches(4))
    assert same(a.batches(4), a.batches(4)), "a pure function: resuming can skip batches"
    assert not same(a.batches(4), a.batches(5)), "a new order every epoch"
    assert not same(a.batches(4), FACTORIES[kind](seed=12).batches(4)), "seed matters"


def test_world_size_prefix_property() -> None:
    """A smaller world sees the same global order, just cut at a different multiple."""
    one = PKBatchSampler(LABELS, 3, 4, seed=3).global_batches(2)
    eight = PKBatchSampler(LABELS, 3, 4, seed=3, world_size=8).global_batches(2)
    assert len(eight) == 16 and all(np.array_equal(x, y) for x, y in zip(eight, one[:16]))


def test_shuffle_drop_last() -> None:
    labels = np.arange(25)
    dropped = ShuffleBatchSampler(labels, 10)
    assert len(dropped) == 2 and all(b.size == 10 for b in dropped.batches(0))
    kept = ShuffleBatchSampler(labels, 10, drop_last=False)
    sizes = [b.size for b in kept.batches(0)]
    assert sizes == [10, 10, 5]
    assert sorted(np.concatenate(kept.batches(0)).tolist()) == list(range(25))
    two = [ShuffleBatchSampler(labels, 10, drop_last=False, rank=r, world_size=2) for r in range(2)]
    assert [len(s) for s in two] == [1, 1], "the tail that cannot go to every rank is dropped"


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"rank": 2, "world_size": 2}, ConfigError, "rank=2 must be below world_size=2"),
        ({"world_size": 0}, ConfigError, "world_size=0"),
        ({"seed": -1}, ConfigError, "seed=-1"),
        ({"rank": True}, ConfigError, "rank=True"),
    ],
    ids=["rank-too-big", "world-zero", "negative-seed", "bool-rank"],
)
def test_rank_validation(kwargs: dict, error: type, text: str) -> None:
    with pytest.raises(error, match=text):
        ShuffleBatchSampler(LABELS, 4, **kwargs)


def test_label_and_size_validation() -> None:
    with pytest.raises(DataError, match="non-empty 1-d"):
        ShuffleBatchSampler([], 4)
    with pytest.raises(DataError, match="integers"):
        ShuffleBatchSampler([0.5, 1.5], 1)
    with pytest.raises(ConfigError, match="batch_size=0"):
        ShuffleBatchSampler(LABELS, 0)
    with pytest.raises(ConfigError, match="k=1"):
        PKBatchSampler(LABELS, 3, 1)
    with pytest.raises(ConfigError, match="epoch=-1"):
        ShuffleBatchSampler(LABELS, 4).batches(-1)
