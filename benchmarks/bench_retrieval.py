"""Retrieval metrics at Stanford Online Products scale: this project's evaluator against
faiss exact search and against the reference's full-sort algorithm.

Data: N (default 60,502, SOP's test split) L2-normalised embeddings, SOP-like classes of
2-12 images. Every vector is a signed permutation of one integer magnitude profile whose
squares sum to 2048^2, divided by 2048: the vectors are exactly unit length and every dot
product is a multiple of 2^-22 computed without rounding, in any summation order. So numpy,
faiss and any BLAS give bit-identical similarities, ties are real ties, and the three methods
must agree exactly (recall hit counts identical; MAP@R equal up to float64 summation order).
Class members are the class's vector with a class-dependent fraction of signs flipped.

Methods (each in its own subprocess, so peak RSS is its own VmHWM):
- matmul floor: only `x[block] @ x.T` for all row blocks into a reused buffer (numpy's BLAS)
- this project: `job.evaluation.retrieval.retrieval_metrics`
- faiss: IndexFlatIP exact search, k = 1001 (self + 1000), queries in batches, then the same
  metrics from the neighbour lists (a query whose best positive is not strictly above the
  list's last similarity and could still be a hit is recounted exactly and reported)
- reference: the model zoo example's algorithm: squared Euclidean distance matrix in 100 row
  chunks, self + 1e8, a full argsort of every row (on 2 threads here, as it used 4
  processes), metrics from the sorted rows (ties counted against the query).

Run: .venv-bench/bin/python benchmarks/bench_retrieval.py [--dims 512 2048] [--repeats 3]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine_line, median, run_worker, spread, table, versions  # noqa: E402

KS = (1, 10, 100, 1000)
RHO = 2048   # vectors are integer profiles / RHO with sum of squares RHO^2
METHODS = ("floor", "ours", "faiss", "reference")
LABELS = {"floor": "matmul floor (numpy BLAS)", "ours": "this project",
          "faiss": "faiss IndexFlatIP k=1001 + metrics", "reference": "reference: chunks + full argsort"}


# ---------------------------------------------------------------------------- data

def sop_class_sizes(n: int, rng: np.random.Generator, lo: int = 2, hi: int = 12) -> np.ndarray:
    """Class sizes in lo..hi with geometrically fewer large classes (mean ~5.3 like SOP's
    test split: 60,502 images in 11,316 classes), summing to exactly n."""
    s = np.arange(lo, hi + 1)
    p = 0.83 ** (s - lo)
    p /= p.sum()
    sizes = rng.choice(s, size=n // lo + 1, p=p)
    m = int(np.searchsorted(np.cumsum(sizes), n)) + 1
    sizes = sizes[:m].copy()
    excess = int(sizes.sum()) - n
    while excess > 0:
        i = int(np.argmax(sizes))
        take = min(excess, int(sizes[i]) - lo)
        sizes[i] -= take
        excess -= take
    return sizes


def _profile(d: int, rng: np.random.Generator) -> np.ndarray:
    """d non-negative integers (|gaussian|-shaped) whose squares sum to exactly RHO^2."""
    target = RHO * RHO
    prof = np.abs(rng.normal(size=d))
    prof = np.floor(prof / np.sqrt((prof ** 2).sum()) * RHO).astype(np.int64)
    while True:
        diff = target - int((prof ** 2).sum())
        if diff == 0:
            return prof
        if diff > 0:
            i = int(np.argmin(prof))
            if 2 * prof[i] + 1 <= diff:
                prof[i] += 1
                continue
        for a in (1, -1, 2, -2, 3, -3):
            cand = np.flatnonzero(((prof + a) ** 2 - prof ** 2 == diff) & (prof + a >= 0))
            if cand.size:
                prof[cand[0]] += a
                break
        else:
            j = int(rng.integers(d))
            prof[j] = max(prof[j] - 1, 0)


def make_embeddings(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, d])
    sizes = sop_class_sizes(n, rng)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    prof = _profile(d, rng)
    c = len(sizes)
    centres = prof[np.argsort(rng.random((c, d)), axis=1)].astype(np.float32)
    centres *= np.where(rng.random((c, d)) < 0.5, -1, 1).astype(np.float32)
    # expected positive similarity (1 - 2f)^2 = t / sqrt(d), t ~ U(2.5, 6): a mix of easy and
    # hard classes against the ~4.3 / sqrt(d) of the best of 60k random negatives
    mu = rng.uniform(2.5, 6.0, size=c) / math.sqrt(d)
    flip_p = ((1 - np.sqrt(np.clip(mu, 0, 1))) / 2).astype(np.float32)
    x = centres[labels]
    x[rng.random((n, d), dtype=np.float32) < flip_p[labels, None]] *= -1
    x *= np.float32(1.0 / RHO)
    order = rng.permutation(n)
    return np.ascontiguousarray(x[order]), labels[order].astype(np.int64)


# ---------------------------------------------------------------------------- metrics helpers

def _positive_counts(labels: np.ndarray) -> np.ndarray:
    _, inv, cnt = np.unique(labels, return_inverse=True, return_counts=True)
    return cnt[inv] - 1


class Tally:
    """Recall hit counts and the per-query AP@R sum, accumulated query by query."""

    def __init__(self) -> None:
        self.hits = {k: 0 for k in KS}
        self.ap = 0.0
        self.scored = 0

    def add(self, above_best: np.ndarray, ap: np.ndarray) -> None:
        for k in KS:
            self.hits[k] += int(np.count_nonzero(above_best < k))
        self.ap += float(ap.sum())
        self.scored += len(above_best)

    def result(self) -> dict:
        return {"hits": {str(k): v for k, v in self.hits.items()},
                "recall": {str(k): v / self.scored for k, v in self.hits.items()},
                "map_at_r": self.ap / self.scored, "num_queries": self.scored}


def exact_query(x: np.ndarray, labels: np.ndarray, q: int) -> tuple[int, float]:
    """(#negatives >= best positive, AP@R) of one query from its full similarity row."""
    s = x @ x[q]
    same = labels == labels[q]
    same[q] = False
    pos = np.sort(s[same])[::-1]
    neg = np.sort(s[~same & (np.arange(len(s)) != q)])     # ascending
    r = len(pos)
    before = len(neg) - np.searchsorted(neg, pos, side="left")   # negatives >= each positive
    rank = np.arange(1, r + 1) + before
    ap = float(np.sum(np.where(rank <= r, np.arange(1, r + 1) / rank, 0.0)) / r)
    return int(before[0]), ap


# ---------------------------------------------------------------------------- workers

def worker_floor(x, labels, args) -> dict:
    n = len(x)
    bs = args.block_size
    buf = np.empty((bs, n), np.float32)
    xt = x.T
    t0 = time.perf_counter()
    for start in range(0, n, bs):
        stop = min(start + bs, n)
        np.matmul(x[start:stop], xt, out=buf[:stop - start])
    return {"seconds": time.perf_counter() - t0}


def worker_ours(x, labels, args) -> dict:
    from job.evaluation.retrieval import retrieval_metrics

    t0 = time.perf_counter()
    res = retrieval_metrics(x, labels, KS, block_size=args.block_size, progress_every=0)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "hits": {str(k): round(v * res.num_queries) for k, v in res.recall.items()},
            "recall": {str(k): v for k, v in res.recall.items()}, "map_at_r": res.map_at_r,
            "num_queries": res.num_queries}


def worker_faiss(x, labels, args) -> dict:
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    n, d = x.shape
    k = args.k
    r_all = _positive_counts(labels)
    tally = Tally()
    recounted = 0
    t0 = time.perf_counter()
    index = faiss.IndexFlatIP(d)
    index.add(x)
    for start in range(0, n, args.faiss_batch):
        q = np.arange(start, min(start + args.faiss_batch, n))
        q = q[r_all[q] > 0]
        sims, ids = index.search(x[q], k)
        r = r_all[q]
        valid = ids >= 0
        not_self = ids != q[:, None]
        pos = valid & not_self & (labels[np.maximum(ids, 0)] == labels[q][:, None])
        neg = valid & not_self & ~pos
        last = sims[:, -1]                               # lowest similarity in the list
        pos_sims = np.where(pos, sims, -np.inf)
        width = int(r.max())
        pos_sorted = -np.sort(-pos_sims, axis=1)[:, :width]
        best = pos_sorted[:, 0]
        certain = best > last       # every item >= best is then in the list
        c = neg.sum(axis=1)
        above_best = np.where(certain, (neg & (sims >= best[:, None])).sum(axis=1), c)
        ap = np.zeros(len(q))
        for i in range(width):
            p = pos_sorted[:, i]
            ok = (i < r) & (p > last)
            if not ok.any():
                break
            before = (neg & (sims >= p[:, None])).sum(axis=1)
            rank = i + 1 + before
            ap += np.where(ok & (rank <= r), (i + 1) / rank, 0.0)
        ap /= r
        # Not certain: >= c negatives precede the best positive. Decided (a miss at every
        # K <= c, AP 0 when c >= R) unless c < max K or c < R: recount those exactly.
        unsure = ~certain & ((c < max(KS)) | (c < r))
        for j in np.flatnonzero(unsure):
            above_best[j], ap[j] = exact_query(x, labels, int(q[j]))
        recounted += int(unsure.sum())
        tally.add(above_best, ap)
    out = tally.result()
    out.update(seconds=time.perf_counter() - t0, recounted_queries=recounted)
    return out


def worker_reference(x, labels, args) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    n = len(x)
    r_all = _positive_counts(labels)
    tally = Tally()
    threads = os.cpu_count() or 1
    chunk = math.ceil(n / args.reference_chunks)
    sq = np.einsum("ij,ij->i", x, x)
    by_class = np.argsort(labels, kind="stable")
    _, first, size = np.unique(labels[by_class], return_index=True, return_counts=True)
    cls = np.searchsorted(np.unique(labels), labels)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            rows = np.arange(start, stop)
            dist = sq[rows, None] + sq[None, :] - 2.0 * (x[rows] @ x.T)   # squared Euclidean
            dist[np.arange(len(rows)), rows] += 1e8                    # the query itself last
            parts = np.array_split(np.arange(len(rows)), threads)
            orders = list(pool.map(lambda p: np.argsort(dist[p], axis=1), parts))
            order = np.concatenate(orders)                             # full sort of every row
            sorted_d = np.take_along_axis(dist, order, axis=1)
            keep = r_all[rows] > 0
            above_best = np.empty(int(keep.sum()), np.int64)
            ap = np.empty(len(above_best))
            for j, i in enumerate(np.flatnonzero(keep)):
                qi = rows[i]
                members = by_class[first[cls[qi]]:first[cls[qi]] + size[cls[qi]]]
                pd = np.sort(dist[i, members[members != qi]])          # positives, nearest first
                r = len(pd)
                # all items with distance <= a positive's (ties against the query), minus
                # the positives among them: the negatives ranked before it
                le = np.searchsorted(sorted_d[i], pd, side="right")
                before = le - np.searchsorted(pd, pd, side="right")
                rank = np.arange(1, r + 1) + before
                above_best[j] = before[0]
                ap[j] = np.sum(np.where(rank <= r, np.arange(1, r + 1) / rank, 0.0)) / r
            tally.add(above_best, ap)
    out = tally.result()
    out["seconds"] = time.perf_counter() - t0
    return out


WORKERS = {"floor": worker_floor, "ours": worker_ours, "faiss": worker_faiss,
           "reference": worker_reference}


def worker_main(args) -> None:
    x = np.load(args.data)
    labels = np.load(args.labels)
    from common import peak_rss_mib
    base = peak_rss_mib()
    cpu0 = time.process_time()
    out = WORKERS[args.method](x, labels, args)
    out["cpu_seconds"] = time.process_time() - cpu0   # all threads of this process
    out["rss_after_load_mib"] = base
    emit(out)


# ---------------------------------------------------------------------------- driver

def agree(a: dict, b: dict) -> bool:
    return (a["hits"] == b["hits"] and a["num_queries"] == b["num_queries"]
            and abs(a["map_at_r"] - b["map_at_r"]) <= 1e-12)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60502, help="embeddings (default: SOP test split, 60,502)")
    ap.add_argument("--dims", type=int, nargs="+", default=[512],
                    help="embedding sizes (default 512; `--dims 512 2048` adds ~25 min)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of floor/ours/faiss, interleaved (median)")
    ap.add_argument("--reference-repeats", type=int, default=1,
                    help="runs of the slow full-sort reference (default 1; 0 skips it)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--k", type=int, default=1001, help="faiss neighbours (self + 1000)")
    ap.add_argument("--faiss-batch", type=int, default=8192, help="faiss queries per search call")
    ap.add_argument("--reference-chunks", type=int, default=100)
    ap.add_argument("--block-size", type=int, default=512, help="the evaluator's (and floor's) row block")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--labels", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main(args)
        return

    header = machine_line()
    print(f"# retrieval benchmark: {header}", flush=True)
    sections = []
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        for d in args.dims:
            t = time.perf_counter()
            x, labels = make_embeddings(args.n, d, args.seed)
            data, lab = Path(tmp) / f"x{d}.npy", Path(tmp) / f"y{d}.npy"
            np.save(data, x)
            np.save(lab, labels)
            n_classes = len(np.unique(labels))
            del x
            print(f"d={d}: {args.n} embeddings, {n_classes} classes, made in "
                  f"{time.perf_counter() - t:.1f}s", flush=True)
            runs: dict[str, list[dict]] = {m: [] for m in args.methods}
            common = ["--data", str(data), "--labels", str(lab), "--k", str(args.k),
                      "--faiss-batch", str(args.faiss_batch), "--block-size", str(args.block_size),
                      "--reference-chunks", str(args.reference_chunks)]
            for rep in range(max(args.repeats, args.reference_repeats)):
                # rotate the order so that no method always runs first after a quiet spell
                for m in args.methods[rep % len(args.methods):] + args.methods[:rep % len(args.methods)]:
                    wanted = args.reference_repeats if m == "reference" else args.repeats
                    if rep >= wanted:
                        continue
                    out = run_worker(Path(__file__), ["--method", m, *common])
                    runs[m].append(out)
                    extra = (f", recounted {out['recounted_queries']}" if "recounted_queries" in out else "")
                    print(f"  d={d} run {rep + 1} {m:9s} {out['seconds']:7.1f}s wall "
                          f"{out['cpu_seconds']:7.1f}s CPU  peak RSS "
                          f"{out['peak_rss_mib']:6.0f} MiB{extra}", flush=True)
            sections.append((d, n_classes, runs))

    def per_run_ratio(runs, a, b, key="seconds"):
        """Median over repeats of a's time / b's in the same repeat (back to back)."""
        pairs = list(zip(runs.get(a, []), runs.get(b, [])))
        return median([x[key] / y[key] for x, y in pairs]) if pairs else float("nan")

    def fmt(v):
        return f"{v:.2f}" if v == v else "-"

    for d, n_classes, runs in sections:
        base = runs.get("ours", [None])[0]
        rows = []
        for m in args.methods:
            if not runs[m]:
                continue
            secs = [r["seconds"] for r in runs[m]]
            med = median(secs)
            cpu = median([r["cpu_seconds"] for r in runs[m]])
            res = runs[m][0]
            ratios = [fmt(per_run_ratio(runs, m, other, key)) for other in ("floor", "ours")
                      for key in ("seconds", "cpu_seconds")]
            if m == "floor":
                agreement = "-"
            elif base is None:
                agreement = "?"
            else:
                agreement = "yes" if all(agree(r, base) for r in runs[m]) else "NO"
                if m == "faiss":
                    agreement += f" ({res['recounted_queries']} recounted)"
            rows.append([LABELS[m], f"{med:.1f}", spread(secs) or "-", f"{cpu:.1f}", str(len(secs)),
                         f"{median([r['peak_rss_mib'] for r in runs[m]]):.0f}",
                         f"{ratios[0]} / {ratios[1]}", f"{ratios[2]} / {ratios[3]}", agreement])
        print()
        print(f"Retrieval metrics, N={args.n} (SOP-like, {n_classes} classes of 2-12), d={d}, "
              f"Recall@{{1,10,100,1000}} + MAP@R; {header}; {versions('numpy', 'faiss')}")
        print()
        print(table(["method", "wall s (median)", "range s", "CPU s (median)", "runs", "peak RSS MiB",
                     "/ floor (wall / CPU)", "/ ours (wall / CPU)", "metrics agree"], rows))
        print()
        print("Ratios: median over repeats of this method's time / the other's in the same repeat "
              "(back to back; the reference against the first repeat's). CPU s: process CPU time "
              "of all threads; on a shared 2-core machine a run may get one core or two, so the "
              "CPU-time ratio is the steadier one (OpenMP spin-waiting counts as CPU time).")
        if base is not None:
            print()
            print("metrics: " + ", ".join(f"R@{k} {v:.4f}" for k, v in base["recall"].items())
                  + f", MAP@R {base['map_at_r']:.4f} ({base['num_queries']} queries)")


if __name__ == "__main__":
    main()
