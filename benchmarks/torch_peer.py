"""The PyTorch peer: the project's ResNet topologies in PyTorch, MindSpore weights copied in,
and a training step with pytorch-metric-learning's batch-hard triplet loss.

Module names follow `job.model.resnet` (conv1, bn1, layer1.0.conv2, down_sample_layer.0, ...)
so a MindSpore parameter `backbone.X.gamma|beta|moving_mean|moving_variance|weight` maps to
torch `X.weight|bias|running_mean|running_var|weight`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Copied from job.model.resnet.BACKBONES (layers, widths, stem, block) so that this module does
# not need MindSpore; `check_specs` compares them with the project's when MindSpore is there.
SPECS = {
    "resnet50": ("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), 64),
    "resnet34": ("basic", (3, 4, 6, 3), (64, 128, 256, 512), 64),
    "resnet18": ("basic", (2, 2, 2, 2), (64, 128, 256, 512), 64),
    "resnet-mini": ("basic", (1, 1, 1, 1), (16, 32, 64, 128), 16),
}


def check_specs() -> None:
    from job.model.resnet import BACKBONES

    for name, (block, layers, widths, stem) in SPECS.items():
        s = BACKBONES[name]
        assert (s.block, s.layers, s.widths, s.stem) == (block, layers, widths, stem), name


def _same_pad(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow/MindSpore 'same' padding: output ceil(size / s), extra pixel after."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class Conv(nn.Module):
    """Conv without bias; `exact` pads like MindSpore's pad_mode='same' (asymmetric when
    needed), otherwise the usual symmetric k//2 (same output size, idiomatic PyTorch)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, exact: bool = False) -> None:
        super().__init__()
        self.k, self.stride, self.exact = k, stride, exact
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=0 if exact else k // 2, bias=False)

    @property
    def weight(self):
        return self.conv.weight

    def forward(self, x):
        if self.exact:
            ph = _same_pad(x.shape[2], self.k, self.stride)
            pw = _same_pad(x.shape[3], self.k, self.stride)
            x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
        return self.conv(x)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)   # MindSpore momentum 0.9 == torch 0.1


class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride, exact):
        super().__init__()
        self.conv1, self.bn1 = Conv(cin, width, 3, stride, exact), _bn(width)
        self.conv2, self.bn2 = Conv(width, width, 3, 1, exact), _bn(width)
        self.down_sample_layer = None
        if stride != 1 or cin != width:
            self.down_sample_layer = nn.Sequential(Conv(cin, width, 1, stride, exact), _bn(width))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        idt = x if self.down_sample_layer is None else self.down_sample_layer(x)
        return F.relu(out + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride, exact):
        super().__init__()
        cout = width * 4
        self.conv1, self.bn1 = Conv(cin, width, 1, 1, exact), _bn(width)
        self.conv2, self.bn2 = Conv(width, width, 3, stride, exact), _bn(width)
        self.conv3, self.bn3 = Conv(width, cout, 1, 1, exact), _bn(cout)
        self.down_sample_layer = None
        if stride != 1 or cin != cout:
            self.down_sample_layer = nn.Sequential(Conv(cin, cout, 1, stride, exact), _bn(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        idt = x if self.down_sample_layer is None else self.down_sample_layer(x)
        return F.relu(out + idt)


class ResNet(nn.Module):
    """Stem 7x7/2 + 3x3/2 max-pool, four stages, global average pool -> (N, feature_dim)."""

    def __init__(self, name: str, exact_padding: bool = False) -> None:
        super().__init__()
        block_name, layers, widths, stem = SPECS[name]
        block = Bottleneck if block_name == "bottleneck" else Basic
        self.exact = exact_padding
        self.conv1, self.bn1 = Conv(3, stem, 7, 2, exact_padding), _bn(stem)
        cin = stem
        for i, (n, w) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, w, 2 if (j == 0 and i > 0) else 1, exact_padding))
                cin = w * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.feature_dim = cin

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        if self.exact:
            ph, pw = _same_pad(x.shape[2], 3, 2), _same_pad(x.shape[3], 3, 2)
            x = F.max_pool2d(F.pad(x, (pw[0], pw[1], ph[0], ph[1]), value=-math.inf), 3, 2)
        else:
            x = F.max_pool2d(x, 3, 2, padding=1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))


_MS_TO_TORCH = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
                "moving_variance": "running_var"}


def torch_name(ms_name: str) -> str:
    """backbone.layer1.0.conv1.weight -> layer1.0.conv1.conv.weight; bn .gamma -> .weight."""
    name = ms_name[len("backbone."):] if ms_name.startswith("backbone.") else ms_name
    head, _, leaf = name.rpartition(".")
    if leaf in _MS_TO_TORCH:
        return f"{head}.{_MS_TO_TORCH[leaf]}"
    return f"{head}.conv.weight"   # the only other backbone leaf: a convolution's weight


def load_mindspore_weights(model: ResNet, ms_params: dict[str, np.ndarray]) -> None:
    """Copy a MindSpore backbone's parameters (name -> array) into the torch model; every
    tensor of both must be matched."""
    state = model.state_dict()
    wanted = {k for k in state if not k.endswith("num_batches_tracked")}
    done = set()
    for ms_name, value in ms_params.items():
        if not ms_name.startswith("backbone."):
            continue
        t = torch_name(ms_name)
        if t not in state:
            raise KeyError(f"{ms_name} -> {t} has no place in the torch model")
        if tuple(state[t].shape) != tuple(value.shape):
            raise ValueError(f"{ms_name}: shape {value.shape} vs torch {tuple(state[t].shape)}")
        state[t] = torch.from_numpy(np.array(value, dtype=np.float32))
        done.add(t)
    missing = wanted - done
    if missing:
        raise KeyError(f"torch parameters without a MindSpore source: {sorted(missing)[:5]}")
    model.load_state_dict(state)


def make_optimizer(model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 1e-4):
    """SGD with momentum; weight decay on everything but BatchNorm's gamma/beta, as MindSpore's
    Momentum does by default (it skips parameters named *gamma*/*beta*)."""
    decay, no_decay = [], []
    for module in model.modules():
        for p in module.parameters(recurse=False):
            (no_decay if isinstance(module, nn.BatchNorm2d) else decay).append(p)
    return torch.optim.SGD([{"params": decay, "weight_decay": weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}], lr=lr, momentum=momentum)


def make_pml_loss(margin: float = 0.1):
    """pytorch-metric-learning's batch-hard triplet loss, configured like the project's
    `triplet-batch-hard`: squared Euclidean distance on L2-normalised features, hardest
    positive and hardest negative per anchor, mean over anchors (MeanReducer, not pml's
    default AvgNonZeroReducer, which would average only the non-zero triplets)."""
    from pytorch_metric_learning import distances, losses, miners, reducers

    dist = distances.LpDistance(normalize_embeddings=True, p=2, power=2)
    miner = miners.BatchHardMiner(distance=dist)
    loss = losses.TripletMarginLoss(margin=margin, distance=dist, reducer=reducers.MeanReducer())
    return miner, loss


def train_step(model, miner, loss_fn, opt, x: torch.Tensor, y: torch.Tensor) -> float:
    feats = model(x)
    loss = loss_fn(feats, y, miner(feats, y))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())
