"""Learning-rate schedules, one value per global step (the reference's five modes).

Warm-up rises linearly from `lr_init` to `lr_max` over `warmup_steps`; the schedule proper
runs over the remaining steps:
- steps:  lr_max, x0.1 from 40 % of the steps, x0.01 from 80 % (the reference's softmax)
- const:  lr_max
- poly:   lr_end + (lr_max - lr_end) * (1 - t)^2
- cosine: lr_end + (lr_max - lr_end) * (1 + cos(pi t)) / 2
- linear: lr_max + (lr_end - lr_max) * t
with t in [0, 1) the fraction of post-warm-up steps done.
"""
from __future__ import annotations

import numpy as np

from job.errors import ConfigError


def lr_schedule(mode: str, *, total_steps: int, lr_max: float, lr_init: float = 0.0,
                lr_end: float = 0.0, warmup_steps: int = 0) -> np.ndarray:
    if total_steps < 1:
        raise ConfigError(f"the schedule needs at least one step, got {total_steps}")
    warmup_steps = min(int(warmup_steps), total_steps)
    out = np.empty(total_steps, dtype=np.float64)
    if warmup_steps:
        out[:warmup_steps] = lr_init + (lr_max - lr_init) * np.arange(1, warmup_steps + 1) / warmup_steps
    rest = total_steps - warmup_steps
    t = np.arange(rest) / max(rest, 1)
    if mode == "steps":
        body = np.where(t < 0.4, lr_max, np.where(t < 0.8, lr_max * 0.1, lr_max * 0.01))
    elif mode == "const":
        body = np.full(rest, lr_max)
    elif mode == "poly":
        body = lr_end + (lr_max - lr_end) * (1.0 - t) ** 2
    elif mode == "cosine":
        body = lr_end + (lr_max - lr_end) * 0.5 * (1.0 + np.cos(np.pi * t))
    elif mode == "linear":
        body = lr_max + (lr_end - lr_max) * t
    else:
        raise ConfigError(f"unknown lr_schedule {mode!r}; valid: steps, const, poly, cosine, linear")
    out[warmup_steps:] = body
    return out.astype(np.float32)
