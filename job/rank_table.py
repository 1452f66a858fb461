"""Reading and checking the HCCL rank table (format "1.0") that a rank pod is given.

The client (operator_client.rank_table) writes the table; this module is the job's reader. A
test runs every table the client builds through `validate` here, so the two cannot drift.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from job.errors import JobError


class RankTableError(JobError):
    """The rank table is malformed; the message says which field and what it must be."""


@dataclass(frozen=True)
class RankDevice:
    device_id: int     # local device index on the server (DEVICE_ID)
    device_ip: str
    rank_id: int       # global rank (RANK_ID)


@dataclass(frozen=True)
class RankServer:
    index: int
    server_id: str
    devices: tuple[RankDevice, ...]


def _str_field(obj: dict, key: str, where: str) -> str:
    if key not in obj:
        raise RankTableError(f"{where}: missing \"{key}\"")
    value = obj[key]
    if not isinstance(value, str):
        raise RankTableError(f"{where}: \"{key}\" must be a string (format 1.0), got {value!r}")
    return value


def _int_str(obj: dict, key: str, where: str) -> int:
    value = _str_field(obj, key, where)
    if not value.isdigit():
        raise RankTableError(f"{where}: \"{key}\" must be a non-negative integer string, got {value!r}")
    return int(value)


def validate(table: dict) -> list[RankServer]:
    """Check a parsed table; return its servers in order. Errors name the field."""
    if not isinstance(table, dict):
        raise RankTableError("the rank table must be a JSON object")
    status = table.get("status")
    if status != "completed":
        raise RankTableError(f"status is {status!r}, not \"completed\" (the table is not filled yet)")
    version = _str_field(table, "version", "rank table")
    if version != "1.0":
        raise RankTableError(f"version is {version!r}; only format \"1.0\" is supported")
    count = _int_str(table, "server_count", "rank table")
    servers_raw = table.get("server_list")
    if not isinstance(servers_raw, list) or not servers_raw:
        raise RankTableError("server_list must be a non-empty list")
    if count != len(servers_raw):
        raise RankTableError(f"server_count is \"{count}\" but server_list has {len(servers_raw)} servers")
    servers, ranks, server_ids = [], [], set()
    for si, raw in enumerate(servers_raw):
        where = f"server_list[{si}]"
        if not isinstance(raw, dict):
            raise RankTableError(f"{where} must be an object")
        server_id = _str_field(raw, "server_id", where)
        if server_id in server_ids:
            raise RankTableError(f"{where}: server_id {server_id} appears twice")
        server_ids.add(server_id)
        devs_raw = raw.get("device")
        if not isinstance(devs_raw, list) or not devs_raw:
            raise RankTableError(f"{where}: \"device\" must be a non-empty list")
        devices, local_ids = [], set()
        for di, d in enumerate(devs_raw):
            dwhere = f"{where}.device[{di}]"
            if not isinstance(d, dict):
                raise RankTableError(f"{dwhere} must be an object")
            dev = RankDevice(_int_str(d, "device_id", dwhere), _str_field(d, "device_ip", dwhere),
                             _int_str(d, "rank_id", dwhere))
            if dev.device_id in local_ids:
                raise RankTableError(f"{dwhere}: device_id {dev.device_id} appears twice on {server_id}")
            local_ids.add(dev.device_id)
            devices.append(dev)
            ranks.append(dev.rank_id)
        servers.append(RankServer(si, server_id, tuple(devices)))
    if sorted(ranks) != list(range(len(ranks))):
        dup = sorted({r for r in ranks if ranks.count(r) > 1})
        detail = f"duplicated {dup}" if dup else f"got {sorted(ranks)}"
        raise RankTableError(f"rank_id values must be unique and cover 0..{len(ranks) - 1}; {detail}")
    return servers


def read(path: str | Path) -> list[RankServer]:
    """Parse and validate a rank table file."""
    p = Path(path)
    try:
        table = json.loads(p.read_text())
    except FileNotFoundError:
        raise RankTableError(f"rank table {p} does not exist") from None
    except ValueError as e:
        raise RankTableError(f"rank table {p} is not valid JSON ({e})") from None
    try:
        return validate(table)
    except RankTableError as e:
        raise RankTableError(f"rank table {p}: {e}") from None


def status_of(path: str | Path) -> str | None:
    """The table's "status" ("initializing", "completed"), or None while it is unreadable
    (a ConfigMap volume may be empty or mid-update)."""
    try:
        table = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return table.get("status") if isinstance(table, dict) else None


def rank_size(servers: list[RankServer]) -> int:
    return sum(len(s.devices) for s in servers)


def find_server(servers: list[RankServer], *, host_ip: str | None = None,
                pod_ip: str | None = None, index: int | None = None) -> RankServer:
    """This pod's entry: by host IP (server_id is the host IP), else pod IP, else index."""
    for ip in (host_ip, pod_ip):
        if ip:
            for s in servers:
                if s.server_id == ip:
                    return s
    if index is not None:
        if 0 <= index < len(servers):
            return servers[index]
        raise RankTableError(f"server index {index} is outside the table's {len(servers)} servers")
    ids = ", ".join(s.server_id for s in servers)
    raise RankTableError(f"no server_id in the rank table matches this pod (HOST_IP={host_ip}, "
                         f"POD_IP={pod_ip}; table has {ids}) and no server index (VC_TASK_INDEX) is set")
