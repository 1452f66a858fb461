"""Streaming files into a data pod: a tar archive over pod exec (the `kubectl cp` way).

`send_tar` writes a file or a folder as a tar stream into a `Session`, the stdin of
`python -m job data-receive` running in a pod (`ExecSession`, the official client's exec
WebSocket) or on this machine (`ProcessSession`, for `--local` and the tests), with a progress
line (`TransferProgress`). The archive ends with tar's end-of-archive marker, where
data-receive stops reading, so no stdin EOF is needed: the v4 exec protocol (Kubernetes before
1.30) cannot send one; under v5 the session closes stdin too.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from .errors import ClientError, WaitTimeout

log = logging.getLogger(__name__)
Callback = Callable[[str], None]
CHUNK = 1 << 20
EXIT_STREAM_LOST = 255   # an exec stream that closed without the command's exit status


def _quiet(_: str) -> None:
    pass


def size_text(n: float) -> str:
    """1.5 GiB"""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class Session(Protocol):
    """A running `python -m job data-receive` fed through its stdin (pod exec or a subprocess)."""

    def send(self, data: bytes) -> None: ...

    def finish(self, timeout: float) -> tuple[int, str, str]:
        """End stdin, wait for the command; (exit code, stdout, stderr)."""
        ...


class _Sender(io.RawIOBase):
    """A write-only file for tarfile that hands 1 MiB chunks to a Session."""

    def __init__(self, session: Session) -> None:
        self.session, self.buffer, self.sent = session, bytearray(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.buffer.extend(data)
        while len(self.buffer) >= CHUNK:
            self._flush(CHUNK)
        return len(data)

    def _flush(self, n: int) -> None:
        chunk = bytes(self.buffer[:n])
        del self.buffer[:n]
        self.session.send(chunk)
        self.sent += len(chunk)

    def drain(self) -> None:
        if self.buffer:
            self._flush(len(self.buffer))


class _Counting(io.RawIOBase):
    """A file read through by tarfile, counting bytes for the progress line."""

    def __init__(self, fh: Any, progress: TransferProgress) -> None:
        self.fh, self.progress = fh, progress

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.progress.add(len(data))
        return data


class TransferProgress:
    """`upload: 1.2 GiB of 2.9 GiB (41%), 35.1 MiB/s, ETA 0:00:48` at most every `interval` s."""

    def __init__(self, what: str, total: int, report: Callback, *, interval: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.total, self.report, self.interval, self.clock = what, total, report, interval, clock
        self.done = 0
        self.start = self.last = clock()

    def line(self) -> str:
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = self.done / elapsed
        pct = 100 * self.done / self.total if self.total else 100.0
        text = f"{self.what}: {size_text(self.done)} of {size_text(self.total)} ({pct:.0f}%), {size_text(rate)}/s"
        if 0 < rate and self.done < self.total:
            left = int((self.total - self.done) / rate)
            text += f", ETA {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}"
        return text

    def add(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.interval or self.done >= self.total:
            self.last = now
            self.report(self.line())


def plan_upload(path: Path) -> tuple[list[Path], int]:
    """Files under `path` (or `path` itself) in tar order, and their total size. Links are refused."""
    if path.is_symlink() or not (path.is_file() or path.is_dir()):
        raise ClientError(f"{path} is neither a file nor a folder")
    if path.is_file():
        return [path], path.stat().st_size
    files: list[Path] = []
    for folder, dirs, filenames in os.walk(path):
        dirs.sort()
        for name in sorted(filenames) + [d for d in dirs if Path(folder, d).is_symlink()]:
            full = Path(folder, name)
            if full.is_symlink() or not full.is_file():
                raise ClientError(f"{full} is a link or special file; upload a folder of plain files")
            files.append(full)
    return files, sum(f.stat().st_size for f in files)


def send_tar(path: Path, arcname: str, session: Session, *, on_progress: Callback = _quiet,
             what: str = "upload", progress_interval: float = 0.5) -> int:
    """Stream `path` (a file or a folder) as a tar archive named `arcname` into `session`.

    Returns the bytes of file content sent. The archive ends with tar's end-of-archive marker,
    which is where `data-receive` stops reading: no stdin EOF is needed (v4 exec protocol).
    """
    files, total = plan_upload(path)
    progress = TransferProgress(what, total, on_progress, interval=progress_interval)
    sender = _Sender(session)
    try:
        _write_tar(path, files, arcname, sender, progress)
    except StreamClosed:
        log.debug("the receiving side stopped after %d bytes", sender.sent)
    return progress.done


def _write_tar(path: Path, files: list[Path], arcname: str, sender: _Sender,
               progress: TransferProgress) -> None:
    with tarfile.open(fileobj=sender, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        if path.is_dir():
            folders = sorted({f.parent for f in files} | {path})
            for folder in folders:
                info = tf.gettarinfo(str(folder), arcname=_arc(path, folder, arcname))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tf.addfile(info)
        for file in files:
            info = tf.gettarinfo(str(file), arcname=_arc(path, file, arcname))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o644
            with open(file, "rb") as fh:
                tf.addfile(info, _Counting(fh, progress))
    sender.drain()
    if progress.total == 0:
        progress.add(0)


def _arc(root: Path, item: Path, arcname: str) -> str:
    rel = item.relative_to(root).as_posix() if item != root else ""
    return f"{arcname}/{rel}" if rel else arcname


def sha256_file(path: Path, on_progress: Callback = _quiet) -> str:
    digest = hashlib.sha256()
    progress = TransferProgress("checksum", path.stat().st_size, on_progress)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            progress.add(len(chunk))
    return digest.hexdigest()


class StreamClosed(Exception):
    """The receiving command stopped reading (it failed, or the connection broke): stop sending;
    `Session.finish` then tells why."""


class ExecSession:
    """A Session over the official client's exec WebSocket (WSClient, binary)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    def send(self, data: bytes) -> None:
        from websocket import WebSocketException

        try:
            if not self.ws.is_open():
                raise StreamClosed
            self.ws.write_stdin(data)
            self.ws.update(timeout=0)  # take in what the command says, so its buffers never fill
        except (WebSocketException, OSError) as e:
            raise StreamClosed from e

    def finish(self, timeout: float) -> tuple[int, str, str]:
        from websocket import WebSocketException

        try:
            if self.ws.is_open():
                self.ws.close_channel(0)   # v5: end of stdin; under v4 the tar end marker is enough
            deadline = time.monotonic() + timeout
            while self.ws.is_open() and time.monotonic() < deadline:
                self.ws.update(timeout=1)
        except (WebSocketException, OSError) as e:
            log.debug("exec stream: %s", e)
            self.ws._connected = False  # read what arrived before the break
        if self.ws.is_open():
            self.ws.close()
            raise WaitTimeout(f"the command in the pod did not finish within {timeout:g}s after the upload")
        out = _text(self.ws.read_stdout())
        err = _text(self.ws.read_stderr())
        try:
            code = self.ws.returncode
        except (TypeError, KeyError, ValueError, IndexError, AttributeError):
            code = None
        return (code if code is not None else EXIT_STREAM_LOST), out, err


class ProcessSession:
    """A Session over a local subprocess (`--local`)."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)

    def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(data)
        except BrokenPipeError as e:
            raise StreamClosed from e

    def finish(self, timeout: float) -> tuple[int, str, str]:
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise WaitTimeout(f"data-receive did not finish within {timeout:g}s") from None
        return self.process.returncode, _text(out), _text(err)


def _text(data: Any) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return data or ""
