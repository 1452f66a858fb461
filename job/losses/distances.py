"""Shared pieces of the metric losses: L2 normalisation and squared Euclidean distances."""
from __future__ import annotations

import mindspore as ms
from mindspore import ops


def l2_normalize(x, eps: float = 1e-12):
    """Rows scaled to unit length (the reference normalises before every metric loss)."""
    return x / ops.sqrt(ops.sum(x * x, dim=1, keepdim=True) + eps)


def pairwise_sq_dist(x):
    """(B, B) squared Euclidean distances, clamped at 0 against rounding."""
    sq = ops.sum(x * x, dim=1, keepdim=True)
    d = sq + sq.T - 2.0 * ops.matmul(x, x.T)
    return ops.maximum(d, 0.0)


def label_masks(labels):
    """(same-class-not-self, different-class) masks as float32 (B, B)."""
    same = ops.equal(labels.reshape(-1, 1), labels.reshape(1, -1)).astype(ms.float32)
    eye = ops.eye(labels.shape[0], labels.shape[0], ms.float32)
    return same - eye, 1.0 - same


BIG = 1e4  # larger than any squared distance between unit vectors (max 4): masks out entries


def hardest_pairs(d, pos, neg):
    """Per anchor: the largest positive distance and the smallest negative distance."""
    hardest_pos = ops.max(d * pos - BIG * (1.0 - pos), axis=1)[0]
    hardest_neg = ops.min(d + BIG * (1.0 - neg), axis=1)[0]
    return hardest_pos, hardest_neg
