"""Shared helpers of the benchmark scripts: machine description, timing, peak memory,
subprocess workers and plain-text tables. NumPy and the standard library only."""
from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    """`date, CPU model, cores, memory, load` for the table headers."""
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gib = float("nan")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{datetime.date.today().isoformat()}, {cpu_model()}, {os.cpu_count()} cores, "
            f"{mem_gib:.0f} GiB, Python {platform.python_version()}, "
            f"load average at start {load:.2f}")


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM), MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(script: Path, args: list[str], *, timeout: float | None = None,
               env: dict | None = None) -> dict:
    """Run `python script --worker ...` in a fresh process; it prints one JSON line last.

    Returns that dict plus `peak_rss_mib` of the child as seen by the parent
    (RUSAGE_CHILDREN is cumulative max over children, so each worker's own VmHWM,
    reported by the worker itself, is the number used in the tables).
    """
    cmd = [sys.executable, str(script), "--worker", *args]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"worker {' '.join(args[:3])} failed with exit code {proc.returncode}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"worker {' '.join(args[:3])} printed no result")
    out = json.loads(lines[-1])
    out["process_seconds"] = wall
    return out


def emit(result: dict) -> None:
    """A worker's last line: its result as JSON (with its own peak RSS)."""
    result.setdefault("peak_rss_mib", peak_rss_mib())
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def spread(values) -> str:
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return ""
    return f"{min(values):.3g}-{max(values):.3g}"


def table(headers: list[str], rows: list[list], aligns: str | None = None) -> str:
    """A GitHub-markdown table (also readable as plain text)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    aligns = aligns or "l" + "r" * (len(headers) - 1)

    def fmt(row):
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w)
                                 for c, w, a in zip(row, widths, aligns)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2))
                         for w, a in zip(widths, aligns)) + "|"
    return "\n".join([fmt(headers), sep, *(fmt(r) for r in cells)])


def versions(*modules: str) -> str:
    out = []
    for name in modules:
        try:
            mod = __import__(name)
            out.append(f"{name} {getattr(mod, '__version__', '?')}")
        except Exception:  # noqa: BLE001 - a missing peer is reported, not fatal here
            out.append(f"{name} (not installed)")
    return ", ".join(out)


def demo_data(path: Path | None) -> Path:
    """The demo dataset (Fashion-MNIST views, SOP layout, the size `make demo` uses); built
    once into a temp dir if not given."""
    if path is not None:
        return path
    import tempfile

    from job.cli import DEMO_CLASSES
    from job.data import make_demo_data

    out = Path(tempfile.gettempdir()) / "sop-bench-demo"
    if not (out / "DEMO_INFO.json").exists():
        make_demo_data(out, train_classes=DEMO_CLASSES[0], test_classes=DEMO_CLASSES[1])
    return out
