"""Rank-aware batch samplers: every rank computes the same global batch list, keeps its share.

The reference sharded a fixed tuple stream row by row, which split (anchor, positive,
negative) triples and same-class pairs across ranks, and seeded it with wall-clock time,
so ranks disagreed. Here each epoch's batches come from one Generator seeded with
(seed, epoch), identical on every rank; whole global batches are dealt round-robin
(rank r takes batches r, r+W, ...), and the tail that would not give every rank the same
number of batches is dropped. `batches(epoch)` is a pure function of
(seed, epoch, rank, world_size), so a resumed run can skip the first n batches exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from job.errors import ConfigError, DataError

SINGLETON_MODES = ("drop", "error")


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name}={value!r} must be an integer >= {minimum}")
    return int(value)


def _as_labels(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.size == 0:
        raise DataError(f"labels must be a non-empty 1-d array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"labels must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _class_members(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(indices sorted by class, class values, start of each class in that order, counts)."""
    order = np.argsort(labels, kind="stable")
    classes, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    return order, classes, starts, counts


class _RankBatchSampler:
    """Shared part: seeding, round-robin dealing to ranks, equal batch counts."""

    def __init__(self, *, rank: int = 0, world_size: int = 1, seed: int = 0) -> None:
        self.world_size = _check_int("world_size", world_size, 1)
        self.rank = _check_int("rank", rank, 0)
        if self.rank >= self.world_size:
            raise ConfigError(f"rank={rank} must be below world_size={world_size}")
        self.seed = _check_int("seed", seed, 0)

    # subclasses -------------------------------------------------------------------------
    def _global_count(self) -> int:
        """Global batches one epoch can form, before trimming to a multiple of world_size."""
        raise NotImplementedError

    def _draw(self, rng: np.random.Generator, count: int) -> list[np.ndarray]:
        """The epoch's first `count` global batches, drawn from `rng` only."""
        raise NotImplementedError

    def _describe(self) -> str:
        raise NotImplementedError

    # public -----------------------------------------------------------------------------
    def _check_enough(self) -> None:
        if len(self) == 0:
            raise DataError(
                f"{self._describe()} forms {self._global_count()} batch(es) per epoch, fewer than "
                f"world_size={self.world_size}; use a larger split, a smaller batch or fewer ranks"
            )

    def __len__(self) -> int:
        """Batches per rank per epoch; the same on every rank so collective steps line up."""
        return self._global_count() // self.world_size

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """All ranks' batches of `epoch`, in global order (batch i goes to rank i % world_size)."""
        epoch = _check_int("epoch", epoch, 0)
        rng = np.random.default_rng([self.seed, epoch])
        return self._draw(rng, len(self) * self.world_size)

    def batches(self, epoch: int) -> list[np.ndarray]:
        """This rank's batches of `epoch`: global batches rank, rank + W, rank + 2W, ..."""
        return self.global_batches(epoch)[self.rank :: self.world_size]

    def batch_ids(self) -> np.ndarray:
        """Global numbers of this rank's batches (the same every epoch): rank, rank + W, ...

        The loader seeds augmentation by them, so a sample is augmented identically whichever
        rank, or how many micro-batches on one rank, processes its batch.
        """
        return self.rank + self.world_size * np.arange(len(self), dtype=np.int64)


class ShuffleBatchSampler(_RankBatchSampler):
    """Plain shuffled batches, for softmax pre-training."""

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        batch_size: int,
        *,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        """`drop_last=False` keeps a short final global batch (if it falls in a whole round of ranks)."""
        super().__init__(rank=rank, world_size=world_size, seed=seed)
        self.num_samples = int(_as_labels(labels).size)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.drop_last = bool(drop_last)
        self._check_enough()

    def _global_count(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def _draw(self, rng: np.random.Generator, count: int) -> list[np.ndarray]:
        perm = rng.permutation(self.num_samples).astype(np.int64)
        bs = self.batch_size
        return [perm[i * bs : (i + 1) * bs] for i in range(count)]

    def _describe(self) -> str:
        return f"{self.num_samples} images in batches of {self.batch_size}"


class PKBatchSampler(_RankBatchSampler):
    """Batches of `p` distinct classes x `k` images, each class's k rows consecutive.

    Each epoch shuffles the usable classes and takes them p at a time, so every class
    appears at most once per epoch. A class with 2..k-1 images fills its k rows by
    drawing extra images with replacement (each image at least once). Single-image
    classes give no positive pair: dropped (listed in `dropped_classes`) or an error.
    Pass `split.class_ids` as labels if messages should show the dataset's class ids.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        p: int,
        k: int,
        *,
        singletons: str = "drop",
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(rank=rank, world_size=world_size, seed=seed)
        self.p = _check_int("p", p, 2)
        self.k = _check_int("k", k, 2)
        if singletons not in SINGLETON_MODES:
            raise ConfigError(f"singletons={singletons!r} is not one of: {', '.join(SINGLETON_MODES)}")
        lab = _as_labels(labels)
        order, classes, starts, counts = _class_members(lab)
        single = counts < 2
        self.dropped_classes: list[int] = [int(c) for c in classes[single]]
        if self.dropped_classes and singletons == "error":
            n = len(self.dropped_classes)
            first = ", ".join(str(c) for c in self.dropped_classes[:5]) + (", ..." if n > 5 else "")
            raise DataError(
                f"{n} class(es) have a single image and cannot form a positive pair "
                f"(class ids {first}); set singletons=drop to leave them out"
            )
        keep = ~single
        self.classes = classes[keep]
        self._members = [order[s : s + c] for s, c in zip(starts[keep], counts[keep])]
        usable = len(self.classes)
        if usable < self.p:
            raise DataError(
                f"P x K sampling needs p={self.p} distinct classes per batch but only {usable} "
                f"class(es) have 2 or more images; lower batch_size or set pk_classes (at most {usable}) or use a larger split"
            )
        self._check_enough()

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def _global_count(self) -> int:
        return len(self.classes) // self.p

    def _draw(self, rng: np.random.Generator, count: int) -> list[np.ndarray]:
        class_order = rng.permutation(len(self.classes))
        out: list[np.ndarray] = []
        for b in range(count):
            rows = []
            for ci in class_order[b * self.p : (b + 1) * self.p]:
                rows.append(self._pick(self._members[ci], rng))
            out.append(np.concatenate(rows))
        return out

    def _pick(self, members: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """k images of one class: distinct if it has k, else all of them plus repeats."""
        n = members.size
        if n >= self.k:
            return members[rng.permutation(n)[: self.k]]
        extra = rng.integers(0, n, size=self.k - n)
        return members[rng.permutation(np.concatenate([np.arange(n), extra]))]

    def _describe(self) -> str:
        return f"P x K sampling (p={self.p}, k={self.k}) over {len(self.classes)} usable classes"


class TripletTupleSampler(_RankBatchSampler):
    """The reference's `triplet-fixed` layout: rows are consecutive (anchor, positive, negative).

    Every image is an anchor once per epoch, in the order of the epoch's permutation;
    its positive is another image of its class (itself only if the class has one image),
    its negative a uniformly drawn image of any other class. Batches hold whole triples.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(rank=rank, world_size=world_size, seed=seed)
        self.batch_size = _check_int("batch_size", batch_size, 3)
        if self.batch_size % 3:
            raise ConfigError(
                f"batch_size={batch_size} must be a multiple of 3 for (anchor, positive, negative) "
                f"triples; use {self.batch_size - self.batch_size % 3} or {self.batch_size + 3 - self.batch_size % 3}"
            )
        self.labels = _as_labels(labels)
        self._order, classes, starts, counts = _class_members(self.labels)
        if classes.size < 2:
            raise DataError("triplets need at least 2 classes for negatives; the split has 1")
        cls_of = np.searchsorted(classes, self.labels)
        self._start = starts[cls_of]
        self._count = counts[cls_of]
        # position of each image inside its class block of `_order`
        self._pos = np.empty(self.labels.size, dtype=np.int64)
        self._pos[self._order] = np.arange(self.labels.size) - np.repeat(starts, counts)
        self._check_enough()

    def _global_count(self) -> int:
        return self.labels.size // (self.batch_size // 3)

    def _draw(self, rng: np.random.Generator, count: int) -> list[np.ndarray]:
        n = self.labels.size
        anchors = rng.permutation(n).astype(np.int64)
        start, cnt, pos = self._start[anchors], self._count[anchors], self._pos[anchors]
        # positive: uniform over the class block minus the anchor itself
        u = rng.integers(0, np.maximum(cnt - 1, 1))
        u = np.where(u >= pos, u + 1, u)
        positives = np.where(cnt > 1, self._order[start + np.minimum(u, cnt - 1)], anchors)
        # negative: uniform over all images outside the anchor's class block
        v = rng.integers(0, n - cnt)
        negatives = self._order[np.where(v >= start, v + cnt, v)]
        triples = np.stack([anchors, positives, negatives], axis=1).reshape(-1)
        bs = self.batch_size
        return [triples[i * bs : (i + 1) * bs] for i in range(count)]

    def _describe(self) -> str:
        return f"{self.labels.size} triples in batches of {self.batch_size // 3}"
