"""`job export`: the feature extractor (backbone + optional embedding, no softmax head)
as MINDIR (default), AIR or ONNX, input float32 [1, 3, H, W]."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from job.errors import ConfigError

log = logging.getLogger("job.export")

FORMATS = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}


def export(checkpoint: Path, out: Path, *, file_format: str = "MINDIR",
           image_size: int | None = None, batch_size: int = 1) -> Path:
    import mindspore as ms

    from job.evaluation.evaluate import build_net_from_checkpoint

    fmt = file_format.upper()
    if fmt not in FORMATS:
        raise ConfigError(f"--format {file_format!r} is not one of: {', '.join(FORMATS)}")
    net, spec, _ = build_net_from_checkpoint(checkpoint)
    size = image_size or spec.image_size
    x = ms.Tensor(np.zeros((batch_size, 3, size, size), np.float32))
    out.parent.mkdir(parents=True, exist_ok=True)
    base = out.with_suffix("") if out.suffix.lower() == FORMATS[fmt] else out
    ms.export(net, x, file_name=str(base), file_format=fmt)
    written = base.with_name(base.name + FORMATS[fmt])
    log.info("exported %s (%s, input [%d,3,%d,%d] -> [%d,%d]) to %s", checkpoint.name, fmt,
             batch_size, size, size, batch_size, net.feature_dim, written)
    return written
