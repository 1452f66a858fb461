"""The trained network: backbone -> optional embedding -> (softmax head, pre-training only).

`construct` returns the retrieval features (what evaluation and export use); the softmax
stage applies `head` on top of them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import mindspore as ms
from mindspore import nn, ops

from job.model.resnet import create_backbone

log = logging.getLogger("job.model")


@dataclass(frozen=True)
class NetSpec:
    """What is needed to rebuild the network from a checkpoint (stored inside it)."""

    backbone: str
    embedding_dim: int = 0
    num_classes: int = 0       # 0: no softmax head
    image_size: int = 224

    def to_dict(self) -> dict:
        return {"backbone": self.backbone, "embedding_dim": self.embedding_dim,
                "num_classes": self.num_classes, "image_size": self.image_size}


class MetricNet(nn.Cell):
    def __init__(self, spec: NetSpec, seed: int = 0) -> None:
        super().__init__()
        self.spec = spec
        self.backbone = create_backbone(spec.backbone, seed)
        rng = np.random.default_rng([seed, 1])
        dim = self.backbone.feature_dim
        self.embedding = None
        if spec.embedding_dim:
            self.embedding = _dense(rng, dim, spec.embedding_dim)
            dim = spec.embedding_dim
        self.feature_dim = dim
        self.head = _dense(rng, dim, spec.num_classes) if spec.num_classes else None

    def construct(self, x):
        feats = ops.cast(self.backbone(x), ms.float32)   # fp32 even under fp16 amp
        if self.embedding is not None:
            feats = self.embedding(feats)
        return feats

    def logits(self, x):
        return self.head(self(x))


def _dense(rng: np.random.Generator, cin: int, cout: int) -> nn.Dense:
    # Small normal weights and zero bias keep the first softmax loss near log(C).
    w = ms.Tensor(rng.normal(0.0, 0.01, (cout, cin)).astype(np.float32))
    return nn.Dense(cin, cout, weight_init=w, bias_init="zeros")


def load_backbone(net: MetricNet, params: dict, *, source: str) -> tuple[list[str], list[str]]:
    """Load a backbone from a parameter dict, ours (`backbone.*`) or the model zoo's (bare
    names, `end_point.*` head). Returns (missing, unexpected) and logs both, so a user sees
    at once when a checkpoint does not fit the backbone.
    """
    own = {p.name: p for p in net.backbone.get_parameters()}
    # Our checkpoints prefix backbone parameters with "backbone."; the model zoo's don't.
    prefixed = any(k.startswith("backbone.") for k in params)
    candidates = {}
    unexpected = []
    for key, value in params.items():
        if key in ("global_step", "learning_rate", "momentum") or key.startswith(("moments.",)):
            continue  # optimizer state, not weights
        name = key if prefixed else f"backbone.{key}"
        if name in own:
            candidates[name] = value
        elif name.startswith("backbone.") or not prefixed:
            unexpected.append(key)
    missing = sorted(set(own) - set(candidates))
    mismatched = [n for n, v in candidates.items() if tuple(v.shape) != tuple(own[n].shape)]
    if mismatched:
        from job.errors import ConfigError
        first = mismatched[0]
        raise ConfigError(
            f"{source}: {len(mismatched)} backbone tensors have the wrong shape (first: {first} "
            f"{tuple(candidates[first].shape)} vs {tuple(own[first].shape)}); it was trained "
            f"with another backbone than {net.spec.backbone!r}")
    ms.load_param_into_net(net.backbone, candidates, strict_load=False)
    log.info("loaded backbone from %s: %d tensors, %d missing, %d unexpected",
             source, len(candidates), len(missing), len(unexpected))
    if missing:
        log.warning("missing in %s (kept at initial values): %s%s", source,
                    ", ".join(missing[:5]), " ..." if len(missing) > 5 else "")
    if unexpected:
        log.warning("unexpected in %s (ignored): %s%s", source, ", ".join(unexpected[:5]),
                    " ..." if len(unexpected) > 5 else "")
    return missing, unexpected
