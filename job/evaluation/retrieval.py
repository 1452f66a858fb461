"""Exact retrieval metrics (Recall@K, MAP@R) computed block by block in bounded memory.

Every sample is a query against all others (itself excluded). Similarity is the dot product of
L2-normalised features (the same order as the reference's squared Euclidean distance).

No N x N matrix and no sort of a row: for a block of queries we hold a (block, N) similarity
slab and *count* against thresholds.
- Recall@K: the rank of the best positive is 1 + #negatives with similarity >= its
  similarity, so the query hits at K iff that count is < K.
- MAP@R (Musgrave et al. 2020): with R = number of positives, the i-th best positive sits at
  rank i + #negatives >= its similarity; only ranks <= R count, so only the R largest
  negative similarities matter, found by a linear-time partition (not a sort).
Ties go against the query: a negative with the same similarity as a positive ranks before
it, so tied (for example collapsed) features cannot inflate the scores.
Queries without any positive (a class with one sample) are left out and counted.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("job.eval")

DEFAULT_KS = (1, 10, 100, 1000)


@dataclass
class RetrievalResult:
    recall: dict[int, float]
    map_at_r: float
    num_queries: int          # queries with at least one positive (the ones scored)
    num_skipped: int          # queries whose class has no other sample

    def to_dict(self) -> dict:
        out = {f"recall@{k}": v for k, v in self.recall.items()}
        out.update({"map@r": self.map_at_r, "num_queries": self.num_queries,
                    "num_skipped_queries": self.num_skipped})
        return out


def normalize(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    return f / np.maximum(norms, 1e-12)


def _positive_table(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every sample, the indices of the other samples of its class, padded with -1.

    Returns (table (N, max_class_size - 1), counts (N,)).
    """
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    sizes = np.diff(np.r_[starts, len(labels)])
    width = max(int(sizes.max()) - 1, 1)
    table = np.full((len(labels), width), -1, dtype=np.int64)
    counts = np.zeros(len(labels), dtype=np.int64)
    for start, size in zip(starts, sizes):
        members = order[start:start + size]
        for j, q in enumerate(members):
            others = np.delete(members, j)
            table[q, :len(others)] = others
            counts[q] = len(others)
    return table, counts


def retrieval_metrics(features: np.ndarray, labels: np.ndarray, ks=DEFAULT_KS, *,
                      block_size: int = 512, normalized: bool = False,
                      progress_every: float = 10.0) -> RetrievalResult:
    """Recall@K for each K and MAP@R of every sample against all others.

    Memory: one (block_size, N) float32 slab plus O(N * max class size) integers.
    """
    x = np.ascontiguousarray(features if normalized else normalize(features), dtype=np.float32)
    labels = np.asarray(labels).reshape(-1)
    n = len(x)
    if n != len(labels):
        raise ValueError(f"{n} features but {len(labels)} labels")
    if n < 2:
        raise ValueError("retrieval needs at least 2 samples")
    ks = tuple(sorted(int(k) for k in ks))
    table, counts = _positive_table(labels)
    hits = {k: 0 for k in ks}
    ap_sum = 0.0
    scored = int((counts > 0).sum())
    t0 = last = time.monotonic()
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        rows = np.arange(start, stop)
        keep = counts[rows] > 0
        rows = rows[keep]
        if len(rows) == 0:
            continue
        sim = x[rows] @ x.T                               # (b, N) slab
        b = len(rows)
        r = counts[rows]
        pos_idx = table[rows]                              # (b, W), -1 padded
        valid = pos_idx >= 0
        pos_sim = np.where(valid, np.take_along_axis(sim, np.maximum(pos_idx, 0), 1), -np.inf)
        # Remove self and positives from the slab: what remains are the negatives.
        sim[np.arange(b), rows] = -np.inf
        rr, cc = np.nonzero(valid)
        sim[rr, pos_idx[rr, cc]] = -np.inf
        pos_sorted = -np.sort(-pos_sim, axis=1)            # each row's positives, best first
        best = pos_sorted[:, :1]
        above_best = np.count_nonzero(sim >= best, axis=1)  # negatives ranked before it
        for k in ks:
            hits[k] += int(np.count_nonzero(above_best < k))
        # MAP@R: only queries whose best positive is within the top R can score.
        alive = above_best < r
        if alive.any():
            ap_sum += _map_at_r_block(sim[alive], pos_sorted[alive], r[alive])
        now = time.monotonic()
        if progress_every and now - last >= progress_every:
            last = now
            done = stop / n
            log.info("retrieval: %d/%d queries (%.0f%%), %.0fs elapsed, ETA %.0fs",
                     stop, n, 100 * done, now - t0, (now - t0) * (1 - done) / done)
    return RetrievalResult(
        recall={k: hits[k] / scored if scored else 0.0 for k in ks},
        map_at_r=ap_sum / scored if scored else 0.0,
        num_queries=scored, num_skipped=n - scored)


def _map_at_r_block(neg_sim: np.ndarray, pos_sorted: np.ndarray, r: np.ndarray) -> float:
    """Sum over the block's queries of AP@R, given negatives' similarities (positives and self
    set to -inf) and each query's positive similarities sorted descending (-inf padded)."""
    rmax = int(r.max())
    m = neg_sim.shape[1]
    kth = max(m - rmax, 0)
    top_neg = np.partition(neg_sim, kth, axis=1)[:, kth:]     # the rmax largest negatives
    total = 0.0
    for i in range(rmax):
        p = pos_sorted[:, i:i + 1]
        # negatives ranked before the (i+1)-th positive; exact whenever it is < rmax
        before = np.count_nonzero(top_neg >= p, axis=1)
        rank = i + 1 + before
        scores = (i + 1) / rank
        counts_here = (i < r) & (rank <= r)
        total += float(np.sum(np.where(counts_here, scores / r, 0.0)))
    return total
