"""Fashion-MNIST as shipped by the Debian package `dataset-fashion-mnist` (IDX files).

Read with gzip + numpy so the demo data needs no extra dependency.
"""

from __future__ import annotations

import gzip
import pathlib

import numpy as np

from job.errors import DataError

FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"

# Label order of the dataset; names double as SOP-style super-class folder stems.
CATEGORIES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")

PARTS = ("train", "t10k")

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def part_files(part: str, directory: pathlib.Path | None = None) -> tuple[pathlib.Path, pathlib.Path]:
    """(images, labels) file paths of `part` ("train" or "t10k")."""
    if part not in PARTS:
        raise ValueError(f"part {part!r} not in {PARTS}")
    d = FASHION_MNIST_DIR if directory is None else pathlib.Path(directory)
    return d / f"{part}-images-idx3-ubyte.gz", d / f"{part}-labels-idx1-ubyte.gz"


def available(directory: pathlib.Path | None = None) -> bool:
    """True if all four IDX files are present."""
    return all(p.is_file() for part in PARTS for p in part_files(part, directory))


def read_idx(path: pathlib.Path) -> np.ndarray:
    """An IDX array (gzip-compressed): magic 0 0 type ndim, big-endian uint32 dims, data."""
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read the gzip IDX file ({e}); reinstall {DEBIAN_PACKAGE}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic); reinstall {DEBIAN_PACKAGE}")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int(v) for v in np.frombuffer(data[4:header], dtype=">u4"))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(f"{path}: IDX payload is {len(data) - header} bytes, expected {expected} for shape {dims}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def load(part: str, directory: pathlib.Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels uint8 (N,)) of `part`."""
    img_path, lab_path = part_files(part, directory)
    if not (img_path.is_file() and lab_path.is_file()):
        raise DataError(
            f"Fashion-MNIST not found at {img_path.parent}; install it with "
            f"`apt-get install {DEBIAN_PACKAGE}` or use source='synthetic'"
        )
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(f"{img_path.parent}: images {images.shape} and labels {labels.shape} do not match")
    return images, labels
