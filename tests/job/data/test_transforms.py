"""Transforms and decoding: shapes, normalisation by hand, squash, RGB order."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from PIL import Image

from job.data import MEAN, STD, EvalTransform, TrainTransform, decode_rgb
from job.errors import ConfigError, DataError


def test_train_output_shape_dtype() -> None:
    img = Image.new("RGB", (97, 61), (10, 200, 30))
    out = TrainTransform(48)(img, np.random.default_rng(0))
    assert out.shape == (3, 48, 48) and out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("transform", [EvalTransform(16), TrainTransform(16)], ids=["eval", "train"])
def test_normalisation_matches_hand_computation(transform) -> None:
    rgb = (200, 100, 30)
    img = Image.new("RGB", (40, 30), rgb)
    args = (np.random.default_rng(1),) if isinstance(transform, TrainTransform) else ()
    out = transform(img, *args)
    for c in range(3):
        expected = (rgb[c] / 255.0 - MEAN[c]) / STD[c]
        np.testing.assert_allclose(out[c], expected, atol=1e-5)


def test_train_deterministic_given_rng() -> None:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    t = TrainTransform(24)
    a = t(img, np.random.default_rng([1, 2]))
    b = t(img, np.random.default_rng([1, 2]))
    c = t(img, np.random.default_rng([1, 3]))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_crop_box_rules() -> None:
    t = TrainTransform(8, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
    rng = np.random.default_rng(0)
    for _ in range(200):
        left, top, w, h = t.crop_box(120, 80, rng)
        assert 0 <= left and left + w <= 120 and 0 <= top and top + h <= 80
        assert 0.08 * 9600 * 0.9 <= w * h <= 9600
    # impossible area: every try fails, fallback = centre crop with the aspect clamped into ratio
    wide = TrainTransform(8, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert wide.crop_box(300, 100, rng) == (100, 0, 100, 100)
    tall = TrainTransform(8, scale=(1.0, 1.0), ratio=(0.5, 2.0))
    assert tall.crop_box(20, 100, rng) == (0, 30, 20, 40)


def test_eval_squashes_instead_of_cropping() -> None:
    # left third red, right two thirds blue, 3:1 wide; a centre crop would lose the red
    arr = np.zeros((60, 180, 3), dtype=np.uint8)
    arr[:, :60] = (255, 0, 0)
    arr[:, 60:] = (0, 0, 255)
    out = EvalTransform(30)(Image.fromarray(arr))
    assert out.shape == (3, 30, 30)
    red_col = (255 / 255.0 - MEAN[0]) / STD[0]
    assert np.allclose(out[0, :, :8], red_col, atol=0.05), "whole width kept: red on the left"
    assert np.allclose(out[2, :, -8:], (1.0 - MEAN[2]) / STD[2], atol=0.05)


def test_eval_two_step_resize_equals_manual() -> None:
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 100, 3), dtype=np.uint8))
    manual = img.resize((50, 20), Image.Resampling.BICUBIC).resize((20, 20), Image.Resampling.BICUBIC)
    expected = ((np.asarray(manual, np.float32) / 255 - MEAN) / STD).transpose(2, 0, 1)
    np.testing.assert_allclose(EvalTransform(20)(img), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("factory", "text"),
    [
        (lambda: TrainTransform(0), "image size 0"),
        (lambda: TrainTransform(32, scale=(0.5, 0.1)), "crop scale"),
        (lambda: TrainTransform(32, ratio=(0, 1)), "crop ratio"),
        (lambda: EvalTransform(3.5), "image size 3.5"),
    ],
    ids=["size-0", "scale-reversed", "ratio-zero", "size-float"],
)
def test_transform_validation(factory, text: str) -> None:
    with pytest.raises(ConfigError, match=text):
        factory()


def test_red_jpeg_decodes_red(tmp_path: pathlib.Path) -> None:
    """The reference's OpenCV path gave BGR; pure red must come out with R >> B."""
    path = tmp_path / "red.JPG"
    Image.new("RGB", (32, 32), (255, 0, 0)).save(path, "JPEG")
    arr = np.asarray(decode_rgb(path), dtype=int)
    assert arr.shape == (32, 32, 3)
    assert arr[..., 0].mean() > 200 and arr[..., 2].mean() < 50


@pytest.mark.parametrize(
    ("mode", "colour", "fmt", "expected"),
    [
        ("L", 128, "JPEG", (128, 128, 128)),
        ("CMYK", (0, 255, 255, 0), "JPEG", (255, 0, 0)),
        ("P", None, "PNG", (0, 255, 0)),
        ("RGBA", (255, 0, 0, 0), "PNG", (255, 255, 255)),
        ("LA", (0, 255), "PNG", (0, 0, 0)),
        ("I;16", 65535, "PNG", (255, 255, 255)),
    ],
    ids=["grey", "cmyk", "palette", "transparent", "grey-alpha", "16-bit"],
)
def test_decode_any_mode_to_rgb(tmp_path: pathlib.Path, mode: str, colour, fmt: str, expected) -> None:
    if mode == "P":
        img = Image.new("RGB", (8, 8), (0, 255, 0)).convert("P")
    else:
        img = Image.new(mode, (8, 8), colour)
    path = tmp_path / f"x.{fmt.lower()}"
    img.save(path, fmt)
    out = decode_rgb(path)
    assert out.mode == "RGB"
    np.testing.assert_allclose(np.asarray(out)[4, 4], expected, atol=12)


def test_decode_exif_orientation_applied(tmp_path: pathlib.Path) -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display, as cv2.imread does
    path = tmp_path / "rot.JPG"
    img.save(path, "JPEG", exif=exif)
    assert decode_rgb(path).size == (20, 40)


def test_decode_errors_are_data_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(DataError, match="not found"):
        decode_rgb(tmp_path / "absent.JPG")
    (tmp_path / "junk.JPG").write_bytes(b"junk")
    with pytest.raises(DataError, match="cannot decode"):
        decode_rgb(tmp_path / "junk.JPG")
    good = tmp_path / "good.JPG"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good, "JPEG")
    (tmp_path / "cut.JPG").write_bytes(good.read_bytes()[:300])
    with pytest.raises(DataError, match="cannot decode"):
        decode_rgb(tmp_path / "cut.JPG")
