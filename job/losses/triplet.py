"""Triplet losses on L2-normalised features and squared Euclidean distance."""
from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops

from job.losses.distances import hardest_pairs, l2_normalize, label_masks, pairwise_sq_dist



class TripletFixed(nn.Cell):
    """The reference's loss: rows are consecutive (anchor, positive, negative) triples;
    mean over triples of relu(|a-p|^2 - |a-n|^2 + margin). Labels are not used (no mining).
    """

    layout = "triplet-tuples"
    needs_head = False

    def __init__(self, margin: float = 0.1, **_unused) -> None:
        super().__init__()
        self.margin = float(margin)

    def construct(self, feats, labels):
        x = l2_normalize(feats).reshape(-1, 3, feats.shape[1])
        a, p, n = x[:, 0], x[:, 1], x[:, 2]
        d_ap = ops.sum((a - p) ** 2, dim=1)
        d_an = ops.sum((a - n) ** 2, dim=1)
        return ops.mean(ops.relu(d_ap - d_an + self.margin))


class TripletBatchHard(nn.Cell):
    """Batch-hard triplet loss (Hermans, Beyer and Leibe 2017) on P x K batches: for each
    anchor, its farthest positive and its nearest negative in the batch;
    mean over anchors of relu(d_hardest_pos - d_hardest_neg + margin).
    """

    layout = "pk"
    needs_head = False

    def __init__(self, margin: float = 0.1, **_unused) -> None:
        super().__init__()
        self.margin = float(margin)

    def construct(self, feats, labels):
        d = pairwise_sq_dist(l2_normalize(feats))
        pos, neg = label_masks(labels)
        hardest_pos, hardest_neg = hardest_pairs(d, pos, neg)
        # Anchors without a positive or a negative in the batch contribute nothing.
        valid = (ops.sum(pos, dim=1) > 0).astype(ms.float32) * (ops.sum(neg, dim=1) > 0).astype(ms.float32)
        per_anchor = ops.relu(hardest_pos - hardest_neg + self.margin) * valid
        return ops.sum(per_anchor) / ops.maximum(ops.sum(valid), 1.0)
