"""The in-pod data steps, for real, on a small archive in exact SOP layout: fetch (path and HTTP),
checksum, safe unpack, verification and refusal of partial archives, atomic rename, list files,
idempotent re-runs, status findings and receiving a tar stream."""
from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import os
import pathlib
import subprocess
import sys
import tarfile
import threading
import zipfile

import pytest

from job.data import load_split, prepare_sop
from job.data import volume
from job.errors import DataError

from .sop_archive import TOP, build_sop, sha256, tar_sop, zip_sop


@pytest.fixture
def sop(tmp_path):
    return build_sop(tmp_path / "src")


@pytest.fixture
def archive(sop, tmp_path):
    return zip_sop(sop, tmp_path / "Stanford_Online_Products.zip")


@pytest.fixture
def volume_root(tmp_path):
    root = tmp_path / "volume"
    root.mkdir()
    return root


def run_install(source, dest, lines=None, **kwargs):
    kwargs.setdefault("expect", {"train": 24, "test": 16})
    return volume.install(str(source), dest, report=(lines.append if lines is not None else lambda _: None),
                          interval=0, **kwargs)


def leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(volume.WORK_PREFIX))


def test_install_from_a_zip_verifies_unpacks_and_writes_the_lists(sop, archive, volume_root):
    lines: list[str] = []
    dest = volume_root / "sop"
    result = run_install(archive, dest, lines, sha256=sha256(archive))
    assert result["result"] == "installed"
    assert result["counts"]["train"] == {"images": 24, "present": 24, "classes": 12, "expected": 24}
    assert result["counts"]["test"] == {"images": 16, "present": 16, "classes": 8, "expected": 16}
    assert result["sha256"] == sha256(archive) and result["partial"] is False
    # the top folder's content is the dataset root, as the rank pods read it
    for name in ("Ebay_train.txt", "Ebay_test.txt", "Ebay_info.txt", *volume.LIST_FILES, volume.MARKER):
        assert (dest / name).is_file(), name
    assert sorted(p.name for p in dest.glob("*_final")) == sorted(f"{s}_final" for s in volume.SUPER_CLASSES)
    assert (dest / sop.train[0]).read_bytes() == (sop.folder / sop.train[0]).read_bytes()
    # the lists are prepare-sop's, byte for byte
    reference = pathlib.Path(str(sop.folder))
    prepare_sop(reference)
    for name in volume.LIST_FILES:
        assert (dest / name).read_bytes() == (reference / name).read_bytes(), name
    assert load_split(dest, "train_tiny").paths == sop.train
    assert json.loads((dest / volume.MARKER).read_text())["counts"] == result["counts"]
    assert leftovers(volume_root) == []
    text = "\n".join(lines)
    assert "unpacking Stanford_Online_Products.zip: 43 files" in text
    assert f"sha256 {sha256(archive)} (as expected)" in text
    assert "unpack: " in text and "checking train images: 24 images" in text
    assert "list files: train.txt 24, test.txt 16, train_half.txt 24" in text


def test_a_second_run_does_nothing_and_says_so(archive, volume_root):
    dest = volume_root / "sop"
    first = run_install(archive, dest)
    stamp = (dest / "train.txt").stat().st_mtime_ns
    lines: list[str] = []
    again = run_install(archive, dest, lines, sha256=sha256(archive))
    assert again["result"] == "already-prepared"
    assert again["installed_at"] == first["installed_at"]
    assert (dest / "train.txt").stat().st_mtime_ns == stamp
    assert lines == [f"{dest} is already prepared (installed {first['installed_at']} from {archive}): "
                     "nothing to do; pass --force to install again"]
    with pytest.raises(DataError, match="installed from another archive .*pass --force to replace it"):
        run_install(archive, dest, sha256="0" * 64)
    forced = run_install(archive, dest, force=True)
    assert forced["result"] == "installed" and forced["installed_at"] >= first["installed_at"]
    assert leftovers(volume_root) == []


def test_a_partial_archive_is_refused_and_leaves_nothing_behind(sop, tmp_path, volume_root):
    partial = zip_sop(sop, tmp_path / "partial.zip", skip=(sop.train[3], sop.test[0]))
    dest = volume_root / "sop"
    with pytest.raises(DataError) as refused:
        run_install(partial, dest)
    message = str(refused.value)
    assert message.startswith("the dataset is incomplete: ")
    assert f"1 of the 24 train images are missing ({sop.train[3]})" in message
    assert f"1 of the 16 test images are missing ({sop.test[0]})" in message
    assert message.endswith("pass --allow-partial to install it anyway")
    assert not dest.exists() and leftovers(volume_root) == []

    lines: list[str] = []
    result = run_install(partial, dest, lines, allow_partial=True)
    assert result["partial"] is True and result["counts"]["train"]["present"] == 23
    assert any(line.startswith("warning: installing an incomplete dataset") for line in lines)


def test_the_official_counts_are_the_default_expectation(archive, volume_root):
    with pytest.raises(DataError, match=r"Ebay_train.txt lists 24 images, expected 59,551; "
                                        r"Ebay_test.txt lists 16 images, expected 60,502"):
        volume.install(str(archive), volume_root / "sop", report=lambda _: None)
    assert not (volume_root / "sop").exists()


def test_a_checksum_mismatch_is_refused(archive, volume_root):
    with pytest.raises(DataError, match=f"checksum mismatch: expected sha256 {'a' * 64}, the archive has "
                                        f"{sha256(archive)}"):
        run_install(archive, volume_root / "sop", sha256="A" * 64)
    with pytest.raises(DataError, match="is not a SHA-256 digest"):
        run_install(archive, volume_root / "sop", sha256="abc")
    assert not (volume_root / "sop").exists() and leftovers(volume_root) == []


def test_an_archive_without_the_ebay_files_is_refused(tmp_path, volume_root):
    odd = tmp_path / "photos.zip"
    with zipfile.ZipFile(odd, "w") as zf:
        zf.writestr("photos/a.jpg", b"x")
    with pytest.raises(DataError, match="holds no Ebay_train.txt .*is it Stanford_Online_Products.zip"):
        run_install(odd, volume_root / "sop")
    not_an_archive = tmp_path / "Stanford_Online_Products.zip"
    not_an_archive.write_bytes(b"<html>Access denied</html>")
    with pytest.raises(DataError, match="neither a zip nor a tar archive"):
        run_install(not_an_archive, volume_root / "sop")


@pytest.mark.parametrize("member", ["../escape.txt", "/etc/escape.txt", f"{TOP}/../../escape.txt", "C:/escape.txt"])
def test_members_that_leave_the_target_are_refused(sop, tmp_path, volume_root, member):
    evil = zip_sop(sop, tmp_path / "evil.zip", extra={member: b"gotcha"})
    with pytest.raises(DataError, match="points outside the target folder; refusing the archive"):
        run_install(evil, volume_root / "sop")
    assert not list(tmp_path.rglob("escape.txt"))
    assert not (volume_root / "sop").exists() and leftovers(volume_root) == []


def test_links_in_a_tar_are_refused(sop, tmp_path, volume_root):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        tf.add(sop.folder, arcname=TOP)
        link = tarfile.TarInfo(f"{TOP}/bicycle_final/link.JPG")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    with pytest.raises(DataError, match="is a link; refusing the archive"):
        run_install(evil, volume_root / "sop")


def test_install_from_a_tar_gz(sop, tmp_path, volume_root):
    result = run_install(tar_sop(sop, tmp_path / "sop.tar.gz"), volume_root / "sop")
    assert result["result"] == "installed"
    assert (volume_root / "sop" / sop.test[-1]).is_file()


def test_an_interrupted_install_never_looks_like_data(archive, volume_root, monkeypatch):
    """Killed between unpacking and the rename: the destination does not exist, the next run cleans up."""
    dest = volume_root / "sop"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(volume, "_prepare_lists", killed)
    with pytest.raises(KeyboardInterrupt):
        run_install(archive, dest)
    assert not dest.exists()
    # a SIGKILL would not even run the clean-up: leave a staging folder behind as it would
    stale = volume_root / f"{volume.WORK_PREFIX}4242-abcdef"
    (stale / "unpacked" / TOP).mkdir(parents=True)
    findings = volume.status(dest)
    assert {"finding": "leftover", "path": str(stale)} in findings
    assert findings[0] == {"finding": "dataset", "root": str(dest), "state": "absent"}
    monkeypatch.undo()
    lines: list[str] = []
    assert run_install(archive, dest, lines)["result"] == "installed"
    assert f"removing {stale.name}, left over by an interrupted install" in lines
    assert leftovers(volume_root) == []


def test_a_folder_that_is_not_ours_is_not_overwritten(archive, volume_root):
    dest = volume_root / "sop"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"already holds files that no data-install put there \(no "
                                        r"\.sop-install\.json\): pass --force"):
        run_install(archive, dest)
    assert (dest / "notes.txt").read_text() == "mine"
    run_install(archive, dest, force=True)
    assert not (dest / "notes.txt").exists() and (dest / "train.txt").is_file()
    assert leftovers(volume_root) == []


def test_an_unpacked_folder_is_copied_or_moved(sop, tmp_path, volume_root):
    copied = run_install(sop.folder.parent, volume_root / "copy")  # found one level down
    assert copied["result"] == "installed" and sop.folder.is_dir()
    moved = run_install(sop.folder, volume_root / "moved", consume_source=True)
    assert moved["result"] == "installed" and not sop.folder.exists()
    assert (volume_root / "moved" / sop.train[0]).is_file()


def test_a_refused_folder_is_moved_back(sop, volume_root):
    (sop.folder / sop.test[2]).unlink()
    with pytest.raises(DataError, match="1 of the 16 test images are missing"):
        run_install(sop.folder, volume_root / "sop", consume_source=True)
    assert (sop.folder / "Ebay_train.txt").is_file() and not (volume_root / "sop").exists()


def test_in_place_verifies_and_prepares_without_copying(sop):
    lines: list[str] = []
    result = run_install(sop.folder, sop.folder, lines)
    assert result["result"] == "installed" and result["source"] == f"{sop.folder} (in place)"
    assert (sop.folder / "train.txt").is_file() and (sop.folder / volume.MARKER).is_file()
    assert lines[0] == f"verifying the dataset in place at {sop.folder}"
    assert run_install(sop.folder, sop.folder)["result"] == "already-prepared"


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_dir(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_install_from_an_http_url(archive, http_dir, volume_root):
    www, base = http_dir
    (www / archive.name).write_bytes(archive.read_bytes())
    lines: list[str] = []
    url = f"{base}/{archive.name}?X-Amz-Signature=secret&X-Amz-Credential=key"
    result = run_install(url, volume_root / "sop", lines, sha256=sha256(archive))
    assert result["result"] == "installed"
    assert result["source"] == f"{base}/{archive.name}?...."          # no credentials recorded
    assert "secret" not in "\n".join(lines) + (volume_root / "sop" / volume.MARKER).read_text()
    assert any(line.startswith(f"downloading {base}/{archive.name}?.... (") for line in lines)
    assert any(line.startswith("download: ") for line in lines)
    assert leftovers(volume_root) == []   # the downloaded archive went with the staging folder
    with pytest.raises(DataError, match=f"download of {base}/missing.zip failed: HTTP 404"):
        run_install(f"{base}/missing.zip", volume_root / "other")


def test_object_store_urls_point_to_presigned_https(volume_root):
    with pytest.raises(DataError, match=r"s3:// URLs are not fetched directly: make a pre-signed HTTPS URL "
                                        r"for the object \(e.g. `aws s3 presign s3://b/k.zip`"):
        run_install("s3://b/k.zip", volume_root / "sop")


def test_status_findings(archive, volume_root, tmp_path):
    dest = volume_root / "sop"
    assert volume.status(dest) == [{"finding": "dataset", "root": str(dest), "state": "absent"}]
    run_install(archive, dest)
    ckpt = volume_root / "pretrained" / "resnet50.ckpt"
    findings = volume.status(dest, pretrained=ckpt, sample=1000)
    kinds = [f["finding"] for f in findings]
    assert kinds == ["dataset", "split", "images", "split", "images", "lists", "checkpoint"]
    assert findings[0]["state"] == "prepared" and findings[0]["partial"] is False
    assert findings[1] == {"finding": "split", "split": "train", "file": "Ebay_train.txt", "images": 24,
                           "classes": 12, "expected": 24}
    assert findings[2] == {"finding": "images", "split": "train", "checked": 24, "of": 24, "missing": 0,
                           "examples": []}
    assert findings[5]["present"] == {"train.txt": 24, "test.txt": 16, "train_half.txt": 24,
                                      "test_half.txt": 16, "train_tiny.txt": 24, "test_tiny.txt": 16}
    assert findings[5]["missing"] == []
    assert findings[6] == {"finding": "checkpoint", "path": str(ckpt), "present": False}
    # damage: an image and a list file go missing
    gone = load_split(dest, "test").paths[5]
    (dest / gone).unlink()
    (dest / "test_tiny.txt").unlink()
    findings = volume.status(dest, sample=1000)
    assert findings[4] == {"finding": "images", "split": "test", "checked": 16, "of": 16, "missing": 1,
                           "examples": [gone]}
    assert findings[5]["missing"] == ["test_tiny.txt"]
    sampled = volume.status(dest, sample=5)
    assert sampled[2]["checked"] == 5 and sampled[2]["of"] == 24


def test_status_of_an_unprepared_folder_points_at_a_nested_dataset(sop):
    parent = sop.folder.parent
    findings = volume.status(parent)
    assert findings[0]["state"] == "not-prepared"
    assert findings[1]["finding"] == "problem"
    assert f"the dataset seems to be one level down, in {sop.folder}" in findings[1]["message"]


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_receive_places_files_atomically_and_checks_their_digest(tmp_path):
    dest = tmp_path / "pretrained"
    data = os.urandom(3000)
    digest = hashlib.sha256(data).hexdigest()
    stream = io.BytesIO(_tar_bytes({"resnet50.ckpt": data}) + b"trailing bytes are never read")
    result = volume.receive(stream, dest, sha256={"resnet50.ckpt": digest}, report=lambda _: None)
    assert result == {"finding": "received", "dest": str(dest), "entries": ["resnet50.ckpt", "resnet50.ckpt.sha256"],
                      "files": 1, "bytes": 3000, "verified": {"resnet50.ckpt": digest}}
    assert (dest / "resnet50.ckpt").read_bytes() == data
    assert volume.checkpoint_finding(dest / "resnet50.ckpt") == {
        "finding": "checkpoint", "path": str(dest / "resnet50.ckpt"), "present": True, "bytes": 3000,
        "sha256": digest}
    with pytest.raises(DataError, match="resnet50.ckpt arrived damaged"):
        volume.receive(io.BytesIO(_tar_bytes({"resnet50.ckpt": b"other"})), dest,
                       sha256={"resnet50.ckpt": digest}, report=lambda _: None)
    assert (dest / "resnet50.ckpt").read_bytes() == data   # the old file stays
    with pytest.raises(DataError, match="not a complete tar archive"):
        volume.receive(io.BytesIO(_tar_bytes({"x": b"y" * 2000})[:1000]), dest, report=lambda _: None)
    with pytest.raises(DataError, match="points outside the target folder"):
        volume.receive(io.BytesIO(_tar_bytes({"../x": b"y"})), dest, report=lambda _: None)
    assert sorted(p.name for p in dest.iterdir()) == ["resnet50.ckpt", "resnet50.ckpt.sha256"]
    assert not (tmp_path / "x").exists()


def test_progress_lines():
    now = [0.0]
    lines: list[str] = []
    progress = volume.Progress("download", 4 << 30, report=lines.append, interval=5, clock=lambda: now[0])
    now[0] = 2.0
    progress.update(1 << 30)        # not yet: 5 s between lines
    now[0] = 10.0
    progress.update(1 << 30)
    assert lines == ["download: 2.0 GiB of 4.0 GiB (50%), 204.8 MiB/s, ETA 0:00:10"]
    progress.finish()
    assert lines[-1] == "download: 2.0 GiB in 0:00:10"


def test_the_command_line(archive, volume_root):
    dest = volume_root / "sop"
    done = subprocess.run([sys.executable, "-m", "job", "data-install", "--source", str(archive),
                           "--dest", str(dest), "--expect-train", "24", "--expect-test", "16",
                           "--sha256", sha256(archive), "--pretrained", str(volume_root / "p.ckpt")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    findings = [json.loads(line[len(volume.FINDING_PREFIX):]) for line in done.stdout.splitlines()
                if line.startswith(volume.FINDING_PREFIX)]
    assert [f["finding"] for f in findings] == ["install", "dataset", "split", "images", "split", "images",
                                                "lists", "checkpoint"]
    assert findings[0]["result"] == "installed"
    refused = subprocess.run([sys.executable, "-m", "job", "data-install", "--source", str(archive),
                              "--dest", str(volume_root / "other")], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: the dataset is incomplete: Ebay_train.txt lists 24 images, "
                                     "expected 59,551")
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
