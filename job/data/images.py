"""Decoding product images to RGB.

The reference read images with OpenCV, which yields BGR, and then normalised them with
the ImageNet RGB statistics (and an ImageNet RGB-trained backbone): a channel swap. Here
every image becomes RGB, whatever its mode on disk.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from job.errors import DataError

# Transparent product shots sit on white in SOP-style photos; black would be an artefact.
_BACKGROUND = (255, 255, 255)


def decode_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Fully decode `path` as an 8-bit RGB image (EXIF rotation applied, like cv2.imread).

    Raises DataError for a missing, truncated or non-image file, so callers can catch one type.
    """
    try:
        with Image.open(path) as im:
            im.load()  # force the whole decode here: truncated files fail now, not later
            im = ImageOps.exif_transpose(im)
            return _to_rgb(im)
    except FileNotFoundError as e:
        raise DataError(f"{path}: image file not found") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot decode image ({e}); replace or remove the file") from e


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode to RGB: alpha composited on white, 16/32-bit and float scaled to 0..255."""
    if im.mode == "RGB":
        return im.copy() if im.readonly else im
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if im.mode == "F" and arr.max(initial=0) <= 1.0:
            hi = 1.0
        grey = np.clip(arr * (255.0 / hi), 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return im.convert("RGB")
