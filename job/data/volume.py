"""Stanford Online Products and the pretrained backbone on a shared folder: install, report, receive.

The in-pod half of `python -m operator_client data ...`: the client renders a Job or a pod whose
container runs `python -m job data-install | data-status | data-receive` on the data volume;
with `--local` it runs the same commands on a folder. Standard library only for fetching and
unpacking; everything streams (the archive is about 2.9 GB) and prints progress lines.

Install, in this order (`install`):
 1. fetch: an http(s) URL with urllib, or a path on the volume (a .zip/.tar[.gz] archive, or a
    folder that already holds the unpacked dataset); SHA-256 checked when given;
 2. unpack into a temporary folder `.sop-install-<token>/` next to the destination, refusing
    any member that would land outside it (absolute paths, `..`, links, devices);
 3. verify: `Ebay_train.txt` and `Ebay_test.txt` present and well-formed, images per split equal
    to the expected counts (the official 59,551 / 60,502) and every listed image present,
    unless `allow_partial`;
 4. write the list files (`prepare_sop`: full, half and tiny) and the marker `.sop-install.json`;
 5. rename the folder to the destination.
A destination holding the marker is complete by construction, so a re-run does nothing and
says so; an interrupted run leaves only a `.sop-install-*` folder, which the next run removes.

Machine-readable output: one finding per line, `sop-data {json}` (FINDING_PREFIX), printed after
the human progress lines; `operator_client.data` parses them (the two packages meet only on
the command line and the volume, never through imports).
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import json
import os
import pathlib
import random
import re
import shutil
import stat
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from typing import IO, Any

from job.errors import DataError

FINDING_PREFIX = "sop-data "
OFFICIAL_COUNTS = {"train": 59551, "test": 60502}
EBAY_FILES = {"train": "Ebay_train.txt", "test": "Ebay_test.txt"}
EBAY_INFO = "Ebay_info.txt"
SUPER_CLASSES = ("bicycle", "cabinet", "chair", "coffee_maker", "fan", "kettle", "lamp", "mug",
                 "sofa", "stapler", "table", "toaster")
LIST_FILES = ("train.txt", "test.txt", "train_half.txt", "test_half.txt", "train_tiny.txt",
              "test_tiny.txt")
MARKER = ".sop-install.json"
WORK_PREFIX = ".sop-install-"
RECEIVE_PREFIX = ".receive-"
LOCK_NAME = ".sop-install.lock"
OBJECT_STORE_SCHEMES = ("s3", "gs", "gcs", "oss", "obs", "az", "abfs", "minio")
CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")

Report = Callable[[str], None]


@contextlib.contextmanager
def os_errors_as_data_errors() -> Iterator[None]:
    """A full volume, a read-only mount, a permission problem: one DataError line, no traceback."""
    try:
        yield
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        raise DataError(f"{where}{e.strerror or e}") from e


def say(message: str) -> None:
    """A human progress line on stdout (what `kubectl logs` and the client show)."""
    print(message, flush=True)


def emit(finding: dict[str, Any], stream: IO[str] | None = None) -> None:
    """One machine-readable finding line: `sop-data {json}`."""
    out = stream or sys.stdout
    out.write(FINDING_PREFIX + json.dumps(finding, sort_keys=False) + "\n")
    out.flush()


# ----------------------------------------------------------------------------- progress


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - loop always returns


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Throttled progress lines: `what: done of total (pct), rate, ETA` at most every `interval` s.

    `unit` "bytes" formats sizes; anything else is a plain count ("files", "images").
    """

    def __init__(self, what: str, total: int | None, *, unit: str = "bytes", report: Report = say,
                 interval: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.total, self.unit, self.report = what, total or None, unit, report
        self.interval, self.clock = interval, clock
        self.done = 0
        self.start = self.last = clock()

    def _fmt(self, n: float) -> str:
        return human_bytes(n) if self.unit == "bytes" else f"{int(n):,} {self.unit}"

    def line(self) -> str:
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = self.done / elapsed
        text = f"{self.what}: {self._fmt(self.done)}"
        if self.total:
            text += f" of {self._fmt(self.total)} ({100 * self.done / self.total:.0f}%)"
        text += f", {self._fmt(rate)}/s" if self.unit == "bytes" else f", {rate:,.0f}/s"
        if self.total and rate > 0 and self.done < self.total:
            text += f", ETA {_clock((self.total - self.done) / rate)}"
        return text

    def update(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self.report(self.line())

    def finish(self) -> None:
        elapsed = self.clock() - self.start
        self.report(f"{self.what}: {self._fmt(self.done)} in {_clock(elapsed)}")


# ----------------------------------------------------------------------------- sources


def redact(url: str) -> str:
    """A URL fit for logs: no user info, and no query (pre-signed URLs carry credentials there)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "...." if parts.query else "", ""))


def source_kind(source: str) -> str:
    """'url' for http(s), 'path' otherwise; object-store URLs are refused with the way out."""
    scheme = urllib.parse.urlsplit(source).scheme.lower()
    if scheme in ("http", "https"):
        return "url"
    if scheme in OBJECT_STORE_SCHEMES:
        raise DataError(
            f"{scheme}:// URLs are not fetched directly: make a pre-signed HTTPS URL for the "
            f"object (e.g. `aws s3 presign {source}` or `mc share download ...`) and pass that")
    if scheme == "file":
        return "path"
    if scheme and len(scheme) > 1:
        raise DataError(f"unsupported source {source!r}: give an http(s) URL or a path")
    return "path"


def local_path(source: str) -> pathlib.Path:
    if source.startswith("file://"):
        return pathlib.Path(urllib.parse.unquote(urllib.parse.urlsplit(source).path))
    return pathlib.Path(source)


def check_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    if not _HEX64.match(value.strip()):
        raise DataError(f"--sha256 {value!r} is not a SHA-256 digest (64 hexadecimal characters)")
    return value.strip().lower()


def download(url: str, out: pathlib.Path, *, report: Report = say, timeout: float = 60.0,
             interval: float = 5.0) -> str:
    """Stream `url` into `out`; returns the SHA-256 of what arrived. Short reads are errors."""
    shown = redact(url)
    request = urllib.request.Request(url, headers={"User-Agent": "sop-metric-job data-install"})
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(out, "wb") as fh:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            report(f"downloading {shown}" + (f" ({human_bytes(total)})" if total else ""))
            progress = Progress("download", total, report=report, interval=interval)
            while chunk := response.read(CHUNK):
                fh.write(chunk)
                digest.update(chunk)
                progress.update(len(chunk))
            progress.finish()
    except urllib.error.HTTPError as e:
        raise DataError(f"download of {shown} failed: HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise DataError(f"cannot download {shown}: {e.reason}") from e
    except (TimeoutError, ConnectionError) as e:
        raise DataError(f"download of {shown} broke off: {e}") from e
    if total is not None and progress.done != total:
        raise DataError(f"download of {shown} ended after {progress.done:,} of {total:,} bytes; "
                        "run the install again")
    return digest.hexdigest()


def sha256_file(path: pathlib.Path, *, report: Report = say, interval: float = 5.0) -> str:
    digest = hashlib.sha256()
    progress = Progress(f"checksum {path.name}", path.stat().st_size, report=report, interval=interval)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            progress.update(len(chunk))
    progress.finish()
    return digest.hexdigest()


# ----------------------------------------------------------------------------- unpacking


def member_path(name: str) -> pathlib.PurePosixPath | None:
    """The relative path an archive member may be written to; None for entries to skip.

    Refuses (DataError) names that would land outside the target: absolute, with `..`, or with
    a drive letter. macOS resource forks (`__MACOSX/`) are skipped.
    """
    clean = name.replace("\\", "/")
    path = pathlib.PurePosixPath(clean)
    parts = [p for p in path.parts if p not in ("", ".")]
    if clean.startswith("/") or ".." in parts or (parts and re.match(r"^[A-Za-z]:", parts[0])):
        raise DataError(f"archive member {name!r} points outside the target folder; "
                        "refusing the archive")
    if not parts or parts[0] == "__MACOSX":
        return None
    return pathlib.PurePosixPath(*parts)


def _copy_stream(src: IO[bytes], dst: pathlib.Path, progress: Progress,
                 digest: Any = None) -> int:
    written = 0
    with open(dst, "wb") as out:
        while chunk := src.read(CHUNK):
            out.write(chunk)
            if digest is not None:
                digest.update(chunk)
            written += len(chunk)
            progress.update(len(chunk))
    os.chmod(dst, 0o644)
    return written


def unpack(archive: pathlib.Path, target: pathlib.Path, *, report: Report = say,
           interval: float = 5.0) -> int:
    """Extract a zip or tar archive into `target` (which must exist), safely; returns files written."""
    if zipfile.is_zipfile(archive):
        return _unpack_zip(archive, target, report, interval)
    if tarfile.is_tarfile(archive):
        return _unpack_tar(archive, target, report, interval)
    raise DataError(f"{archive.name} is neither a zip nor a tar archive (truncated download?); "
                    "SOP ships as Stanford_Online_Products.zip")


def _unpack_zip(archive: pathlib.Path, target: pathlib.Path, report: Report, interval: float) -> int:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            plan = []
            for info in infos:
                rel = member_path(info.filename)
                if rel is None:
                    continue
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise DataError(f"archive member {info.filename!r} is a symbolic link; "
                                    "refusing the archive")
                plan.append((rel, info))
            total = sum(info.file_size for _, info in plan if not info.is_dir())
            report(f"unpacking {archive.name}: {sum(not i.is_dir() for _, i in plan):,} files, "
                   f"{human_bytes(total)}")
            progress = Progress("unpack", total, report=report, interval=interval)
            files = 0
            for rel, info in plan:
                dest = target.joinpath(*rel.parts)
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src:
                    _copy_stream(src, dest, progress)
                files += 1
            progress.finish()
            return files
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        raise DataError(f"{archive.name} is damaged ({e}); download it again") from e


def _unpack_tar(archive: pathlib.Path, target: pathlib.Path, report: Report, interval: float) -> int:
    report(f"unpacking {archive.name} ({human_bytes(archive.stat().st_size)} compressed)")
    try:
        with tarfile.open(archive, "r:*") as tf:
            return extract_tar_stream(tf, target, report=report, interval=interval)[0]
    except (tarfile.TarError, EOFError, OSError) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise
        raise DataError(f"{archive.name} is damaged ({e}); download it again") from e


def extract_tar_stream(tf: tarfile.TarFile, target: pathlib.Path, *, report: Report = say,
                       interval: float = 5.0, total: int | None = None,
                       digests: dict[str, Any] | None = None) -> tuple[int, int]:
    """Extract members one by one (works on `r|` streams): directories and regular files only.

    `digests` maps member paths to hashlib objects to feed while writing (data-receive).
    Returns (files, bytes) written.
    """
    progress = Progress("unpack", total, report=report, interval=interval)
    files = 0
    for member in tf:
        rel = member_path(member.name)
        if rel is None:
            continue
        dest = target.joinpath(*rel.parts)
        if member.isdir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        if not member.isreg():
            kind = "link" if member.issym() or member.islnk() else "special file"
            raise DataError(f"archive member {member.name!r} is a {kind}; refusing the archive")
        dest.parent.mkdir(parents=True, exist_ok=True)
        src = tf.extractfile(member)
        assert src is not None  # regular files always have data
        _copy_stream(src, dest, progress, (digests or {}).get(str(rel)))
        files += 1
    progress.finish()
    return files, progress.done


def copy_tree(src: pathlib.Path, dst: pathlib.Path, *, report: Report = say,
              interval: float = 5.0) -> int:
    """Copy a folder (regular files and folders; links refused) with progress; returns files."""
    entries = []
    for folder, dirs, filenames in os.walk(src):
        dirs.sort()
        for name in sorted(filenames):
            entries.append(pathlib.Path(folder, name))
    total = 0
    for path in entries:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            raise DataError(f"{path} is not a regular file (a link?); copy the dataset without links")
        total += info.st_size
    report(f"copying {src}: {len(entries):,} files, {human_bytes(total)}")
    progress = Progress("copy", total, report=report, interval=interval)
    for path in entries:
        dest = dst / path.relative_to(src)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as fh:
            _copy_stream(fh, dest, progress)
    progress.finish()
    return len(entries)


def find_dataset_root(folder: pathlib.Path, depth: int = 2) -> pathlib.Path | None:
    """The folder holding Ebay_train.txt: `folder` itself or one of its subfolders (shallowest)."""
    level = [folder]
    for _ in range(depth + 1):
        for candidate in level:
            if (candidate / EBAY_FILES["train"]).is_file():
                return candidate
        level = sorted(p for c in level for p in c.iterdir() if p.is_dir() and p.name != "__MACOSX")
    return None


# ----------------------------------------------------------------------------- verifying


def verify_tree(root: pathlib.Path, expect: dict[str, int], *, allow_partial: bool = False,
                report: Report = say, interval: float = 5.0) -> dict[str, dict[str, int]]:
    """Check the Ebay files and that every listed image exists; returns per split counts.

    Raises DataError on a missing or malformed Ebay file, and, unless `allow_partial`, when a
    split lists another number of images than `expect` or some listed image is missing.
    """
    from job.data.lists import check_images, read_ebay_file

    missing_files = [name for name in EBAY_FILES.values() if not (root / name).is_file()]
    if missing_files:
        raise DataError(f"the dataset has no {' and no '.join(missing_files)} next to "
                        f"{', '.join(sorted(p.name for p in root.iterdir())[:5]) or 'nothing'}; "
                        "is this Stanford_Online_Products?")
    counts: dict[str, dict[str, int]] = {}
    problems = []
    for split, name in EBAY_FILES.items():
        listed = read_ebay_file(root / name)
        progress = Progress(f"checking {split} images", len(listed), unit="images", report=report,
                            interval=interval)
        absent: list[str] = []
        step = 5000
        for start in range(0, len(listed), step):
            chunk = listed.subset(range(start, min(start + step, len(listed))))
            absent += check_images(chunk).missing
            progress.update(len(chunk))
        progress.finish()
        counts[split] = {"images": len(listed), "present": len(listed) - len(absent),
                         "classes": listed.num_classes, "expected": expect[split]}
        if len(listed) != expect[split]:
            problems.append(f"{name} lists {len(listed):,} images, expected {expect[split]:,}")
        if absent:
            shown = ", ".join(absent[:3]) + (", ..." if len(absent) > 3 else "")
            problems.append(f"{len(absent):,} of the {len(listed):,} {split} images are missing "
                            f"({shown})")
    if problems:
        if not allow_partial:
            raise DataError("the dataset is incomplete: " + "; ".join(problems)
                            + "; pass --allow-partial to install it anyway")
        report("warning: installing an incomplete dataset (--allow-partial): " + "; ".join(problems))
    for split, c in counts.items():
        report(f"{split}: {c['images']:,} images of {c['classes']:,} classes, "
               f"{c['present']:,} present")
    return counts


# ----------------------------------------------------------------------------- install


def read_marker(root: pathlib.Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / MARKER).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"damaged": True}


def _fsync_dir(folder: pathlib.Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _install_lock(parent: pathlib.Path) -> Iterator[None]:
    """One install per destination folder at a time (flock; best effort on network filesystems)."""
    import fcntl

    with open(parent / LOCK_NAME, "a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise DataError(f"another install into {parent} is running; wait for it "
                                "(or remove a stale one)") from None
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
        yield


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _remove_leftovers(parent: pathlib.Path, report: Report) -> None:
    for old in sorted(parent.glob(WORK_PREFIX + "*")):
        if old.is_dir():
            report(f"removing {old.name}, left over by an interrupted install")
            shutil.rmtree(old, ignore_errors=True)


def install(source: str, dest: pathlib.Path, *, sha256: str | None = None,
            allow_partial: bool = False, expect: dict[str, int] | None = None,
            force: bool = False, consume_source: bool = False, report: Report = say,
            interval: float = 5.0) -> dict[str, Any]:
    """Put SOP from `source` at `dest` (see the module docstring); returns the install finding.

    Args:
        source: http(s) URL, path of a .zip/.tar[.gz] archive, or a folder holding the unpacked
            dataset (its Ebay_train.txt at most two levels down). `dest` itself = verify and
            prepare in place.
        dest: The dataset folder to create (e.g. /data/sop); its parent is created if needed.
        sha256: Expected SHA-256 of the archive.
        allow_partial: Install even if counts differ from `expect` or images are missing.
        expect: Images per split, {"train": N, "test": M}; default the official counts.
        force: Replace a dataset that is already at `dest`.
        consume_source: Remove the source after a successful install (a folder is moved, not
            copied, when it lies on the same filesystem).
    """
    expect = dict(OFFICIAL_COUNTS if expect is None else expect)
    sha256 = check_sha256(sha256)
    kind = source_kind(source)
    dest = pathlib.Path(os.path.abspath(dest))
    started = time.monotonic()
    parent = dest.parent
    parent.mkdir(parents=True, exist_ok=True)
    src_path = local_path(source) if kind == "path" else None
    if src_path is not None and not src_path.exists():
        raise DataError(f"source {source} does not exist")
    in_place = src_path is not None and src_path.is_dir() and dest.exists() and \
        os.path.samefile(src_path, dest)
    if in_place and sha256:
        raise DataError("--sha256 checks an archive, but the source is the unpacked dataset itself")

    with _install_lock(parent):
        marker = read_marker(dest) if dest.is_dir() else None
        if marker and not marker.get("damaged") and not force:
            installed = marker.get("sha256")
            if sha256 and installed and installed != sha256:
                raise DataError(
                    f"{dest} holds a dataset installed from another archive (sha256 "
                    f"{installed[:12]}..., installed {marker.get('installed_at')}); pass --force "
                    "to replace it")
            report(f"{dest} is already prepared (installed {marker.get('installed_at')} from "
                   f"{marker.get('source')}): nothing to do; pass --force to install again")
            if consume_source and src_path is not None and not in_place:
                _consume(src_path, report)
            return {"finding": "install", "result": "already-prepared", "root": str(dest),
                    **{k: marker.get(k) for k in ("source", "sha256", "installed_at", "partial",
                                                  "counts")}}
        occupied = dest.exists() and (not dest.is_dir() or any(dest.iterdir()))
        if occupied and not in_place and not force:
            raise DataError(
                f"{dest} already holds files that no data-install put there (no {MARKER}): pass "
                f"--force to replace them, or --source {dest} to verify and prepare them in place")
        _remove_leftovers(parent, report)
        if in_place:
            report(f"verifying the dataset in place at {dest}")
            return _finish_in_place(dest, source, expect, allow_partial, report, interval, started)

        work = pathlib.Path(f"{parent}/{WORK_PREFIX}{os.getpid()}-{os.urandom(3).hex()}")
        work.mkdir()
        try:
            result = _install_into(work, source, kind, src_path, dest, sha256=sha256,
                                   allow_partial=allow_partial, expect=expect, force=force,
                                   consume_source=consume_source, report=report,
                                   interval=interval, started=started)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if consume_source and src_path is not None:
            _consume(src_path, report)
        return result


def _consume(src_path: pathlib.Path, report: Report) -> None:
    if not src_path.exists():
        return
    report(f"removing the source {src_path} (--consume-source)")
    if src_path.is_dir():
        shutil.rmtree(src_path, ignore_errors=True)
    else:
        src_path.unlink()


def _install_into(work: pathlib.Path, source: str, kind: str, src_path: pathlib.Path | None,
                  dest: pathlib.Path, *, sha256: str | None, allow_partial: bool,
                  expect: dict[str, int], force: bool, consume_source: bool, report: Report,
                  interval: float, started: float) -> dict[str, Any]:
    digest = None
    unpacked = work / "unpacked"
    unpacked.mkdir()
    if kind == "url":
        archive = work / (pathlib.PurePosixPath(urllib.parse.urlsplit(source).path).name or "archive")
        digest = download(source, archive, report=report, interval=interval)
    else:
        assert src_path is not None
        archive = src_path if src_path.is_file() else None
        if archive is not None:  # always: the marker records which archive the data came from
            digest = sha256_file(archive, report=report, interval=interval)
        elif sha256:
            raise DataError(f"--sha256 checks an archive, but {src_path} is a folder")
    if sha256 and digest != sha256:
        raise DataError(f"checksum mismatch: expected sha256 {sha256}, the archive has {digest}; "
                        "the download is corrupt or the source is another file")
    if digest:
        report(f"sha256 {digest}" + (" (as expected)" if sha256 else ""))

    if archive is not None:
        unpack(archive, unpacked, report=report, interval=interval)
        if kind == "url":
            archive.unlink()  # room on the volume before the copy is renamed into place
        root = find_dataset_root(unpacked)
        if root is None:
            raise DataError(f"{archive.name} holds no {EBAY_FILES['train']} (in its top folder or "
                            "one below); is it Stanford_Online_Products.zip?")
    else:
        assert src_path is not None
        found = find_dataset_root(src_path)
        if found is None:
            raise DataError(f"{src_path} holds no {EBAY_FILES['train']} (in it or one or two "
                            "folders below); pass the Stanford_Online_Products folder")
        root = unpacked / "dataset"
        moved = False
        if consume_source:
            try:
                os.rename(found, root)
                moved = True
                report(f"moved {found} into the staging folder (--consume-source)")
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
        if not moved:
            copy_tree(found, root, report=report, interval=interval)
        if moved:
            try:
                return _finish_staged(work, root, source, kind, src_path, dest, digest,
                                      allow_partial, expect, force, report, interval, started)
            except BaseException:
                if root.is_dir():  # a refused dataset goes back where it was
                    os.rename(root, found)
                    report(f"moved the dataset back to {found}")
                raise
    return _finish_staged(work, root, source, kind, src_path, dest, digest, allow_partial, expect,
                          force, report, interval, started)


def _finish_staged(work: pathlib.Path, root: pathlib.Path, source: str, kind: str,
                   src_path: pathlib.Path | None, dest: pathlib.Path, digest: str | None,
                   allow_partial: bool, expect: dict[str, int], force: bool, report: Report,
                   interval: float, started: float) -> dict[str, Any]:
    """Verify the unpacked copy `root` inside `work`, write lists and marker, rename into place."""
    counts = verify_tree(root, expect, allow_partial=allow_partial, report=report, interval=interval)
    partial = any(c["images"] != c["expected"] or c["present"] != c["images"] for c in counts.values())
    _prepare_lists(root, report)
    record = {"source": redact(source) if kind == "url" else str(src_path), "sha256": digest,
              "installed_at": _now(), "partial": partial, "counts": counts}
    _write_marker(root, record)

    staged = work / "sop"
    os.rename(root, staged)
    if dest.exists():
        if force:
            os.rename(dest, work / "replaced")
            report(f"replacing the dataset that was at {dest} (--force)")
        else:  # an empty folder
            dest.rmdir()
    os.rename(staged, dest)
    _fsync_dir(dest.parent)
    seconds = round(time.monotonic() - started, 1)
    report(f"installed SOP at {dest} in {_clock(seconds)}")
    return {"finding": "install", "result": "installed", "root": str(dest), "seconds": seconds,
            **record}


def _finish_in_place(dest: pathlib.Path, source: str, expect: dict[str, int], allow_partial: bool,
                     report: Report, interval: float, started: float) -> dict[str, Any]:
    counts = verify_tree(dest, expect, allow_partial=allow_partial, report=report, interval=interval)
    partial = any(c["images"] != c["expected"] or c["present"] != c["images"] for c in counts.values())
    _prepare_lists(dest, report)
    record = {"source": f"{dest} (in place)", "sha256": None, "installed_at": _now(),
              "partial": partial, "counts": counts}
    _write_marker(dest, record)  # last: a marker means complete
    seconds = round(time.monotonic() - started, 1)
    report(f"prepared SOP in place at {dest} in {_clock(seconds)}")
    return {"finding": "install", "result": "installed", "root": str(dest), "seconds": seconds,
            **record}


def _prepare_lists(root: pathlib.Path, report: Report) -> None:
    from job.data.lists import prepare_sop

    written = prepare_sop(root)
    report("list files: " + ", ".join(f"{name} {lines:,}" for name, lines in written.items()))


def _write_marker(root: pathlib.Path, record: dict[str, Any]) -> None:
    from job.checkpoints import write_atomic

    write_atomic(root / MARKER, (json.dumps(record, indent=2) + "\n").encode())


# ----------------------------------------------------------------------------- status


def _count_lines(path: pathlib.Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def status(root: pathlib.Path, *, pretrained: pathlib.Path | None = None, sample: int = 200,
           seed: int = 0) -> list[dict[str, Any]]:
    """Findings about the dataset at `root` (and the checkpoint `pretrained`), one dict each.

    Kinds: dataset (state absent | empty | not-prepared | prepared, the marker's facts), split
    (images and classes of each Ebay file vs the expected count), lists (list files present, their
    lines, missing ones), images (a sample of listed images checked on disk), leftover (an
    interrupted install), checkpoint, problem.
    """
    from job.data.lists import read_ebay_file

    root = pathlib.Path(os.path.abspath(root))
    findings: list[dict[str, Any]] = []
    if not root.exists():
        findings.append({"finding": "dataset", "root": str(root), "state": "absent"})
    elif not root.is_dir():
        findings.append({"finding": "problem", "message": f"{root} is a file, not a folder"})
    elif not any(root.iterdir()):
        findings.append({"finding": "dataset", "root": str(root), "state": "empty"})
    else:
        marker = read_marker(root)
        if marker and not marker.get("damaged"):
            findings.append({"finding": "dataset", "root": str(root), "state": "prepared",
                             **{k: marker.get(k) for k in ("source", "sha256", "installed_at",
                                                           "partial")}})
        else:
            findings.append({"finding": "dataset", "root": str(root), "state": "not-prepared",
                             "note": f"no {MARKER}" if marker is None else f"{MARKER} is damaged"})
        expected = (marker or {}).get("counts") or {}
        rng = random.Random(seed)
        for split, name in EBAY_FILES.items():
            path = root / name
            if not path.is_file():
                nested = find_dataset_root(root)
                hint = (f"; the dataset seems to be one level down, in {nested}: install it with "
                        f"--source {nested} --consume-source" if nested and nested != root else "")
                findings.append({"finding": "problem", "message": f"{name} is missing{hint}"})
                continue
            try:
                listed = read_ebay_file(path)
            except DataError as e:
                findings.append({"finding": "problem", "message": str(e)})
                continue
            want = (expected.get(split) or {}).get("expected", OFFICIAL_COUNTS[split])
            findings.append({"finding": "split", "split": split, "file": name, "images": len(listed),
                             "classes": listed.num_classes, "expected": want})
            picks = sorted(rng.sample(range(len(listed)), min(sample, len(listed))))
            absent = [listed.paths[i] for i in picks if not (root / listed.paths[i]).is_file()]
            findings.append({"finding": "images", "split": split, "checked": len(picks),
                             "of": len(listed), "missing": len(absent), "examples": absent[:5]})
        present = {name: _count_lines(root / name) for name in LIST_FILES if (root / name).is_file()}
        findings.append({"finding": "lists", "present": present,
                         "missing": [name for name in LIST_FILES if name not in present]})
    if root.parent.is_dir():
        for old in sorted(root.parent.glob(WORK_PREFIX + "*")):
            findings.append({"finding": "leftover", "path": str(old)})
    if pretrained is not None:
        findings.append(checkpoint_finding(pathlib.Path(pretrained)))
    return findings


def checkpoint_finding(path: pathlib.Path) -> dict[str, Any]:
    """Whether the pretrained checkpoint is there, its size, and the SHA-256 recorded beside it."""
    finding: dict[str, Any] = {"finding": "checkpoint", "path": str(path), "present": path.is_file()}
    if finding["present"]:
        finding["bytes"] = path.stat().st_size
        sidecar = path.with_name(path.name + ".sha256")
        with contextlib.suppress(OSError):
            finding["sha256"] = sidecar.read_text().split()[0]
    return finding


# ----------------------------------------------------------------------------- receive


def receive(stream: IO[bytes], dest: pathlib.Path, *, sha256: dict[str, str] | None = None,
            replace: bool = False, report: Report = say, interval: float = 5.0) -> dict[str, Any]:
    """Unpack a tar stream (`data upload`, `data put-checkpoint`) into `dest`, atomically.

    The stream lands in `dest/.receive-<token>/` first; files named in `sha256` (member path ->
    hex digest) must match, and a `<file>.sha256` is written beside each; then every top-level
    entry is renamed into `dest` (a file replaces its namesake, a folder only with `replace`).
    Stops at the tar end-of-archive marker, so it does not need the sender to close stdin.
    """
    wanted = {name: check_sha256(value) for name, value in (sha256 or {}).items()}
    dest = pathlib.Path(os.path.abspath(dest))
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f"{RECEIVE_PREFIX}{os.getpid()}-{os.urandom(3).hex()}"
    staging.mkdir()
    digests = {name: hashlib.sha256() for name in wanted}
    try:
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tf:
                files, size = extract_tar_stream(tf, staging, report=report, interval=interval,
                                                 digests=digests)
        except (tarfile.TarError, EOFError) as e:
            raise DataError(f"the upload stream is not a complete tar archive ({e})") from e
        for name, expected in wanted.items():
            if not (staging / name).is_file():
                raise DataError(f"the upload holds no {name}")
            got = digests[name].hexdigest()
            if got != expected:
                raise DataError(f"{name} arrived damaged: sha256 {got}, expected {expected}")
            (staging / f"{name}.sha256").write_text(f"{got}  {pathlib.PurePosixPath(name).name}\n")
        entries = sorted(p.name for p in staging.iterdir())
        for name in entries:
            target = dest / name
            if target.is_dir() and not target.is_symlink():
                if not replace:
                    raise DataError(f"{target} already exists; pass --replace to overwrite it")
                os.rename(target, staging / f".old-{name}")
            os.replace(staging / name, target)
        _fsync_dir(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report(f"received {files:,} files ({human_bytes(size)}) into {dest}")
    return {"finding": "received", "dest": str(dest), "entries": entries, "files": files,
            "bytes": size, "verified": wanted}
