"""Demo data: exact SOP layout, disjoint train/test classes, determinism, both sources."""

from __future__ import annotations

import filecmp
import json
import pathlib
import re
import time

import numpy as np
import pytest
from PIL import Image

from job.data import SPLITS, check_images, fashion_mnist, load_split, make_demo_data, read_ebay_file
from job.errors import ConfigError, DataError

HAS_FMNIST = fashion_mnist.available()
SOURCES = [
    pytest.param("fashion-mnist", marks=pytest.mark.skipif(not HAS_FMNIST, reason="dataset-fashion-mnist not installed")),
    "synthetic",
]


@pytest.fixture(scope="module", params=SOURCES)
def demo(request, tmp_path_factory) -> tuple[pathlib.Path, dict]:
    root = tmp_path_factory.mktemp(request.param) / "sop"
    info = make_demo_data(root, source=request.param, train_classes=30, test_classes=20, image_size=32, seed=1)
    return root, info


def test_sop_layout(demo) -> None:
    root, info = demo
    train, test = read_ebay_file(root / "Ebay_train.txt"), read_ebay_file(root / "Ebay_test.txt")
    assert (root / "Ebay_train.txt").read_text().startswith("image_id class_id super_class_id path\n")
    assert info["train"]["classes"] == train.num_classes == 30 and info["test"]["classes"] == test.num_classes == 20
    assert train.class_ids.tolist() == sorted(train.class_ids.tolist())
    assert np.unique(train.class_ids).tolist() == list(range(1, 31))
    assert np.unique(test.class_ids).tolist() == list(range(31, 51)), "test ids continue after train, as in SOP"
    rows = [ln.split() for f in ("Ebay_train.txt", "Ebay_test.txt") for ln in (root / f).read_text().splitlines()[1:]]
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1)), "image ids global 1..N"
    supers = {r[3].split("/")[0]: int(r[2]) for r in rows}
    assert all(info["super_classes"][sid - 1] == folder for folder, sid in supers.items())
    assert all(re.fullmatch(r"[a-z]+_final/(\d+)_\d+\.JPG", r[3]) and r[3].split("/")[1].split("_")[0] == r[1] for r in rows)
    assert check_images(train, verify=True).ok and check_images(test).ok
    with Image.open(root / train.paths[0]) as im:
        assert im.format == "JPEG" and im.size == (32, 32) and im.mode == "RGB"


def test_all_six_splits_load(demo) -> None:
    root, info = demo
    for name in SPLITS:
        split = load_split(root, name)
        assert len(split) == info["lists"][f"{name}.txt"] > 0
    assert load_split(root, "train").paths == read_ebay_file(root / "Ebay_train.txt").paths


def test_disjoint_classes_and_views_per_class(demo) -> None:
    root, _ = demo
    train, test = read_ebay_file(root / "Ebay_train.txt"), read_ebay_file(root / "Ebay_test.txt")
    assert not set(train.class_ids.tolist()) & set(test.class_ids.tolist())
    for split in (train, test):
        counts = np.bincount(split.class_ids)[np.unique(split.class_ids)]
        assert counts.min() >= 2 and counts.max() <= 12
    first = [train.paths[i] for i in np.flatnonzero(train.class_ids == 1)]
    arrays = [np.asarray(Image.open(root / p)) for p in first]
    assert all(not np.array_equal(arrays[0], a) for a in arrays[1:]), "views of a class are distinct"


def test_info_file(demo) -> None:
    root, info = demo
    assert json.loads((root / "DEMO_INFO.json").read_text()) == info
    assert info["seed"] == 1 and info["image_size"] == 32


@pytest.mark.parametrize("source", SOURCES)
def test_deterministic_bytes(tmp_path: pathlib.Path, source: str) -> None:
    kw = dict(source=source, train_classes=6, test_classes=5, image_size=24, seed=5)
    make_demo_data(tmp_path / "a", **kw)
    make_demo_data(tmp_path / "b", **kw)
    cmp = filecmp.dircmp(tmp_path / "a", tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and not cmp.left_only and not cmp.right_only
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    make_demo_data(tmp_path / "c", **{**kw, "seed": 6})
    assert (tmp_path / "a" / "Ebay_train.txt").read_bytes() != (tmp_path / "c" / "Ebay_train.txt").read_bytes()


def test_view_range_respected(tmp_path: pathlib.Path) -> None:
    info = make_demo_data(tmp_path / "d", source="synthetic", train_classes=8, test_classes=4, image_size=16,
                          min_views=3, max_views=3)
    assert info["train"]["images"] == 24 and info["test"]["images"] == 12


@pytest.mark.skipif(not HAS_FMNIST, reason="dataset-fashion-mnist not installed")
def test_defaults_take_seconds(tmp_path: pathlib.Path) -> None:
    start = time.perf_counter()
    info = make_demo_data(tmp_path / "full")
    assert time.perf_counter() - start < 15
    assert info["source"] == "fashion-mnist" and info["train"]["classes"] == info["test"]["classes"] == 200
    assert [n[: -len("_final")] for n in info["super_classes"]] == list(fashion_mnist.CATEGORIES)


def test_fashion_mnist_missing_names_the_package(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        make_demo_data(tmp_path / "x", source="fashion-mnist", train_classes=2, test_classes=2)
    info = make_demo_data(tmp_path / "y", source="auto", train_classes=2, test_classes=2, image_size=16)
    assert info["source"] == "synthetic", "auto falls back when the package is absent"


def test_refuses_non_demo_directory_and_replaces_old_demo(tmp_path: pathlib.Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "Ebay_train.txt").write_text("precious")
    with pytest.raises(DataError, match="not empty"):
        make_demo_data(tmp_path / "real", source="synthetic", train_classes=2, test_classes=2)
    root = tmp_path / "demo"
    make_demo_data(root, source="synthetic", train_classes=6, test_classes=6, image_size=16, seed=0)
    make_demo_data(root, source="synthetic", train_classes=2, test_classes=2, image_size=16, seed=0)
    listed = {p for f in ("Ebay_train.txt", "Ebay_test.txt") for p in read_ebay_file(root / f).paths}
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*.JPG")}
    assert on_disk == listed, "no stale images of the previous demo"


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"source": "imagenet"}, "auto, fashion-mnist, synthetic"),
        ({"min_views": 5, "max_views": 4}, "max_views=4"),
        ({"train_classes": 1}, "train_classes=1"),
        ({"image_size": 8}, "image_size=8"),
    ],
    ids=["bad-source", "views-reversed", "one-class", "tiny-images"],
)
def test_argument_validation(tmp_path: pathlib.Path, kwargs: dict, text: str) -> None:
    with pytest.raises(ConfigError, match=text):
        make_demo_data(tmp_path / "z", **kwargs)
