"""The retrieval picture: random queries and their top-k neighbours, each neighbour bordered
green (same class as the query) or red, as in metric-learning papers' retrieval figures."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from job.data import decode_rgb
from job.evaluation.retrieval import normalize

GREEN = (40, 170, 60)
RED = (210, 40, 40)
QUERY = (60, 60, 60)


def nearest(features: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(len(queries), k) indices of each query's k most similar other samples, best first."""
    x = normalize(features)
    sim = x[queries] @ x.T
    sim[np.arange(len(queries)), queries] = -np.inf          # a query is not its own match
    k = min(k, len(x) - 1)
    top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sim, top, 1), axis=1, kind="stable")
    return np.take_along_axis(top, order, 1)


def retrieval_grid(split, features: np.ndarray, labels: np.ndarray, out: Path, *,
                   queries: int = 8, k: int = 5, tile: int = 96, border: int = 5,
                   seed: int = 0) -> Path:
    """Write a PNG: one row per random query (query first, then its top-k). Size:
    ((k + 1) * tile + gap) x queries * tile pixels. Queries are drawn among samples that have
    at least one positive."""
    labels = np.asarray(labels)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    eligible = np.flatnonzero(counts[inverse] > 1)
    if len(eligible) == 0:
        eligible = np.arange(len(labels))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(eligible, size=min(queries, len(eligible)), replace=False)
    neighbours = nearest(features, chosen, k)
    gap = tile // 4
    width = tile * (neighbours.shape[1] + 1) + gap
    canvas = Image.new("RGB", (width, tile * len(chosen)), (255, 255, 255))
    for row, (q, nbrs) in enumerate(zip(chosen, neighbours)):
        y = row * tile
        canvas.paste(_tile(split, q, tile, border, QUERY), (0, y))
        for col, j in enumerate(nbrs):
            colour = GREEN if labels[j] == labels[q] else RED
            canvas.paste(_tile(split, j, tile, border, colour), (tile + gap + col * tile, y))
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, format="PNG")
    return out


def _tile(split, index: int, tile: int, border: int, colour) -> Image.Image:
    try:
        img = decode_rgb(split.image_path(int(index)))
    except Exception:   # a missing image still gets its (grey) place in the grid
        img = Image.new("RGB", (tile, tile), (128, 128, 128))
    inner = tile - 2 * border - 2
    scale = inner / max(img.width, img.height)        # fit the tile, up or down
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                     Image.BICUBIC)
    out = Image.new("RGB", (tile, tile), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    draw.rectangle([1, 1, tile - 2, tile - 2], outline=colour, width=border)
    out.paste(img, ((tile - img.width) // 2, (tile - img.height) // 2))
    return out
