"""ResNet v1 backbones (MindSpore) returning globally average-pooled features.

Parameter names follow MindSpore's model-zoo ResNet (`conv1`, `bn1`, `layer1.0.conv2`,
`layer1.0.down_sample_layer.0`, ...) so that its ImageNet checkpoints load into the backbone.
Stride sits on the 3x3 convolution of a bottleneck, as in the model zoo. The last BatchNorm of
every residual block starts at gamma = 0, so each block starts as the identity (this also keeps
the first losses finite at 224x224).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import mindspore as ms
from mindspore import nn, ops


@dataclass(frozen=True)
class BackboneSpec:
    block: str                 # "bottleneck" (expansion 4) or "basic" (expansion 1)
    layers: tuple[int, ...]    # residual blocks per stage
    widths: tuple[int, ...]    # inner channels per stage
    stem: int                  # stem output channels

    @property
    def feature_dim(self) -> int:
        return self.widths[-1] * (4 if self.block == "bottleneck" else 1)


BACKBONES: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), 64),
    "resnet34": BackboneSpec("basic", (3, 4, 6, 3), (64, 128, 256, 512), 64),
    "resnet18": BackboneSpec("basic", (2, 2, 2, 2), (64, 128, 256, 512), 64),
    # CPU-sized: same topology, narrow and shallow; for tests and the demo.
    "resnet-mini": BackboneSpec("basic", (1, 1, 1, 1), (16, 32, 64, 128), 16),
}


def _conv(rng: np.random.Generator, cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    # He (fan_out) initialisation, as the model zoo's ResNet.
    std = math.sqrt(2.0 / (cout * k * k))
    w = ms.Tensor(rng.normal(0.0, std, (cout, cin, k, k)).astype(np.float32))
    return nn.Conv2d(cin, cout, k, stride=stride, pad_mode="same", weight_init=w,
                     has_bias=False)


def _bn(c: int, zero: bool = False) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=0.9, eps=1e-5, gamma_init="zeros" if zero else "ones")


class BasicBlock(nn.Cell):
    expansion = 1

    def __init__(self, rng: np.random.Generator, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width
        self.conv1, self.bn1 = _conv(rng, cin, width, 3, stride), _bn(width)
        self.conv2, self.bn2 = _conv(rng, width, cout, 3), _bn(cout, zero=True)
        self.relu = nn.ReLU()
        self.down_sample_layer = None
        if stride != 1 or cin != cout:
            self.down_sample_layer = nn.SequentialCell([_conv(rng, cin, cout, 1, stride), _bn(cout)])

    def construct(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.down_sample_layer is not None:
            identity = self.down_sample_layer(x)
        return self.relu(out + identity)


class Bottleneck(nn.Cell):
    expansion = 4

    def __init__(self, rng: np.random.Generator, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.conv1, self.bn1 = _conv(rng, cin, width, 1), _bn(width)
        self.conv2, self.bn2 = _conv(rng, width, width, 3, stride), _bn(width)
        self.conv3, self.bn3 = _conv(rng, width, cout, 1), _bn(cout, zero=True)
        self.relu = nn.ReLU()
        self.down_sample_layer = None
        if stride != 1 or cin != cout:
            self.down_sample_layer = nn.SequentialCell([_conv(rng, cin, cout, 1, stride), _bn(cout)])

    def construct(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.down_sample_layer is not None:
            identity = self.down_sample_layer(x)
        return self.relu(out + identity)


class ResNet(nn.Cell):
    """Stem (7x7/2 conv, 3x3/2 max-pool), four stages, global average pool -> (N, feature_dim)."""

    def __init__(self, spec: BackboneSpec, rng: np.random.Generator) -> None:
        super().__init__()
        block = Bottleneck if spec.block == "bottleneck" else BasicBlock
        self.feature_dim = spec.feature_dim
        self.conv1, self.bn1 = _conv(rng, 3, spec.stem, 7, 2), _bn(spec.stem)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="same")
        cin = spec.stem
        stages = []
        for i, (n, width) in enumerate(zip(spec.layers, spec.widths)):
            blocks = []
            for j in range(n):
                stride = 2 if (j == 0 and i > 0) else 1
                blocks.append(block(rng, cin, width, stride))
                cin = width * block.expansion
            stages.append(nn.SequentialCell(blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.mean = ops.ReduceMean(keep_dims=False)

    def construct(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.mean(x, (2, 3))


def create_backbone(name: str, seed: int = 0) -> ResNet:
    """Build a backbone by name; the seed makes every rank start from identical weights."""
    if name not in BACKBONES:
        from job.errors import ConfigError
        raise ConfigError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONES)}")
    return ResNet(BACKBONES[name], np.random.default_rng(seed))
