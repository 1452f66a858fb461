"""The training/evaluation configuration: one flat dataclass, overridable from YAML and `--set`.

Defaults live in `job.presets` (the reference's three stage configs and the CPU profile); this
module only knows the fields, their types and how overrides are parsed and validated.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from job.errors import ConfigError

LR_SCHEDULES = ("steps", "const", "poly", "cosine", "linear")
SINGLETON_POLICIES = ("drop", "error")
# Fields that do not change what is computed; a resumed run may change them.
OPERATIONAL_FIELDS = frozenset({"num_workers", "log_every", "eval_batch_size",
                                "resume_every_steps"})


@dataclass
class TrainConfig:
    """Every knob of one training stage. Field names are what `--set key=value` uses."""

    # what is trained
    loss: str = "softmax"              # see job.losses.LOSSES
    backbone: str = "resnet50"         # see job.model.resnet.BACKBONES
    embedding_dim: int = 0             # 0: use the backbone's pooled features directly
    image_size: int = 224
    # data
    train_split: str = "train_half"
    eval_split: str = "test_half"
    batch_size: int = 80               # per device
    pk_classes: int = 0                # P of a P x K batch; 0: batch_size // pk_images
    pk_images: int = 2                 # K of a P x K batch
    singletons: str = "drop"           # classes with one image in a pair loss: drop | error
    num_workers: int = 4               # decode/augment threads per process
    # optimisation
    epochs: int = 30
    lr_schedule: str = "steps"
    lr_init: float = 0.01              # start of the warm-up
    lr_max: float = 0.3
    lr_end: float = 0.0001
    warmup_epochs: int = 0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    loss_scale: float = 1024.0         # fixed loss scale (identity in float32, needed for fp16)
    amp_level: str = "auto"            # auto: O3 on Ascend (as the reference), O0 elsewhere
    label_smoothing: float = 0.0
    margin: float = 0.1                # triplet margin; quadruplet first margin (alpha1)
    margin2: float = 0.05              # quadruplet second margin (alpha2 < alpha1)
    seed: int = 1
    micro_batches: int = 1             # batches whose gradients are averaged per update
    max_steps_per_epoch: int = 0       # 0: the whole epoch (tests and demos cap it)
    # bookkeeping
    save_checkpoint_epochs: int = 10
    keep_checkpoint_max: int = 5
    resume_every_steps: int = 0        # also save the resume state every N steps (0: epoch ends)
    log_every: int = 10                # steps between progress lines
    eval_batch_size: int = 64

    def validate(self) -> "TrainConfig":
        """Check values a user can get wrong; the message states the rule."""
        from job.losses import LOSSES
        from job.model.resnet import BACKBONES

        _choice("loss", self.loss, LOSSES)
        _choice("backbone", self.backbone, BACKBONES)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("singletons", self.singletons, SINGLETON_POLICIES)
        _choice("amp_level", self.amp_level, ("auto", "O0", "O1", "O2", "O3"))
        for name in ("batch_size", "epochs", "image_size", "pk_images", "log_every",
                     "save_checkpoint_epochs", "keep_checkpoint_max", "num_workers",
                     "eval_batch_size", "micro_batches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size < 16:
            raise ConfigError(f"image_size must be >= 16 pixels, got {self.image_size}")
        for name in ("lr_max", "lr_init", "lr_end", "weight_decay", "margin", "margin2",
                     "warmup_epochs", "max_steps_per_epoch", "embedding_dim",
                     "resume_every_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.loss_scale <= 0:
            raise ConfigError(f"loss_scale must be > 0, got {self.loss_scale}")
        if self.loss.startswith("quadruplet-chen") and self.margin2 >= self.margin:
            raise ConfigError(f"quadruplet needs margin2 < margin (Chen et al.), got "
                              f"margin={self.margin} margin2={self.margin2}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Short hash of the values that shape the result: tells whether a run directory was
        made by this config (operational knobs such as num_workers may change on resume)."""
        blob = json.dumps(self.result_fields(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def result_fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_dict().items() if k not in OPERATIONAL_FIELDS}


def _choice(name: str, value: str, valid) -> None:
    if value not in valid:
        raise ConfigError(f"{name}={value!r} is not one of: {', '.join(sorted(valid))}")


FIELD_TYPES = {f.name: f.type for f in fields(TrainConfig)}


def coerce(key: str, value: Any) -> Any:
    """Convert a YAML/`--set` value to the field's type, or say which keys exist."""
    if key not in FIELD_TYPES:
        close = difflib.get_close_matches(key, FIELD_TYPES, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown config key {key!r}{hint}; valid keys: "
                          f"{', '.join(sorted(FIELD_TYPES))}")
    kind = FIELD_TYPES[key]
    try:
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "str":
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be {kind}, got {value!r}") from None
    raise AssertionError(f"unhandled field type {kind}")


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parse `key=value` pairs; values are read as YAML scalars (1e-4, true, 30)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key = key.strip()
        out[key] = coerce(key, yaml.safe_load(raw) if raw.strip() else "")
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read an override file: a flat mapping of config keys."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of key: value")
    return {k: coerce(str(k), v) for k, v in data.items()}


def build_config(base: dict[str, Any], *, yaml_file: str | Path | None = None,
                 overrides: list[str] | None = None) -> TrainConfig:
    """Preset values, then the YAML file, then `--set` (the last one wins)."""
    values = dict(base)
    if yaml_file:
        values.update(load_yaml(yaml_file))
    values.update(parse_set(overrides or []))
    return TrainConfig(**values).validate()
