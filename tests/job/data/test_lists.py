"""Split lists: parsing, errors that name file:line, load_split, prepare_sop vs the shell."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import numpy as np
import pytest

from job.data import SPLITS, check_images, load_split, prepare_sop, read_ebay_file, read_list_file
from job.errors import DataError

from .conftest import HEADER, write_sop


def test_read_ebay_file(sop_root: pathlib.Path) -> None:
    split = read_ebay_file(sop_root / "Ebay_train.txt")
    assert len(split) == 15
    assert split.root == sop_root
    assert split.source.endswith("Ebay_train.txt")
    assert split.paths[0] == "chair_final/100_0.JPG"
    assert split.class_ids.dtype == np.int64
    assert split.class_ids.tolist() == [1, 1, 1, 2, 2, 3, 4, 4, 4, 4, 5, 5, 6, 6, 6]
    assert split.num_classes == 6


def test_labels_contiguous_in_class_id_order(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "list.txt"
    f.write_text("a/1.JPG 40\na/2.JPG 7\na/3.JPG 40\na/4.JPG 12\n")
    split = read_list_file(f)
    labels = split.labels()
    assert labels.dtype == np.int32
    assert labels.tolist() == [2, 0, 2, 1]
    sub = split.subset([3, 0])
    assert sub.paths == ["a/4.JPG", "a/1.JPG"]
    assert sub.class_ids.tolist() == [12, 40]
    assert sub.labels().tolist() == [0, 1]
    assert sub.root == split.root


def test_read_list_file_tolerates_blank_lines_and_crlf(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "list.txt"
    f.write_bytes(b"a/1.JPG 3\r\n\r\n  a/2.JPG\t4  \r\n")
    split = read_list_file(f)
    assert split.paths == ["a/1.JPG", "a/2.JPG"]
    assert split.class_ids.tolist() == [3, 4]


@pytest.mark.parametrize(
    ("content", "where", "what"),
    [
        ("a/1.JPG 1\na/2.JPG\n", ":2:", "expected 2 columns"),
        ("a/1.JPG 1\na/2.JPG x\n", ":2:", "class_id 'x' is not an integer"),
        ("a/1.JPG -1\n", ":1:", "negative"),
        ("/abs/1.JPG 1\n", ":1:", "relative to the dataset root"),
        ("../up/1.JPG 1\n", ":1:", "relative to the dataset root"),
        ("1 1 1 a/1.JPG\n", ":1:", "use read_ebay_file"),
    ],
    ids=["missing-column", "non-integer", "negative", "absolute-path", "dotdot-path", "ebay-format"],
)
def test_read_list_file_malformed(tmp_path: pathlib.Path, content: str, where: str, what: str) -> None:
    f = tmp_path / "bad.txt"
    f.write_text(content)
    with pytest.raises(DataError) as exc:
        read_list_file(f)
    msg = str(exc.value)
    assert f"{f}{where}" in msg and what in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("content", "where", "what"),
    [
        ("1 1 1 a/1.JPG\n", ":1:", "expected the header"),
        (HEADER + "1 1 1 a/1.JPG\n2 1 a/2.JPG\n", ":3:", "expected 4 columns"),
        (HEADER + "1 1 1 a/1.JPG extra\n", ":2:", "found 5"),
        (HEADER + "x 1 1 a/1.JPG\n", ":2:", "image_id 'x'"),
        (HEADER + "1 one 1 a/1.JPG\n", ":2:", "class_id 'one'"),
        (HEADER + "1 1 s a/1.JPG\n", ":2:", "super_class_id 's'"),
        (HEADER + "1 1 1 /a/1.JPG\n", ":2:", "must be relative"),
    ],
    ids=["no-header", "3-columns", "5-columns", "bad-image-id", "bad-class-id", "bad-super-id", "absolute-path"],
)
def test_read_ebay_file_malformed(tmp_path: pathlib.Path, content: str, where: str, what: str) -> None:
    f = tmp_path / "Ebay_train.txt"
    f.write_text(content)
    with pytest.raises(DataError) as exc:
        read_ebay_file(f)
    msg = str(exc.value)
    assert f"{f}{where}" in msg and what in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("reader", "content", "what"),
    [
        (read_list_file, "", "empty"),
        (read_list_file, "\n  \n", "empty"),
        (read_ebay_file, HEADER, "no image lines"),
        (read_ebay_file, "", "empty file"),
    ],
    ids=["list-empty", "list-blank", "ebay-header-only", "ebay-empty"],
)
def test_empty_files(tmp_path: pathlib.Path, reader, content: str, what: str) -> None:
    f = tmp_path / "x.txt"
    f.write_text(content)
    with pytest.raises(DataError, match=what):
        reader(f)


def test_missing_and_binary_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_list_file(tmp_path / "nope.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xd8\xff\xe0 JPEG")
    with pytest.raises(DataError, match="not UTF-8"):
        read_list_file(tmp_path / "bin.txt")


def test_load_split_falls_back_to_ebay_files(sop_root: pathlib.Path) -> None:
    train = load_split(sop_root, "train")
    assert train.source.endswith("Ebay_train.txt") and len(train) == 15
    prepare_sop(sop_root)
    train = load_split(sop_root, "train")
    assert train.source.endswith("train.txt") and not train.source.endswith("Ebay_train.txt")
    assert train.paths == read_ebay_file(sop_root / "Ebay_train.txt").paths
    for name in SPLITS:
        split = load_split(sop_root, name)
        assert split.root == sop_root and len(split) > 0


def test_load_split_missing_list_says_how_to_prepare(sop_root: pathlib.Path) -> None:
    with pytest.raises(DataError) as exc:
        load_split(sop_root, "train_half")
    msg = str(exc.value)
    assert "train_half.txt" in msg and "python -m job prepare-sop --root" in msg
    (sop_root / "Ebay_test.txt").unlink()
    with pytest.raises(DataError) as exc:
        load_split(sop_root, "test")
    assert "test.txt" in str(exc.value) and "Ebay_test.txt" in str(exc.value)


def test_load_split_unknown_name_lists_valid_ones(sop_root: pathlib.Path) -> None:
    with pytest.raises(DataError) as exc:
        load_split(sop_root, "validation")
    assert all(name in str(exc.value) for name in SPLITS)


def test_load_split_accepts_a_list_file_path(sop_root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    custom = tmp_path / "mine.txt"
    custom.write_text("chair_final/100_0.JPG 1\nbicycle_final/200_0.JPG 2\n")
    split = load_split(sop_root, str(custom))
    assert split.root == sop_root and split.paths[1] == "bicycle_final/200_0.JPG"
    ebay = load_split(sop_root, "Ebay_test.txt")  # relative to the root, Ebay format detected
    assert ebay.class_ids.min() == 7
    with pytest.raises(DataError, match="not found"):
        load_split(sop_root, "lists/other.txt")


def test_load_split_root_must_exist(tmp_path: pathlib.Path) -> None:
    with pytest.raises(DataError, match="not a directory"):
        load_split(tmp_path / "absent", "train")


def _shell_lists(root: pathlib.Path) -> dict[str, bytes]:
    """The reference README's commands, run by the real sed/awk/head."""
    script = """
    sed '1d' Ebay_train.txt | awk -F' ' '{print $4" "$2}' > train.txt
    sed '1d' Ebay_test.txt | awk -F' ' '{print $4" "$2}' > test.txt
    head -n 29437 train.txt > train_half.txt
    head -n 30003 test.txt > test_half.txt
    head -n 1012 train.txt > train_tiny.txt
    head -n 1048 test.txt > test_tiny.txt
    """
    subprocess.run(["sh", "-c", script], cwd=root, check=True)
    return {p.name: p.read_bytes() for p in root.glob("*.txt") if not p.name.startswith("Ebay")}


@pytest.mark.skipif(not all(shutil.which(t) for t in ("sed", "awk", "head")), reason="needs sed, awk, head")
def test_prepare_sop_is_byte_equal_to_the_reference_shell(tmp_path: pathlib.Path) -> None:
    # Big enough that every head -n cut is a real cut (30,003 < test lines), odd spacing included.
    rng = np.random.default_rng(0)
    mine, shell = tmp_path / "mine", tmp_path / "shell"
    for d in (mine, shell):
        d.mkdir()
    for name, n, first in (("Ebay_train.txt", 31000, 1), ("Ebay_test.txt", 30500, 31001)):
        rows = [HEADER.encode()]
        cls = np.sort(rng.integers(1, 6000, size=n)) + (0 if first == 1 else 6000)
        for i, c in enumerate(cls):
            sep = (" ", "\t", "  ")[i % 3]
            rows.append(f"{first + i}{sep}{c} {c % 12 + 1}{sep}cat{c % 12}_final/{rng.integers(1e11)}_{i % 7}.JPG\n".encode())
        data = b"".join(rows)
        (mine / name).write_bytes(data)
        (shell / name).write_bytes(data)
    counts = prepare_sop(mine)
    expected = _shell_lists(shell)
    assert set(counts) == set(expected) == {f"{s}.txt" for s in SPLITS}
    for name, data in expected.items():
        assert (mine / name).read_bytes() == data, name
        assert counts[name] == data.count(b"\n")
    assert counts["train_half.txt"] == 29437 and counts["test_tiny.txt"] == 1048
    assert not list(mine.glob(".*.tmp"))  # no temp files left behind


def test_prepare_sop_small_files_match_shell_too(sop_root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    shell = tmp_path / "shell"
    shell.mkdir()
    train = sop_root / "Ebay_train.txt"  # tabs, padding and no final newline: awk copes, so must we
    data = train.read_bytes()
    assert b"\n1 1 2 " in data
    train.write_bytes(data.replace(b"\n1 1 2 ", b"\n  1\t1 2\t", 1).rstrip(b"\n"))
    for name in ("Ebay_train.txt", "Ebay_test.txt"):
        shutil.copy(sop_root / name, shell / name)
    prepare_sop(sop_root)
    for name, data in _shell_lists(shell).items():
        assert (sop_root / name).read_bytes() == data, name


def test_prepare_sop_needs_both_ebay_files(tmp_path: pathlib.Path) -> None:
    write_sop(tmp_path, {1: 2}, images=False)
    with pytest.raises(DataError, match="missing Ebay_test.txt"):
        prepare_sop(tmp_path)


def test_check_images(sop_root: pathlib.Path) -> None:
    split = load_split(sop_root, "train")
    assert check_images(split).ok
    (sop_root / split.paths[2]).unlink()
    (sop_root / split.paths[5]).write_bytes(b"not a jpeg")
    fast = check_images(split)
    assert fast.total == 15 and fast.missing == [split.paths[2]] and fast.undecodable == []
    full = check_images(split, verify=True)
    assert full.missing == [split.paths[2]] and full.undecodable == [split.paths[5]]
    line = full.summary()
    assert "15 images" in line and "1 missing" in line and "1 undecodable" in line and "\n" not in line
    many = type(full)(total=9, missing=[f"m{i}" for i in range(8)])
    assert many.summary(limit=2) == "9 images: 8 missing (m0, m1, ...)"
