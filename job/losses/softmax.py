"""Softmax cross-entropy for pre-training (label smoothing really applied when asked)."""
from __future__ import annotations

from mindspore import nn, ops


class SoftmaxCrossEntropy(nn.Cell):
    """Mean cross-entropy over logits; `label_smoothing` spreads that mass over all classes.

    The reference coded smoothing but never enabled it; here a non-zero value takes effect.
    """

    layout = "shuffle"
    needs_head = True

    def __init__(self, label_smoothing: float = 0.0, **_unused) -> None:
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def construct(self, logits, labels):
        return ops.cross_entropy(logits, labels, reduction="mean",
                                 label_smoothing=self.label_smoothing)
