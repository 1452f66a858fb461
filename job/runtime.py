"""Process set-up shared by every stage: device target, logging with the rank prefix."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

DEVICES = ("auto", "cpu", "ascend")
_TARGET: str | None = None


def resolve_device(device: str = "auto") -> str:
    """MindSpore device target: Ascend when an NPU is visible, else CPU."""
    if device == "auto":
        device = os.environ.get("JOB_DEVICE", "auto").lower()
    if device == "auto":
        device = "ascend" if Path("/dev/davinci0").exists() else "cpu"
    if device not in ("cpu", "ascend"):
        from job.errors import ConfigError
        raise ConfigError(f"--device {device!r} is not one of: {', '.join(DEVICES)}")
    return {"cpu": "CPU", "ascend": "Ascend"}[device]


def init_mindspore(device: str = "auto") -> str:
    """Set MindSpore's context once per process; returns the device target."""
    import mindspore as ms

    global _TARGET
    target = resolve_device(device)
    if _TARGET is not None:          # MindSpore allows setting the device only once
        if target != _TARGET:
            from job.errors import ConfigError
            raise ConfigError(f"this process already runs on {_TARGET}, not {target}")
        return target
    _TARGET = target
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        if target == "Ascend":
            ms.set_device(target, int(os.environ.get("DEVICE_ID", "0")))
        else:
            ms.set_device(target)
    except RuntimeError:
        # Kernels already ran in this process (e.g. in a test session) on the default device.
        if ms.get_context("device_target") != target:
            raise
    return target


def rank_prefix() -> str:
    """`rank N` from the launcher's environment (RANK_ID or msrun's MS_NODE_RANK...)."""
    for var in ("RANK_ID", "MS_NODE_ID", "OMPI_COMM_WORLD_RANK"):
        if os.environ.get(var, "").isdigit():
            return f"rank{os.environ[var]}"
    return "rank0"


def setup_logging(log_file: Path | None = None, *, verbose: bool = False,
                  prefix: str | None = None) -> None:
    """Lines like `13:05:01 rank0 INFO epoch 1/30 ...` on stdout and, if given, in a file."""
    fmt = logging.Formatter(f"%(asctime)s {prefix or rank_prefix()} %(levelname)s %(message)s",
                            "%H:%M:%S")
    root = logging.getLogger("job")
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    for h in list(root.handlers):
        root.removeHandler(h)
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(fmt)
    root.addHandler(stream)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file)
        fh.setFormatter(fmt)
        root.addHandler(fh)
