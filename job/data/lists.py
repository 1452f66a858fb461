"""Split lists of Stanford Online Products: reading, preparing and checking them.

SOP ships `Ebay_train.txt` / `Ebay_test.txt` (4 columns with a header). The reference
example derives two-column "path class_id" list files from them with sed/awk/head; we
write the very same bytes so a dataset prepared by either tool works with the other.
"""

from __future__ import annotations

import os
import pathlib
import re
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from job.errors import DataError

EBAY_HEADER = ("image_id", "class_id", "super_class_id", "path")

SPLITS = ("train", "test", "train_half", "test_half", "train_tiny", "test_tiny")

# Lines kept by the reference README's `head -n N` for the derived splits.
_HEAD_LINES = {
    "train_half.txt": ("train.txt", 29437),
    "test_half.txt": ("test.txt", 30003),
    "train_tiny.txt": ("train.txt", 1012),
    "test_tiny.txt": ("test.txt", 1048),
}
_OFFICIAL = {"train": "Ebay_train.txt", "test": "Ebay_test.txt"}
_PREPARE_HINT = "run `python -m job prepare-sop --root {root}` to create the list files"

# awk's default field splitting (FS=" "): runs of blanks, leading/trailing ignored.
_FIELD = re.compile(r"[^ \t]+")


@dataclass(frozen=True, eq=False)
class SplitList:
    """One split: image paths relative to `root` and the dataset's class ids, in file order.

    `eq=False` because arrays make field-wise equality ambiguous; compare fields explicitly.
    """

    root: pathlib.Path
    source: str
    paths: list[str]
    class_ids: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        object.__setattr__(self, "class_ids", ids)
        object.__setattr__(self, "root", pathlib.Path(self.root))
        if len(self.paths) != len(ids):
            raise ValueError(f"{len(self.paths)} paths but {len(ids)} class ids")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        """Distinct class ids in this split (the softmax head's width)."""
        return int(np.unique(self.class_ids).size)

    def labels(self) -> np.ndarray:
        """Contiguous int32 labels 0..C-1 in sorted class-id order (SOP ids are not contiguous in a subset)."""
        _, inverse = np.unique(self.class_ids, return_inverse=True)
        return inverse.astype(np.int32).reshape(-1)

    def subset(self, indices: Sequence[int] | np.ndarray) -> SplitList:
        """The rows at `indices`, in that order (labels are renumbered by `labels()`)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return SplitList(
            root=self.root,
            source=self.source,
            paths=[self.paths[i] for i in idx],
            class_ids=self.class_ids[idx],
        )

    def image_path(self, i: int) -> pathlib.Path:
        """Absolute location of row `i` on disk."""
        return self.root / self.paths[i]


# ----------------------------------------------------------------------------- parsing


def _read_lines(path: pathlib.Path) -> list[str]:
    """File content split into lines (without the newline); one clear error for unreadable files."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}); is this a list file?") from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline does not start another line
    # Windows line ends: awk would keep the CR in the last field; a path never ends in CR.
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _int_field(path: pathlib.Path, lineno: int, name: str, token: str) -> int:
    try:
        value = int(token)
    except ValueError:
        raise DataError(f"{path}:{lineno}: {name} {token!r} is not an integer") from None
    if value < 0:
        raise DataError(f"{path}:{lineno}: {name} {value} is negative")
    return value


def _check_rel_path(path: pathlib.Path, lineno: int, token: str) -> None:
    if token.startswith("/") or ".." in pathlib.PurePosixPath(token).parts:
        raise DataError(
            f"{path}:{lineno}: image path {token!r} must be relative to the dataset root "
            "(like 'bicycle_final/111085122871_0.JPG')"
        )


def _ebay_rows(path: pathlib.Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of the data lines of an Ebay_*.txt file, validated."""
    lines = _read_lines(path)
    if not lines or tuple(_FIELD.findall(lines[0])) != EBAY_HEADER:
        found = repr(lines[0][:80]) if lines else "an empty file"
        raise DataError(
            f"{path}:1: expected the header '{' '.join(EBAY_HEADER)}', found {found}; "
            "is this an official SOP Ebay_*.txt file?"
        )
    rows: list[tuple[int, list[str]]] = []
    for lineno, line in enumerate(lines[1:], start=2):
        fields = _FIELD.findall(line)
        if not fields:
            continue  # blank line: tolerated, carries no image
        if len(fields) != 4:
            raise DataError(
                f"{path}:{lineno}: expected 4 columns 'image_id class_id super_class_id path', "
                f"found {len(fields)}: {line.strip()[:80]!r}"
            )
        _int_field(path, lineno, "image_id", fields[0])
        _int_field(path, lineno, "class_id", fields[1])
        _int_field(path, lineno, "super_class_id", fields[2])
        _check_rel_path(path, lineno, fields[3])
        rows.append((lineno, fields))
    if not rows:
        raise DataError(f"{path}: no image lines after the header; the file is empty or truncated")
    return rows


def read_ebay_file(path: str | os.PathLike[str]) -> SplitList:
    """Read an official `Ebay_train.txt`/`Ebay_test.txt`; images are relative to its folder."""
    p = pathlib.Path(path)
    rows = _ebay_rows(p)
    return SplitList(
        root=p.parent,
        source=str(p),
        paths=[f[3] for _, f in rows],
        class_ids=np.array([int(f[1]) for _, f in rows], dtype=np.int64),
    )


def read_list_file(path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None) -> SplitList:
    """Read a reference-style "path class_id" list (no header); root defaults to its folder."""
    p = pathlib.Path(path)
    paths: list[str] = []
    ids: list[int] = []
    for lineno, line in enumerate(_read_lines(p), start=1):
        fields = _FIELD.findall(line)
        if not fields:
            continue
        if len(fields) != 2:
            hint = " (this looks like an Ebay_*.txt file: use read_ebay_file)" if len(fields) == 4 else ""
            raise DataError(
                f"{p}:{lineno}: expected 2 columns 'path class_id', found {len(fields)}: "
                f"{line.strip()[:80]!r}{hint}"
            )
        _check_rel_path(p, lineno, fields[0])
        ids.append(_int_field(p, lineno, "class_id", fields[1]))
        paths.append(fields[0])
    if not paths:
        raise DataError(f"{p}: no image lines; the list file is empty")
    return SplitList(
        root=pathlib.Path(root) if root is not None else p.parent,
        source=str(p),
        paths=paths,
        class_ids=np.array(ids, dtype=np.int64),
    )


def _read_any(path: pathlib.Path, root: pathlib.Path) -> SplitList:
    """A list file of either format, told apart by the Ebay header line."""
    with open(path, "rb") as fh:
        first = fh.readline().decode("utf-8", errors="replace")
    if tuple(_FIELD.findall(first.strip())) == EBAY_HEADER:
        split = read_ebay_file(path)
        return SplitList(root=root, source=split.source, paths=split.paths, class_ids=split.class_ids)
    return read_list_file(path, root=root)


def load_split(root: str | os.PathLike[str], split: str) -> SplitList:
    """The split `split` of the dataset at `root` (a name from SPLITS, or a list file path)."""
    root_p = pathlib.Path(root)
    if not root_p.is_dir():
        raise DataError(f"dataset root {root_p} is not a directory; pass the folder holding Ebay_train.txt")
    if split in SPLITS:
        candidates = [root_p / f"{split}.txt"]
        if split in _OFFICIAL:
            candidates.append(root_p / _OFFICIAL[split])
        for cand in candidates:
            if cand.is_file():
                return _read_any(cand, root_p)
        looked = ", ".join(str(c) for c in candidates)
        raise DataError(
            f"no list for split '{split}': looked for {looked}; " + _PREPARE_HINT.format(root=root_p)
        )
    as_path = pathlib.Path(split)
    for cand in (as_path, root_p / as_path) if not as_path.is_absolute() else (as_path,):
        if cand.is_file():
            return _read_any(cand, root_p)
    if as_path.suffix == ".txt" or os.sep in split or "/" in split:
        raise DataError(f"list file {split} not found (also looked in {root_p})")
    raise DataError(f"unknown split '{split}'; valid splits: {', '.join(SPLITS)} (or a path to a list file)")


# ----------------------------------------------------------------------------- preparing


def write_atomic(path: pathlib.Path, data: bytes) -> None:
    """Write via a temp file + rename so a crash never leaves a half-written list."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def prepare_sop(root: str | os.PathLike[str]) -> dict[str, int]:
    """Write the reference's six list files next to Ebay_*.txt; returns lines per file.

    Byte for byte what `sed '1d' Ebay_train.txt | awk -F' ' '{print $4" "$2}' > train.txt`
    and the `head -n N` commands of the reference README produce (for files without
    blank lines, which the reference would turn into broken " " lines and we skip).
    """
    root_p = pathlib.Path(root)
    if not root_p.is_dir():
        raise DataError(f"dataset root {root_p} is not a directory; pass the folder holding Ebay_train.txt")
    missing = [n for n in _OFFICIAL.values() if not (root_p / n).is_file()]
    if missing:
        raise DataError(
            f"{root_p}: missing {', '.join(missing)}; download Stanford Online Products and pass "
            "its Stanford_Online_Products folder (or create demo data with make_demo_data)"
        )
    full: dict[str, list[bytes]] = {}
    for split, name in _OFFICIAL.items():
        rows = _ebay_rows(root_p / name)
        full[f"{split}.txt"] = [f"{f[3]} {f[1]}\n".encode() for _, f in rows]
    out = {name: lines for name, lines in full.items()}
    for name, (parent, n) in _HEAD_LINES.items():
        out[name] = full[parent][:n]
    written: dict[str, int] = {}
    for name, lines in out.items():
        write_atomic(root_p / name, b"".join(lines))
        written[name] = len(lines)
    return written


# ----------------------------------------------------------------------------- checking


@dataclass
class ImageReport:
    """Outcome of `check_images`: which listed images are absent or unreadable."""

    total: int
    missing: list[str] = field(default_factory=list)
    undecodable: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.undecodable

    def summary(self, limit: int = 5) -> str:
        """One line for a log: counts and the first few offenders."""

        def part(kind: str, items: list[str]) -> str:
            shown = ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")
            return f"{len(items)} {kind} ({shown})"

        if self.ok:
            return f"{self.total} images: all present"
        parts = [part(k, v) for k, v in (("missing", self.missing), ("undecodable", self.undecodable)) if v]
        return f"{self.total} images: " + "; ".join(parts)


def check_images(split: SplitList, *, verify: bool = False) -> ImageReport:
    """Stat every listed image (fast); with `verify`, also let PIL parse each header."""
    report = ImageReport(total=len(split))
    for rel in split.paths:
        full = split.root / rel
        try:
            is_file = stat.S_ISREG(os.stat(full).st_mode)
        except OSError:
            is_file = False
        if not is_file:
            report.missing.append(rel)
            continue
        if verify:
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(full) as im:
                    im.size  # noqa: B018 - the header is parsed by open(); size proves it
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
                report.undecodable.append(rel)
    return report
