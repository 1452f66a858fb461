"""Batch loading: decode + transform in a thread pool, prefetch, survive bad files.

PIL releases the GIL while decoding and resizing, so threads overlap well without the
cost of worker processes. Each sample's augmentation uses its own Generator seeded by
(seed, epoch, index, global batch number, row), so a batch is identical whatever the thread
count, the rank that loads it, or where a resumed epoch restarts.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from job.data.images import decode_rgb
from job.data.lists import SplitList
from job.data.transforms import EvalTransform, TrainTransform
from job.errors import ConfigError, DataError

log = logging.getLogger("job.data")

_LOG_LIMIT = 5


class BatchLoader:
    """Iterate `(images float32 (B,3,S,S), labels int32 (B,))` for the given batches, in order.

    A missing or undecodable image is replaced by the next decodable image of the same
    class (in split order, so the choice is deterministic), or by a zero image (the mean
    colour after normalisation) when the class has none; `replaced` counts such samples
    and `bad_images` lists the failing files. One warning line per pass is logged.
    `start_batch` skips batches when resuming mid-epoch while keeping every later sample's
    augmentation identical to an uninterrupted epoch.
    """

    def __init__(
        self,
        split: SplitList,
        batches: Sequence[np.ndarray],
        transform: TrainTransform | EvalTransform,
        *,
        seed: int,
        epoch: int,
        num_workers: int = 2,
        prefetch: int = 2,
        start_batch: int = 0,
        batch_ids: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        for name, value, low in (
            ("num_workers", num_workers, 0),
            ("prefetch", prefetch, 0),
            ("seed", seed, 0),
            ("epoch", epoch, 0),
            ("start_batch", start_batch, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ConfigError(f"{name}={value!r} must be an integer >= {low}")
        self.split = split
        self.batches = [np.asarray(b, dtype=np.int64).reshape(-1) for b in batches]
        n = len(split)
        for i, b in enumerate(self.batches):
            if b.size and (b.min() < 0 or b.max() >= n):
                raise DataError(f"batch {i} indexes beyond the split's {n} images; sampler built for another split?")
        self.transform = transform
        self.seed, self.epoch = int(seed), int(epoch)
        self.num_workers, self.prefetch = int(num_workers), int(prefetch)
        self.start_batch = int(start_batch)
        self._labels = split.labels()
        # global batch numbers (sampler.batch_ids()); default: the order given
        self._ids = (np.arange(len(self.batches), dtype=np.int64) if batch_ids is None
                     else np.asarray(batch_ids, dtype=np.int64).reshape(-1))
        if len(self._ids) != len(self.batches):
            raise ConfigError(f"{len(self._ids)} batch_ids for {len(self.batches)} batches")
        self._lock = threading.Lock()
        self._bad: dict[int, str] = {}  # split index -> failure reason
        self._by_class: dict[int, np.ndarray] | None = None
        self.replaced = 0

    def __len__(self) -> int:
        return max(0, len(self.batches) - self.start_batch)

    @property
    def bad_images(self) -> list[str]:
        """Paths (relative to the split root) that failed to load, each once, sorted."""
        with self._lock:
            return sorted({self.split.paths[i] for i in self._bad})

    # ----------------------------------------------------------------------- one sample
    def _decode(self, index: int):
        """The image at `index`, or None if it is missing/undecodable (remembered)."""
        with self._lock:
            if index in self._bad:
                return None
        try:
            return decode_rgb(self.split.image_path(index))
        except DataError as e:
            with self._lock:
                self._bad[index] = str(e)
            return None

    def _class_members(self, index: int) -> np.ndarray:
        with self._lock:
            if self._by_class is None:
                order = np.argsort(self._labels, kind="stable")
                classes, starts = np.unique(self._labels[order], return_index=True)
                ends = np.append(starts[1:], order.size)
                self._by_class = {int(c): order[s:e] for c, s, e in zip(classes, starts, ends)}
            return self._by_class[int(self._labels[index])]

    def _load_one(self, index: int, position: tuple[int, int]) -> np.ndarray:
        img = self._decode(index)
        if img is None:
            with self._lock:
                self.replaced += 1
            members = self._class_members(index)
            here = int(np.searchsorted(members, index))
            for j in np.roll(members, -here)[1:]:  # the class's other images, after `index` cyclically
                img = self._decode(int(j))
                if img is not None:
                    break
        if img is None:
            return np.zeros((3, self.transform.size, self.transform.size), dtype=np.float32)
        if isinstance(self.transform, TrainTransform):
            rng = np.random.default_rng([self.seed, self.epoch, index, *position])
            return self.transform(img, rng)
        return self.transform(img)

    # ----------------------------------------------------------------------- iteration
    def _load_batch(self, b: int, pool: ThreadPoolExecutor | None) -> list:
        idx = self.batches[b]
        gid = int(self._ids[b])
        if pool is None:
            return [self._load_one(int(i), (gid, j)) for j, i in enumerate(idx)]
        return [pool.submit(self._load_one, int(i), (gid, j)) for j, i in enumerate(idx)]

    def _assemble(self, b: int, parts: list) -> tuple[np.ndarray, np.ndarray]:
        arrays = [p.result() if isinstance(p, Future) else p for p in parts]
        size = self.transform.size
        images = np.stack(arrays) if arrays else np.zeros((0, 3, size, size), np.float32)
        return images, self._labels[self.batches[b]].astype(np.int32)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        replaced_before = self.replaced
        todo = range(self.start_batch, len(self.batches))
        try:
            if self.num_workers == 0:
                for b in todo:
                    yield self._assemble(b, self._load_batch(b, None))
                return
            with ThreadPoolExecutor(self.num_workers, thread_name_prefix="job-data") as pool:
                pending: deque[tuple[int, list]] = deque()
                it = iter(todo)
                try:
                    for b in it:
                        pending.append((b, self._load_batch(b, pool)))
                        if len(pending) > self.prefetch:
                            yield self._assemble(*pending.popleft())
                    while pending:
                        yield self._assemble(*pending.popleft())
                finally:
                    for _, parts in pending:
                        for f in parts:
                            f.cancel()
        finally:
            self._warn(self.replaced - replaced_before)

    def _warn(self, count: int) -> None:
        if not count:
            return
        bad = self.bad_images
        shown = ", ".join(bad[:_LOG_LIMIT]) + (", ..." if len(bad) > _LOG_LIMIT else "")
        log.warning(
            "epoch %d: %d sample(s) replaced because %d image file(s) are missing or undecodable "
            "(%s); check them with check_images(verify=True)",
            self.epoch,
            count,
            len(bad),
            shown,
        )


def iter_eval_batches(
    split: SplitList,
    transform: EvalTransform,
    batch_size: int,
    num_workers: int = 2,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The whole split in file order, `batch_size` at a time (last batch may be smaller)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be an integer >= 1")
    n = len(split)
    batches = [np.arange(s, min(s + batch_size, n), dtype=np.int64) for s in range(0, n, batch_size)]
    yield from BatchLoader(split, batches, transform, seed=0, epoch=0, num_workers=num_workers)
