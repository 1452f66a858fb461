"""Fixtures: small datasets in the exact SOP layout, written fresh into tmp dirs."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from PIL import Image

from job.data import make_demo_data

HEADER = "image_id class_id super_class_id path\n"


def write_sop(root: pathlib.Path, class_sizes: dict[int, int], *, size: int = 40, first_image_id: int = 1,
              name: str = "Ebay_train.txt", images: bool = True) -> list[str]:
    """An Ebay_*.txt with the given images per class id (+ the JPEGs); returns its rel paths."""
    root.mkdir(parents=True, exist_ok=True)
    lines, rels = [HEADER], []
    image_id = first_image_id
    for class_id, n in class_sizes.items():
        sup = ("bicycle", "chair")[class_id % 2]
        (root / f"{sup}_final").mkdir(exist_ok=True)
        for v in range(n):
            rel = f"{sup}_final/{class_id}{v:02d}_{v}.JPG"
            if images:
                pixels = np.random.default_rng([class_id, v]).integers(0, 256, (size, size + v, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / rel, "JPEG")
            lines.append(f"{image_id} {class_id} {class_id % 2 + 1} {rel}\n")
            rels.append(rel)
            image_id += 1
    (root / name).write_text("".join(lines))
    return rels


@pytest.fixture
def sop_root(tmp_path: pathlib.Path) -> pathlib.Path:
    """Train classes 1..6 and test classes 7..10 with 1-4 images each (class 3 a singleton)."""
    root = tmp_path / "Stanford_Online_Products"
    write_sop(root, {1: 3, 2: 2, 3: 1, 4: 4, 5: 2, 6: 3}, name="Ebay_train.txt")
    write_sop(root, {7: 2, 8: 3, 9: 2, 10: 4}, first_image_id=16, name="Ebay_test.txt")
    return root


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A small demo dataset, shared read-only by the tests of one session."""
    root = tmp_path_factory.mktemp("demo") / "sop"
    make_demo_data(root, source="auto", train_classes=24, test_classes=16, image_size=32, seed=3)
    return root


def labels_with_sizes(sizes: list[int]) -> np.ndarray:
    """Labels array where class i has sizes[i] images, shuffled deterministically."""
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return np.random.default_rng(123).permutation(labels)
