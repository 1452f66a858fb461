"""The IDX reader behind the demo data, and the package's import hygiene."""

from __future__ import annotations

import gzip
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from job.data import fashion_mnist
from job.errors import DataError


def _write_idx(path: pathlib.Path, header: bytes, payload: bytes) -> pathlib.Path:
    with gzip.open(path, "wb") as fh:
        fh.write(header + payload)
    return path


def test_read_idx_roundtrip(tmp_path: pathlib.Path) -> None:
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 0x08, 3]) + np.array([2, 3, 4], dtype=">u4").tobytes()
    arr = fashion_mnist.read_idx(_write_idx(tmp_path / "x.gz", header, data.tobytes()))
    assert arr.shape == (2, 3, 4) and np.array_equal(arr, data)


@pytest.mark.parametrize(
    ("header", "payload", "text"),
    [
        (b"\x00\x00\x07\x01" + (3).to_bytes(4, "big"), b"abc", "bad magic"),
        (b"\x00\x00\x08\x01" + (5).to_bytes(4, "big"), b"abc", "expected 5"),
    ],
    ids=["bad-magic", "short-payload"],
)
def test_read_idx_rejects_bad_files(tmp_path: pathlib.Path, header: bytes, payload: bytes, text: str) -> None:
    with pytest.raises(DataError, match=text):
        fashion_mnist.read_idx(_write_idx(tmp_path / "x.gz", header, payload))
    (tmp_path / "plain.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read"):
        fashion_mnist.read_idx(tmp_path / "plain.gz")


@pytest.mark.skipif(not fashion_mnist.available(), reason="dataset-fashion-mnist not installed")
def test_installed_fashion_mnist_loads() -> None:
    images, labels = fashion_mnist.load("t10k")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert sorted(np.unique(labels).tolist()) == list(range(10))


def test_job_data_does_not_import_mindspore() -> None:
    code = "import sys, job.data; print('mindspore' in sys.modules)"
    repo = pathlib.Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
