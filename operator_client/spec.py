"""The job specification: what a user asks for, validated once at the entry.

`JobSpec` is a frozen dataclass with documented defaults; constructing one validates every field
and raises `SpecError` with a message that states the rule. Values come from a YAML file
(`-f job.yaml`) and from command-line flags; flags win (`spec_from_sources`).
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from . import names
from .errors import SpecError

# The job's pipeline, in the order it runs. The job side owns the stages; this list mirrors
# what `python -m job launch --stages` accepts (the two packages never import each other).
STAGES = ("pretrain", "finetune", "eval", "export")
DEFAULT_STAGES = ("pretrain", "finetune", "eval")
FINETUNE_LOSSES = ("triplet", "quadruplet")
# softmax is the pretraining loss: a softmax job only pretrains (and may eval/export).
LOSSES = FINETUNE_LOSSES + ("softmax",)
LAUNCH_MODES = ("rank-table", "dynamic")
DEVICES = ("ascend", "cpu")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
MAX_SERVERS = 1000  # pod names end in -worker-<index>, at most 3 digits
MAX_RETRY_LIMIT = 100

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SET_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Docker image reference: [host[:port]/]path[:tag][@digest]
_IMAGE = re.compile(
    r"^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?)/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """One training job on the cluster.

    Attributes:
        loss: Metric-learning loss of the fine-tune stage: triplet or quadruplet; softmax runs
            the pretraining stage only.
        stages: Stages to run, in pipeline order (pretrain, finetune, eval, export).
        servers: Number of servers (rank pods, one per server); the gang size.
        devices_per_server: Ascend 910 devices per server: 1, 2, 4 or 8 (with device cpu:
            training processes per pod).
        device: "ascend" (pods request huawei.com/Ascend910) or "cpu" (pods request `cpus`
            and `memory`, no NPU, and start in dynamic mode: for clusters without NPUs).
        cpus, memory: requests (= limits) of a pod with device cpu.
        image: Container image holding the `job` package ("" = the default image of the
            device: MindSpore + CANN for ascend, MindSpore CPU for cpu).
        namespace: Kubernetes namespace of the job.
        queue: Volcano queue.
        name: Job name; None derives a unique one at submit/render time.
        data_pvc: PersistentVolumeClaim holding the SOP dataset (mounted at /data).
        data_subpath: Folder inside the data volume to mount at /data ("" = the whole volume);
            the dataset is expected in its `sop/` folder.
        runs_pvc: PersistentVolumeClaim for run directories (mounted at /runs).
        pretrained_ckpt: Checkpoint pretraining starts from, as a path inside the pod; None: the
            ImageNet backbone on the data volume (names.DEFAULT_PRETRAINED_CKPT) on Ascend, random
            weights with --device cpu (see launch_command.pretrained_checkpoint); "none": random.
        overrides: `--set key=value` pairs passed on to the trainer, in order.
        launch: "rank-table" (HCCL rank table, one process per device) or "dynamic"
            (MindSpore dynamic cluster: MS_SCHED_* env, no rank table); "" = rank-table on
            ascend, dynamic on cpu.
        max_retry: How often Volcano restarts the whole job after a failed or evicted pod.
        service_account: ServiceAccount of the rank pods (created by manifests/cluster).
        scheduler_port: MS_SCHED_PORT in dynamic mode.
    """

    loss: str
    stages: tuple[str, ...] = DEFAULT_STAGES
    servers: int = 1
    devices_per_server: int = 8
    device: str = "ascend"
    cpus: str = "4"
    memory: str = "16Gi"
    image: str = ""
    namespace: str = names.DEFAULT_NAMESPACE
    queue: str = names.DEFAULT_QUEUE
    name: str | None = None
    data_pvc: str = names.DEFAULT_DATA_PVC
    data_subpath: str = ""
    runs_pvc: str = names.DEFAULT_RUNS_PVC
    pretrained_ckpt: str | None = None
    overrides: tuple[tuple[str, str], ...] = ()
    launch: str = ""
    max_retry: int = 3
    service_account: str = names.DEFAULT_SERVICE_ACCOUNT
    scheduler_port: int = names.DEFAULT_SCHEDULER_PORT

    def __post_init__(self) -> None:
        set_ = lambda field, value: object.__setattr__(self, field, value)  # noqa: E731 (frozen)
        set_("stages", _parse_stages(self.stages))
        set_("overrides", _parse_overrides(self.overrides))
        for field in ("servers", "devices_per_server", "max_retry", "scheduler_port"):
            set_(field, _as_int(field, getattr(self, field)))
        for field in ("loss", "image", "namespace", "queue", "data_pvc", "data_subpath",
                      "runs_pvc", "launch", "service_account", "device"):
            if not isinstance(getattr(self, field), str):
                raise SpecError(f"{_flag(field)} must be a string, got {getattr(self, field)!r}")
        for field in ("cpus", "memory"):
            set_(field, str(getattr(self, field)))
        if self.device not in DEVICES:
            raise SpecError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if not self.launch:
            set_("launch", "dynamic" if self.device == "cpu" else "rank-table")
        if not self.image:
            set_("image", names.DEFAULT_CPU_IMAGE if self.device == "cpu" else names.DEFAULT_IMAGE)
        self._validate()

    @property
    def rank_size(self) -> int:
        """Number of training processes: servers x devices per server."""
        return self.servers * self.devices_per_server

    @property
    def uses_rank_table(self) -> bool:
        return self.launch == "rank-table"

    @property
    def on_cpu(self) -> bool:
        return self.device == "cpu"

    def with_name(self, name: str | None = None) -> JobSpec:
        """This spec with `name`, or with a derived unique name if it has none."""
        if name is None and self.name is not None:
            return self
        return dataclasses.replace(self, name=name or names.default_job_name(self.loss))

    def _validate(self) -> None:
        if self.loss not in LOSSES:
            raise SpecError(f"unknown loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        if self.loss == "softmax" and "finetune" in self.stages:
            raise SpecError(
                "loss 'softmax' is the pretraining loss and cannot fine-tune: use --loss triplet or "
                "quadruplet, or --stages pretrain (optionally pretrain,eval)")
        if self.devices_per_server not in names.VALID_DEVICES_PER_SERVER:
            raise SpecError(
                f"--devices-per-server must be 1, 2, 4 or 8 (Ascend 910 servers have 8 devices), "
                f"got {self.devices_per_server}")
        if not 1 <= self.servers <= MAX_SERVERS:
            raise SpecError(f"--servers must be between 1 and {MAX_SERVERS}, got {self.servers}")
        if self.on_cpu and self.launch == "rank-table":
            raise SpecError("--device cpu starts the ranks in dynamic mode (a rank table needs "
                            "Ascend NPUs): drop --launch rank-table")
        for field in ("cpus", "memory"):
            if not _QUANTITY.match(getattr(self, field)):
                raise SpecError(f"{_flag(field)} {getattr(self, field)!r} is not a Kubernetes "
                                f"quantity, e.g. 4, 500m, 16Gi")
        if (not self.on_cpu and self.servers > 1
                and self.devices_per_server != names.DEVICES_PER_SERVER_MAX):
            raise SpecError(
                "jobs over several servers must use all 8 devices of each server "
                f"(--devices-per-server 8), got {self.devices_per_server}")
        if not 0 <= self.max_retry <= MAX_RETRY_LIMIT:
            raise SpecError(f"max-retry must be between 0 and {MAX_RETRY_LIMIT}, got {self.max_retry}")
        if not 1 <= self.scheduler_port <= 65535:
            raise SpecError(f"scheduler-port must be a TCP port (1-65535), got {self.scheduler_port}")
        if self.launch not in LAUNCH_MODES:
            raise SpecError(f"--launch must be one of {', '.join(LAUNCH_MODES)}, got {self.launch!r}")
        if not _IMAGE.match(self.image):
            raise SpecError(
                f"--image {self.image!r} is not a valid image reference "
                "([registry[:port]/]repository[:tag][@sha256:digest], repository in lower case)")
        _check_dns(self.namespace, "--namespace", _DNS_LABEL, 63)
        _check_dns(self.queue, "--queue", _DNS_LABEL, 63)
        _check_dns(self.data_pvc, "--data-pvc", _DNS_SUBDOMAIN, 253)
        _check_dns(self.runs_pvc, "--runs-pvc", _DNS_SUBDOMAIN, 253)
        _check_dns(self.service_account, "service-account", _DNS_SUBDOMAIN, 253)
        if self.data_subpath:
            parts = self.data_subpath.split("/")
            if self.data_subpath.startswith("/") or ".." in parts or "" in parts[:-1]:
                raise SpecError(
                    f"--data-subpath {self.data_subpath!r} must be a relative folder inside the "
                    "volume, without '..', e.g. 'datasets'")
        if self.pretrained_ckpt is not None and self.pretrained_ckpt != names.NO_PRETRAINED_CKPT:
            if not isinstance(self.pretrained_ckpt, str) or not self.pretrained_ckpt.startswith("/"):
                raise SpecError(
                    f"--pretrained-ckpt {self.pretrained_ckpt!r} must be an absolute path as the pod "
                    f"sees it, e.g. {names.DEFAULT_PRETRAINED_CKPT}, or "
                    f"'{names.NO_PRETRAINED_CKPT}' (random weights)")
        if self.name is not None:
            check_job_name(self.name, self.servers)


def check_job_name(name: str, servers: int = 1) -> None:
    """Raise SpecError unless `name` can name a Volcano job (and its pods and Service)."""
    if not isinstance(name, str) or not _DNS_1035_LABEL.match(name):
        raise SpecError(
            f"job name {name!r} must be lower-case letters, digits and '-', start with a letter "
            "and end with a letter or digit")
    longest_pod = names.pod_name(name, max(servers - 1, 0))
    if len(longest_pod) > 63:
        raise SpecError(
            f"job name {name!r} is too long: pod name {longest_pod!r} would exceed 63 characters "
            f"(keep names within {names.JOB_NAME_MAX} characters)")


def _check_dns(value: str, what: str, pattern: re.Pattern[str], limit: int) -> None:
    if not value or len(value) > limit or not pattern.match(value):
        raise SpecError(
            f"{what} {value!r} is not a valid Kubernetes name "
            f"(lower-case letters, digits and '-', at most {limit} characters)")


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _as_int(field: str, value: Any) -> int:
    if isinstance(value, bool):
        raise SpecError(f"{_flag(field)} must be a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise SpecError(f"{_flag(field)} must be a whole number, got {value!r}")


def _parse_stages(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",") if item.strip()]
    elif isinstance(value, Iterable):
        items = [str(item).strip() for item in value]
    else:
        raise SpecError(f"--stages must be a comma-separated list, got {value!r}")
    if not items:
        raise SpecError(f"--stages must name at least one of {','.join(STAGES)}")
    unknown = [item for item in items if item not in STAGES]
    if unknown:
        raise SpecError(f"unknown stage {unknown[0]!r}: stages are {', '.join(STAGES)}")
    if len(set(items)) != len(items):
        raise SpecError(f"--stages lists a stage twice: {','.join(items)}")
    ordered = sorted(items, key=STAGES.index)
    if ordered != items:
        raise SpecError(
            f"--stages must follow the pipeline order {','.join(STAGES)}: "
            f"write {','.join(ordered)} instead of {','.join(items)}")
    return tuple(items)


def _parse_overrides(value: Any) -> tuple[tuple[str, str], ...]:
    """`--set` values: "k=v" strings, (k, v) pairs or a mapping; keys unique, last one wins."""
    if value is None:
        return ()
    pairs: list[tuple[str, str]] = []
    items = value.items() if isinstance(value, Mapping) else value
    if isinstance(items, str):
        items = [items]
    for item in items:
        if isinstance(item, str):
            key, sep, val = item.partition("=")
            if not sep:
                raise SpecError(f"--set {item!r} must look like key=value, e.g. --set epochs=10")
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            key, val = item
        else:
            raise SpecError(f"--set value {item!r} must look like key=value")
        key = str(key).strip()
        val = _scalar_text(val)
        if not _SET_KEY.match(key):
            raise SpecError(
                f"--set key {key!r} must be a dotted identifier (letters, digits, '_', '.'), "
                "e.g. lr or optimizer.momentum")
        if "\n" in val:
            raise SpecError(f"--set {key}: the value must be on one line")
        pairs = [(k, v) for k, v in pairs if k != key] + [(key, val)]
    return tuple(pairs)


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


# --- Building a spec from a YAML file and flags -------------------------------------------

_FIELDS = {field.name for field in dataclasses.fields(JobSpec)}
# YAML keys: the long flag names (dashes or underscores); `set` holds the overrides.
_KEY_ALIASES = {"set": "overrides"}


def load_spec_file(path: str | Path) -> dict[str, Any]:
    """Read a job YAML file (keys: the long option names, e.g. `devices-per-server: 8`)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"job file {str(path)!r} does not exist") from None
    except OSError as e:
        raise SpecError(f"cannot read job file {str(path)!r}: {e.strerror}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise SpecError(f"job file {str(path)!r} is not valid YAML{where}") from e
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise SpecError(f"job file {str(path)!r} must hold a mapping of options, e.g. 'loss: triplet'")
    return normalize_keys(data, source=str(path))


def normalize_keys(values: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """Map option names (`devices-per-server`, `set`) to JobSpec fields; reject unknown keys."""
    result: dict[str, Any] = {}
    for key, value in values.items():
        field = str(key).replace("-", "_")
        field = _KEY_ALIASES.get(field, field)
        if field not in _FIELDS:
            valid = sorted(k.replace("_", "-") for k in _FIELDS - {"overrides"}) + ["set"]
            raise SpecError(f"unknown option {key!r} in {source}; valid options: {', '.join(valid)}")
        result[field] = value
    return result


def spec_from_sources(file_values: Mapping[str, Any], flag_values: Mapping[str, Any]) -> JobSpec:
    """Merge YAML values and flags (flags win; `--set` keys override the file's) into a JobSpec."""
    merged: dict[str, Any] = dict(file_values)
    for field, value in flag_values.items():
        if value is None:
            continue
        if field == "overrides":
            base = _parse_overrides(merged.get("overrides"))
            merged["overrides"] = base + _parse_overrides(value)
        else:
            merged[field] = value
    if merged.get("loss") is None:
        raise SpecError(
            "the loss is required: pass --loss triplet or --loss quadruplet "
            "(or --loss softmax --stages pretrain)")
    return JobSpec(**merged)
