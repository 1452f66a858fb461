"""A small dataset in exact Stanford Online Products layout, for runs without SOP.

Like SOP, a class is one product and its images are several photos of it; train and test
classes are disjoint. A "product" is one Fashion-MNIST item (its 10 categories are the
super classes) or, on machines without that package, a generated pattern of coloured
shapes. Its "photos" are augmented views: shifted, scaled, rotated, relit and tinted.
"""

from __future__ import annotations

import colorsys
import json
import math
import os
import pathlib
import shutil
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from job.data import fashion_mnist
from job.data.lists import EBAY_HEADER, write_atomic, prepare_sop
from job.errors import ConfigError, DataError

SOURCES = ("auto", "fashion-mnist", "synthetic")
SYNTHETIC_SUPERS = ("disc", "box", "stripe", "ring", "triangle", "cross")
INFO_FILE = "DEMO_INFO.json"
_JPEG_QUALITY = 90


@dataclass(frozen=True)
class _Product:
    """One class before its views are rendered."""

    super_id: int  # 1-based, as in SOP
    base: Image.Image  # RGB, image_size x image_size
    background: tuple[int, int, int]


def make_demo_data(
    out: str | os.PathLike[str],
    *,
    source: str = "auto",
    train_classes: int = 200,
    test_classes: int = 200,
    image_size: int = 64,
    min_views: int = 2,
    max_views: int = 12,
    seed: int = 0,
) -> dict:
    """Write Ebay_train.txt, Ebay_test.txt, the images and the six list files into `out`.

    Deterministic: the same arguments give the same bytes. Returns what DEMO_INFO.json holds.
    """
    if source not in SOURCES:
        raise ConfigError(f"demo source {source!r} is not one of: {', '.join(SOURCES)}")
    for name, value, low in (
        ("train_classes", train_classes, 2),
        ("test_classes", test_classes, 2),
        ("image_size", image_size, 16),
        ("min_views", min_views, 1),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name}={value!r} must be an integer >= {low}")
    if isinstance(max_views, bool) or not isinstance(max_views, int) or max_views < min_views:
        raise ConfigError(f"max_views={max_views!r} must be an integer >= min_views={min_views}")

    if source == "auto":
        source = "fashion-mnist" if fashion_mnist.available() else "synthetic"
    if source == "fashion-mnist":
        supers = fashion_mnist.CATEGORIES
        train, test = _fashion_products(train_classes, test_classes, image_size, seed)
    else:
        supers = SYNTHETIC_SUPERS
        train = _synthetic_products(train_classes, image_size, seed, part=0)
        test = _synthetic_products(test_classes, image_size, seed, part=1)

    root = pathlib.Path(out)
    _prepare_dir(root)
    folders = [f"{name}_final" for name in supers]
    # Written first so an interrupted run is recognised (and replaced) as ours next time.
    stub = {"source": source, "seed": seed, "super_classes": folders, "complete": False}
    write_atomic(root / INFO_FILE, (json.dumps(stub, indent=2) + "\n").encode())
    for name in supers:
        (root / f"{name}_final").mkdir(exist_ok=True)

    counts: dict[str, dict[str, int]] = {}
    image_id, class_id = 1, 1
    for part, products, ebay in ((0, train, "Ebay_train.txt"), (1, test, "Ebay_test.txt")):
        lines = [" ".join(EBAY_HEADER) + "\n"]
        first_class, n_images = class_id, 0
        for number, prod in enumerate(products):
            rng = np.random.default_rng([seed, part, number, 0x71E5])
            views = int(rng.integers(min_views, max_views + 1))
            for v in range(views):
                rel = f"{supers[prod.super_id - 1]}_final/{class_id}_{v}.JPG"
                _augment(prod, rng).save(root / rel, "JPEG", quality=_JPEG_QUALITY)
                lines.append(f"{image_id} {class_id} {prod.super_id} {rel}\n")
                image_id += 1
                n_images += 1
            class_id += 1
        write_atomic(root / ebay, "".join(lines).encode())
        counts["train" if part == 0 else "test"] = {
            "classes": len(products),
            "images": n_images,
            "first_class_id": first_class,
        }

    info = {
        "source": source,
        "seed": seed,
        "image_size": image_size,
        "min_views": min_views,
        "max_views": max_views,
        "super_classes": folders,
        **counts,
        "lists": prepare_sop(root),
        "complete": True,
    }
    write_atomic(root / INFO_FILE, (json.dumps(info, indent=2) + "\n").encode())
    return info


def _prepare_dir(root: pathlib.Path) -> None:
    """Create `root`; replace an older demo's images; never write into someone else's data."""
    if root.exists() and not root.is_dir():
        raise DataError(f"demo data target {root} exists and is not a directory; choose another path")
    root.mkdir(parents=True, exist_ok=True)
    info_path = root / INFO_FILE
    if not info_path.is_file():
        if any(root.iterdir()):
            raise DataError(
                f"demo data target {root} is not empty and holds no {INFO_FILE}; "
                "choose an empty or new directory (it may be a real dataset)"
            )
        return
    try:
        old = json.loads(info_path.read_text())
        folders = [str(f) for f in old.get("super_classes", [])]
    except (OSError, ValueError, AttributeError) as e:
        raise DataError(f"{info_path}: unreadable ({e}); delete {root} and run again") from e
    for folder in folders:
        target = root / folder
        if folder.endswith("_final") and "/" not in folder and target.is_dir():
            shutil.rmtree(target)


# ----------------------------------------------------------------------------- products


def _light_background(rng: np.random.Generator) -> tuple[int, int, int]:
    """Near-white, like SOP's product shots."""
    grey = int(rng.integers(225, 256))
    return tuple(int(np.clip(grey + rng.integers(-8, 9), 0, 255)) for _ in range(3))  # type: ignore[return-value]


def _vivid_colour(rng: np.random.Generator, value: tuple[float, float] = (0.35, 0.85)) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.45, 1.0), rng.uniform(*value))
    return np.array([r, g, b]) * 255.0


def _fashion_products(n_train: int, n_test: int, size: int, seed: int) -> tuple[list[_Product], list[_Product]]:
    """Distinct Fashion-MNIST items, train ones from the train file and test ones from t10k."""
    out = []
    for part, (name, n) in enumerate((("train", n_train), ("t10k", n_test))):
        images, labels = fashion_mnist.load(name)
        if n > len(images):
            raise ConfigError(f"{n} classes requested but Fashion-MNIST {name} has {len(images)} items")
        pick = np.random.default_rng([seed, part, 0xF0]).choice(len(images), size=n, replace=False)
        pick = pick[np.lexsort((pick, labels[pick]))]  # SOP numbers classes super class by super class
        products = []
        for number, item in enumerate(pick):
            rng = np.random.default_rng([seed, part, number, 0xC0])
            bg = _light_background(rng)
            grey = Image.fromarray(images[item]).resize((size, size), Image.Resampling.BICUBIC)
            a = np.asarray(grey, dtype=np.float64)[..., None] / 255.0
            rgb = np.asarray(bg, dtype=np.float64) * (1 - a) + _vivid_colour(rng) * (0.35 + 0.65 * a) * a
            base = Image.fromarray(np.clip(rgb, 0, 255).round().astype(np.uint8), "RGB")
            products.append(_Product(int(labels[item]) + 1, base, bg))
        out.append(products)
    return out[0], out[1]


def _synthetic_products(n: int, size: int, seed: int, *, part: int) -> list[_Product]:
    """Generated products: a few coloured shapes, mostly of the super class's kind."""
    rng = np.random.default_rng([seed, part, 0x5E])
    supers = np.sort(rng.integers(0, len(SYNTHETIC_SUPERS), size=n))
    products = []
    for number, kind in enumerate(supers):
        crng = np.random.default_rng([seed, part, number, 0xC0])
        bg = _light_background(crng)
        big = size * 2  # draw large and downsample: smooth edges
        canvas = Image.new("RGB", (big, big), bg)
        draw = ImageDraw.Draw(canvas)
        n_shapes = int(crng.integers(3, 7))
        for s in range(n_shapes):
            shape = int(kind) if s < 2 else int(crng.integers(0, len(SYNTHETIC_SUPERS)))
            colour = tuple(int(c) for c in _vivid_colour(crng, (0.25, 0.95)))
            r = big * crng.uniform(0.12, 0.3) * (1.4 if s == 0 else 1.0)
            cx, cy = (crng.uniform(0.25, 0.75, size=2) * big).tolist()
            _draw_shape(draw, SYNTHETIC_SUPERS[shape], cx, cy, r, colour, crng)
        products.append(_Product(int(kind) + 1, canvas.resize((size, size), Image.Resampling.LANCZOS), bg))
    return products


def _draw_shape(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, colour, rng) -> None:
    width = max(2, int(r * rng.uniform(0.2, 0.4)))
    box = (cx - r, cy - r, cx + r, cy + r)
    if kind == "disc":
        draw.ellipse(box, fill=colour)
    elif kind == "box":
        draw.rectangle((cx - r, cy - r * rng.uniform(0.5, 1.0), cx + r, cy + r * rng.uniform(0.5, 1.0)), fill=colour)
    elif kind == "stripe":
        for i in range(int(rng.integers(2, 5))):
            y = cy - r + i * 2 * width
            draw.rectangle((cx - r * 1.5, y, cx + r * 1.5, y + width), fill=colour)
    elif kind == "ring":
        draw.ellipse(box, outline=colour, width=width)
    elif kind == "triangle":
        t = rng.uniform(0, 2 * math.pi)
        pts = [(cx + r * math.cos(t + i * 2 * math.pi / 3), cy + r * math.sin(t + i * 2 * math.pi / 3)) for i in range(3)]
        draw.polygon(pts, fill=colour)
    else:  # cross
        draw.rectangle((cx - r, cy - width / 2, cx + r, cy + width / 2), fill=colour)
        draw.rectangle((cx - width / 2, cy - r, cx + width / 2, cy + r), fill=colour)


# ----------------------------------------------------------------------------- views


def _augment(prod: _Product, rng: np.random.Generator) -> Image.Image:
    """One "photo" of the product: random affine, brightness/contrast and a slight colour cast."""
    size = prod.base.width
    scale = rng.uniform(0.8, 1.15)
    angle = math.radians(rng.uniform(-15, 15))
    tx, ty = (rng.uniform(-0.1, 0.1, size=2) * size).tolist()
    c = size / 2
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    # output pixel -> input pixel: rotate by -angle, scale by 1/scale, about the centre
    a, b, d, e = cos, sin, -sin, cos
    matrix = (a, b, c - a * (c + tx) - b * (c + ty), d, e, c - d * (c + tx) - e * (c + ty))
    img = prod.base.transform(
        (size, size), Image.Transform.AFFINE, matrix, resample=Image.Resampling.BILINEAR, fillcolor=prod.background
    )
    arr = np.asarray(img, dtype=np.float64)
    contrast, brightness = rng.uniform(0.75, 1.25), rng.uniform(-25, 25)
    cast = 1.0 + rng.normal(0.0, 0.05, size=3)
    arr = ((arr - 128.0) * contrast + 128.0 + brightness) * cast
    return Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), "RGB")
