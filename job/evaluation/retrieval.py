"""Exact retrieval metrics (Recall@K, MAP@R) computed block by block in bounded memory.

Every sample is a query against all others (itself excluded). Similarity is the dot product of
L2-normalised features (the same order as the reference's squared Euclidean distance).

No N x N matrix and no sort of a row: for a block of queries we hold a (block, N) similarity
slab and *count* against thresholds.
- Recall@K: the rank of the best positive is 1 + #negatives with similarity >= its
  similarity, so the query hits at K iff that count is < K.
- MAP@R (Musgrave et al. 2020): with R = number of positives, the i-th best positive sits at
  rank i + #negatives >= its similarity; only ranks <= R count, so only negatives above the
  R-th largest negative matter. A lower bound of that R-th largest negative comes from a
  partition of a fixed sample of columns (the R-th largest of a subset cannot exceed the R-th
  largest of all); one threshold pass then extracts the few negatives at or above
  max(that bound, the R-th positive's similarity), and the counts are taken on those alone.
  A positive below the threshold has at least R negatives above it and cannot score, so the
  result is exact; no row is sorted or partitioned in full.
Ties go against the query: a negative with the same similarity as a positive ranks before
it, so tied (for example collapsed) features cannot inflate the scores.
Queries without any positive (a class with one sample) are left out and counted.
Per block, the matrix product dominates: the slab is written into one reused buffer and the
rest is a few linear passes over it (see benchmarks/README.md for the measured ratio to the
bare matrix-multiply time).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("job.eval")

DEFAULT_KS = (1, 10, 100, 1000)
# Columns partitioned per block to bound the R-th largest negative from below (speed only).
_SAMPLE_COLUMNS = 2048


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
    n = len(labels)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    sizes = np.diff(np.r_[starts, n])
    width = max(int(sizes.max()) - 1, 1)
    # sample order[t] sits at position j of its class block [start, start + size)
    block = np.repeat(np.arange(len(starts)), sizes)
    start, size = starts[block], sizes[block]
    j = np.arange(n) - start
    c = np.arange(width)[None, :]
    src = c + (c >= j[:, None])                 # skip the sample itself
    ok = src < size[:, None]
    table = np.full((n, width), -1, dtype=np.int64)
    table[order] = np.where(ok, order[np.minimum(start[:, None] + src, n - 1)], -1)
    counts = np.empty(n, dtype=np.int64)
    counts[order] = size - 1
    return table, counts


def retrieval_metrics(features: np.ndarray, labels: np.ndarray, ks=DEFAULT_KS, *,
                      block_size: int = 512, normalized: bool = False,
                      progress_every: float = 10.0,
                      sample_columns: int = _SAMPLE_COLUMNS) -> RetrievalResult:
    """Recall@K for each K and MAP@R of every sample against all others.

    Memory: one (block_size, N) float32 slab and one boolean slab, plus
    O(N * max class size) integers. `sample_columns` only affects speed, never the result.
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
    block_size = max(1, min(int(block_size), n))
    slab = np.empty((block_size, n), dtype=np.float32)   # reused: no page faults per block
    mask = np.empty((block_size, n), dtype=bool)
    xt = x.T
    t0 = last = time.monotonic()
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        rows = np.arange(start, stop)
        rows = rows[counts[rows] > 0]
        if len(rows) == 0:
            continue
        b = len(rows)
        sim = slab[:b]
        np.matmul(x[rows], xt, out=sim)                    # (b, N) similarities
        r = counts[rows]
        pos_idx = table[rows]                              # (b, W), -1 padded
        valid = pos_idx >= 0
        pos_sim = np.where(valid, np.take_along_axis(sim, np.maximum(pos_idx, 0), 1), -np.inf)
        # Remove self and positives from the slab: what remains are the negatives.
        sim[np.arange(b), rows] = -np.inf
        rr, cc = np.nonzero(valid)
        sim[rr, pos_idx[rr, cc]] = -np.inf
        pos_sorted = -np.sort(-pos_sim, axis=1)            # each row's positives, best first
        # negatives ranked before the best positive (ties count against the query)
        above = np.greater_equal(sim, pos_sorted[:, :1], out=mask[:b])
        # a per-row count_nonzero (a popcount-style kernel) beats a cast-and-sum over axis 1
        above_best = np.fromiter((np.count_nonzero(row) for row in above), np.int64, count=b)
        for k in ks:
            hits[k] += int(np.count_nonzero(above_best < k))
        # MAP@R: only queries whose best positive is within the top R can score.
        alive = above_best < r
        if alive.any():
            ap_sum += _map_at_r_block(sim, pos_sorted, r, alive, sample_columns, mask[:b])
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


def _map_at_r_block(neg_sim: np.ndarray, pos_sorted: np.ndarray, r: np.ndarray,
                    alive: np.ndarray, sample_columns: int = _SAMPLE_COLUMNS,
                    scratch: np.ndarray | None = None) -> float:
    """Sum over the block's `alive` queries of AP@R.

    `neg_sim` (b, N): similarities with self and positives set to -inf (only negatives left);
    `pos_sorted` (b, W): each query's positive similarities, descending, -inf padded; `r` (b,):
    number of positives; `alive`: queries whose best positive ranks within R (the others
    score 0); `scratch`: an optional boolean (b, N) buffer. `neg_sim` is only read.
    """
    b, m = neg_sim.shape
    rows_b = np.arange(b)
    rmax = int(r[alive].max())
    r_cap = np.clip(r, 1, rmax)
    # 1. Lower bound of each query's R-th largest negative: the R-th largest of a column
    #    sample (a subset's R-th largest never exceeds the whole row's).
    s = min(m, max(int(sample_columns), rmax))
    top = np.partition(neg_sim[:, :s], s - rmax, axis=1)[:, s - rmax:]
    top.sort(axis=1)                                   # (b, rmax) ascending
    bound = top[rows_b, rmax - r_cap]                  # the r-th largest of the sample
    # 2. Threshold: a negative below it is below the R-th positive (the lowest positive
    #    that can count) or below R other negatives; it cannot change a counted rank.
    worst = pos_sorted[rows_b, np.minimum(r, pos_sorted.shape[1]) - 1]
    tau = np.where(alive, np.maximum(worst, bound), np.inf).astype(neg_sim.dtype)
    picked = np.greater_equal(neg_sim, tau[:, None], out=scratch)
    flat = np.flatnonzero(picked)
    rows = flat // m
    vals = neg_sim.reshape(-1)[flat]
    # 3. Ranks from the extracted negatives: a positive at or above tau gets its exact count;
    #    one below has >= R negatives above it and cannot score.
    total = 0.0
    for i in range(rmax):
        p = pos_sorted[:, i]
        active = alive & (i < r) & (p >= tau)
        if not active.any():
            break
        before = np.bincount(rows, weights=vals >= p[rows], minlength=b)
        rank = i + 1 + before
        total += float(np.sum(np.where(active & (rank <= r), (i + 1) / rank / r, 0.0)))
    return total
