"""The HCCL rank table, format "1.0" (as the reference's hccl_tools.py writes it). Pure functions.

    {"version": "1.0", "server_count": "2",
     "server_list": [{"server_id": "<host ip>",
                      "device": [{"device_id": "0", "device_ip": "...", "rank_id": "0"}, ...],
                      "host_nic_ip": "reserve"}, ...],
     "status": "completed"}

Every value is a string. Rank ids run 0..N-1 over servers in the given order, then devices in
ascending device id. The servers come from the device plugin's pod annotations (on a
cluster), from `/etc/hccn.conf` files or from explicit device IP lists.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from .errors import RankTableError

VERSION = "1.0"
STATUS_COMPLETED = "completed"
STATUS_INITIALIZING = "initializing"
HOST_NIC_IP = "reserve"
_HCCN_ADDRESS = re.compile(r"^\s*address_(\d+)\s*=\s*(\S+)\s*$")


@dataclasses.dataclass(frozen=True)
class Device:
    """One NPU: its id on the server and the IP of its RoCE NIC."""

    device_id: int
    device_ip: str


@dataclasses.dataclass(frozen=True)
class Server:
    """One server of the table: its host IP and its devices (any order; sorted by id)."""

    server_id: str
    devices: tuple[Device, ...]


def initializing() -> dict[str, str]:
    """The placeholder the rank pods wait on."""
    return {"status": STATUS_INITIALIZING}


def build(servers: Sequence[Server]) -> dict[str, Any]:
    """A complete rank table for `servers`, in that order; rank ids by server, then device id."""
    if not servers:
        raise RankTableError("a rank table needs at least one server")
    seen_servers: set[str] = set()
    counts = {len(server.devices) for server in servers}
    if len(counts) != 1:
        detail = ", ".join(f"{s.server_id}: {len(s.devices)}" for s in servers)
        raise RankTableError(f"every server must have the same number of devices ({detail})")
    server_list = []
    rank = 0
    for server in servers:
        _check_ip(server.server_id, f"server_id of server {server.server_id!r}")
        if server.server_id in seen_servers:
            raise RankTableError(f"server {server.server_id} appears twice")
        seen_servers.add(server.server_id)
        if not server.devices:
            raise RankTableError(f"server {server.server_id} has no devices")
        ids = [device.device_id for device in server.devices]
        if len(set(ids)) != len(ids):
            raise RankTableError(f"server {server.server_id} lists a device id twice: {sorted(ids)}")
        ips = [device.device_ip for device in server.devices]
        if len(set(ips)) != len(ips):
            raise RankTableError(f"server {server.server_id} lists a device IP twice: {ips}")
        devices = []
        for device in sorted(server.devices, key=lambda d: d.device_id):
            if device.device_id < 0:
                raise RankTableError(f"device id {device.device_id} on {server.server_id} is negative")
            _check_ip(device.device_ip, f"device {device.device_id} of server {server.server_id}")
            devices.append({
                "device_id": str(device.device_id),
                "device_ip": device.device_ip,
                "rank_id": str(rank),
            })
            rank += 1
        server_list.append({"server_id": server.server_id, "device": devices,
                            "host_nic_ip": HOST_NIC_IP})
    return {
        "version": VERSION,
        "server_count": str(len(server_list)),
        "server_list": server_list,
        "status": STATUS_COMPLETED,
    }


def dumps(table: dict[str, Any]) -> str:
    """The table as the JSON text of hccl.json."""
    return json.dumps(table, indent=4) + "\n"


def rank_size(table: dict[str, Any]) -> int:
    return sum(len(server["device"]) for server in table.get("server_list", []))


def _check_ip(value: str, what: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise RankTableError(f"{what}: {value!r} is not an IP address") from None


# --- Sources ------------------------------------------------------------------------------

def parse_hccn_conf(text: str) -> dict[int, str]:
    """Device NIC IPs from /etc/hccn.conf (`address_<id>=<ip>` lines), by device id."""
    addresses: dict[int, str] = {}
    for line in text.splitlines():
        match = _HCCN_ADDRESS.match(line)
        if match:
            device_id, ip = int(match.group(1)), match.group(2)
            if device_id in addresses and addresses[device_id] != ip:
                raise RankTableError(f"hccn.conf gives device {device_id} two addresses")
            addresses[device_id] = ip
    if not addresses:
        raise RankTableError("hccn.conf has no 'address_<id>=<ip>' lines")
    return addresses


def server_from_hccn_conf(text: str, server_ip: str, devices: Iterable[int] | None = None) -> Server:
    """A server from its hccn.conf, optionally limited to some device ids (hccl_tools' visible devices)."""
    addresses = parse_hccn_conf(text)
    wanted = sorted(addresses) if devices is None else list(devices)
    missing = [d for d in wanted if d not in addresses]
    if missing:
        raise RankTableError(
            f"hccn.conf of {server_ip} has no address for device(s) {missing}; it lists {sorted(addresses)}")
    return Server(server_ip, tuple(Device(d, addresses[d]) for d in wanted))


def server_from_ips(server_ip: str, device_ips: Sequence[str], device_ids: Sequence[int] | None = None) -> Server:
    """A server from explicit device IPs (device ids 0..n-1 unless given)."""
    ids = list(range(len(device_ips))) if device_ids is None else list(device_ids)
    if len(ids) != len(device_ips):
        raise RankTableError(f"{len(device_ips)} device IPs but {len(ids)} device ids for {server_ip}")
    return Server(server_ip, tuple(Device(i, ip) for i, ip in zip(ids, device_ips)))


def server_from_annotation(value: str, *, pod: str) -> Server:
    """A server from the device plugin's `ascend-910-configuration` pod annotation (JSON)."""
    try:
        data = json.loads(value)
        server_id = str(data["server_id"])
        devices = tuple(Device(int(d["device_id"]), str(d["device_ip"])) for d in data["devices"])
    except (ValueError, KeyError, TypeError) as e:
        raise RankTableError(
            f"pod {pod}: the device plugin's annotation is not the expected JSON "
            f"{{\"server_id\": ..., \"devices\": [{{\"device_id\": ..., \"device_ip\": ...}}]}}: {value[:200]!r}"
        ) from e
    return Server(server_id, devices)


def parse_device_list(text: str) -> list[int]:
    """`0,1,2,3` or `0-3` (or a mix) -> device ids."""
    ids: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            ids.extend(range(int(low), int(high) + 1) if sep else [int(part)])
        except ValueError:
            raise RankTableError(f"device list {text!r} must look like 0,1,2,3 or 0-7") from None
    if not ids:
        raise RankTableError(f"device list {text!r} names no device")
    return ids


def parse_table(text: str) -> dict[str, Any]:
    """hccl.json text -> dict; `{}` for text that is not a JSON object."""
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
