"""Train and eval image transforms: PIL RGB image -> normalised float32 CHW array.

They follow the reference pipeline (RandomResizedCrop without flip for training;
short-side resize then squash for evaluation; ImageNet statistics) with the input in
RGB order. Randomness comes only from the Generator passed in, so a sample's
augmentation is reproducible whichever thread computes it.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from job.errors import ConfigError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# (x / 255 - mean) / std == x * _SCALE - _SHIFT, computed once in float32.
_SCALE = (1.0 / (255.0 * np.asarray(STD, dtype=np.float64))).astype(np.float32)
_SHIFT = (np.asarray(MEAN, dtype=np.float64) / np.asarray(STD, dtype=np.float64)).astype(np.float32)


def to_normalized_chw(img: Image.Image) -> np.ndarray:
    """uint8 RGB HWC -> float32 CHW scaled to 0..1 and normalised with ImageNet mean/std."""
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image, got array of shape {arr.shape}")
    arr = arr * _SCALE - _SHIFT
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"image size {size!r} must be a positive integer (e.g. 224)")
    return size


class TrainTransform:
    """RandomResizedCrop to `size` (bicubic), then normalise; no flip, as the reference."""

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        self.size = _check_size(size)
        lo, hi = (float(v) for v in scale)
        if not 0.0 < lo <= hi <= 1.0:
            raise ConfigError(f"crop scale {scale!r} must satisfy 0 < min <= max <= 1 (e.g. (0.08, 1.0))")
        rlo, rhi = (float(v) for v in ratio)
        if not 0.0 < rlo <= rhi:
            raise ConfigError(f"crop ratio {ratio!r} must satisfy 0 < min <= max (e.g. (0.75, 1.333))")
        self.scale = (lo, hi)
        self.ratio = (rlo, rhi)

    def crop_box(self, width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """(left, top, crop width, crop height) by the usual RandomResizedCrop rule.

        Up to 10 tries with area fraction ~ U(scale) and log aspect ~ U(log ratio); if none
        fits, the largest centred crop whose aspect is clamped into `ratio`.
        """
        area = width * height
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * rng.uniform(self.scale[0], self.scale[1])
            aspect = math.exp(rng.uniform(log_lo, log_hi))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                return left, top, w, h
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            w, h = int(round(height * self.ratio[1])), height
        else:
            w, h = width, height
        w, h = max(1, min(w, width)), max(1, min(h, height))
        return (width - w) // 2, (height - h) // 2, w, h

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> np.ndarray:
        left, top, w, h = self.crop_box(img.width, img.height, rng)
        out = img.resize((self.size, self.size), Image.Resampling.BICUBIC, box=(left, top, left + w, top + h))
        return to_normalized_chw(out)

    def __repr__(self) -> str:
        return f"TrainTransform(size={self.size}, scale={self.scale}, ratio={self.ratio})"


class EvalTransform:
    """Short side to `size` keeping aspect, then squash to size x size (no centre crop), normalise.

    The squash keeps the whole product in view, as the reference did; its two resizes are
    kept so features match a model trained/evaluated the reference's way.
    """

    def __init__(self, size: int) -> None:
        self.size = _check_size(size)

    def __call__(self, img: Image.Image) -> np.ndarray:
        w, h = img.size
        s = self.size
        if w <= h:
            short = (s, max(1, int(s * h / w)))
        else:
            short = (max(1, int(s * w / h)), s)
        if short != (w, h):
            img = img.resize(short, Image.Resampling.BICUBIC)
        if img.size != (s, s):
            img = img.resize((s, s), Image.Resampling.BICUBIC)
        return to_normalized_chw(img)

    def __repr__(self) -> str:
        return f"EvalTransform(size={self.size})"
