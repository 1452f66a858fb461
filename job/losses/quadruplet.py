"""Quadruplet losses on L2-normalised features and squared Euclidean distance."""
from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops

from job.losses.distances import BIG, hardest_pairs, l2_normalize, label_masks, pairwise_sq_dist



class QuadrupletChen(nn.Cell):
    """Chen et al. (CVPR 2017), "Beyond triplet loss", with batch-hard mining on P x K batches.

    For each anchor a: p its farthest positive, n1 its nearest negative, and (n1', n2) the
    closest pair of images from two different classes, neither of them a's class:
        relu(d(a,p) - d(a,n1) + margin) + relu(d(a,p) - d(n1',n2) + margin2),  margin2 < margin,
    each term averaged over anchors. The second term pushes inter-class distances up
    everywhere, not only around the anchor.
    """

    layout = "pk"
    needs_head = False

    def __init__(self, margin: float = 0.1, margin2: float = 0.05, **_unused) -> None:
        super().__init__()
        self.margin = float(margin)
        self.margin2 = float(margin2)

    def construct(self, feats, labels):
        d = pairwise_sq_dist(l2_normalize(feats))
        pos, neg = label_masks(labels)
        hardest_pos, hardest_neg = hardest_pairs(d, pos, neg)
        # pair_ok[a, i, j]: i and j both differ from a's class and from each other.
        pair_ok = neg.reshape(-1, neg.shape[0], 1) * neg.reshape(-1, 1, neg.shape[0]) \
            * neg.reshape(1, neg.shape[0], neg.shape[0])
        masked = d.reshape(1, d.shape[0], d.shape[0]) + BIG * (1.0 - pair_ok)
        hardest_pair = ops.min(masked.reshape(d.shape[0], -1), axis=1)[0]
        has_pos = (ops.sum(pos, dim=1) > 0).astype(ms.float32)
        v1 = has_pos * (ops.sum(neg, dim=1) > 0).astype(ms.float32)
        v2 = has_pos * (ops.sum(pair_ok.reshape(d.shape[0], -1), dim=1) > 0).astype(ms.float32)
        t1 = ops.relu(hardest_pos - hardest_neg + self.margin) * v1
        t2 = ops.relu(hardest_pos - hardest_pair + self.margin2) * v2
        return ops.sum(t1) / ops.maximum(ops.sum(v1), 1.0) + ops.sum(t2) / ops.maximum(ops.sum(v2), 1.0)


class QuadrupletBatchHardest(nn.Cell):
    """The reference's "quadruplet" loss (really a batch-hardest triplet): one scalar per batch,
    relu(max over all positive pairs d - min over all negative pairs d + margin)."""

    layout = "pk"
    needs_head = False

    def __init__(self, margin: float = 0.1, **_unused) -> None:
        super().__init__()
        self.margin = float(margin)

    def construct(self, feats, labels):
        d = pairwise_sq_dist(l2_normalize(feats))
        pos, neg = label_masks(labels)
        max_pos = ops.reduce_max(d * pos - BIG * (1.0 - pos))
        min_neg = ops.reduce_min(d + BIG * (1.0 - neg))
        return ops.relu(max_pos - min_neg + self.margin)
