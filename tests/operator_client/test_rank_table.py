"""The HCCL rank table "1.0": hand-written expectation, sources, errors, the static CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from operator_client import rank_table
from operator_client.errors import RankTableError
from operator_client.rank_table import Device, Server

DATA = Path(__file__).parent / "data"
EXPECTED_2X8 = json.loads((DATA / "rank_table_2x8.json").read_text())
SERVER_1_IPS = ["192.168.100.11", "192.168.101.11", "192.168.102.11", "192.168.103.11",
                "192.168.100.12", "192.168.101.12", "192.168.102.12", "192.168.103.12"]
SERVER_2_IPS = ["192.168.100.21", "192.168.101.21", "192.168.102.21", "192.168.103.21",
                "192.168.100.22", "192.168.101.22", "192.168.102.22", "192.168.103.22"]


def annotation(server_ip: str, ips: list[str], order: list[int] | None = None) -> str:
    order = order if order is not None else list(range(len(ips)))
    return json.dumps({"pod_name": "p", "server_id": server_ip,
                       "devices": [{"device_id": str(i), "device_ip": ips[i]} for i in order]})


def test_two_servers_of_eight_devices_equal_the_hand_written_table():
    servers = [rank_table.server_from_annotation(annotation("10.0.0.11", SERVER_1_IPS), pod="a"),
               # the device plugin may list devices in any order: ranks follow device ids
               rank_table.server_from_annotation(annotation("10.0.0.12", SERVER_2_IPS, [7, 3, 0, 1, 2, 6, 5, 4]),
                                                 pod="b")]
    table = rank_table.build(servers)
    assert table == EXPECTED_2X8
    assert list(table) == ["version", "server_count", "server_list", "status"]
    assert json.loads(rank_table.dumps(table)) == EXPECTED_2X8
    assert rank_table.rank_size(table) == 16


def test_the_same_table_from_hccn_conf_files():
    servers = [rank_table.server_from_hccn_conf((DATA / "hccn_server1.conf").read_text(), "10.0.0.11"),
               rank_table.server_from_hccn_conf((DATA / "hccn_server2.conf").read_text(), "10.0.0.12")]
    assert rank_table.build(servers) == EXPECTED_2X8


@pytest.mark.parametrize("servers", [1, 3, 5], ids=["1-server", "3-servers", "5-servers"])
def test_any_number_of_servers_ranks_by_server_then_device(servers):
    table = rank_table.build([rank_table.server_from_ips(f"10.1.0.{s}", [f"172.16.{d}.{s}" for d in range(8)])
                              for s in range(servers)])
    assert table["server_count"] == str(servers)
    ranks = [(int(dev["rank_id"]), s["server_id"], int(dev["device_id"]))
             for s in table["server_list"] for dev in s["device"]]
    assert [r for r, _, _ in ranks] == list(range(8 * servers))
    if servers > 1:
        assert ranks[8] == (8, "10.1.0.1", 0)
    assert all(isinstance(v, str) for s in table["server_list"] for d in s["device"] for v in d.values())


def test_visible_devices_subset_from_hccn_conf():
    server = rank_table.server_from_hccn_conf((DATA / "hccn_server1.conf").read_text(), "10.0.0.11",
                                              rank_table.parse_device_list("4-7"))
    table = rank_table.build([server])
    assert [(d["device_id"], d["rank_id"]) for d in table["server_list"][0]["device"]] == \
        [("4", "0"), ("5", "1"), ("6", "2"), ("7", "3")]


BAD = {
    "not-an-ip": ([Server("10.0.0.1", (Device(0, "192.168.1.300"),))], "device 0 of server 10.0.0.1: '192.168.1.300' is not an IP"),
    "bad-server-ip": ([Server("node-1", (Device(0, "192.168.1.3"),))], "'node-1' is not an IP"),
    "device-twice": ([Server("10.0.0.1", (Device(0, "1.1.1.1"), Device(0, "1.1.1.2")))], "lists a device id twice"),
    "ip-twice": ([Server("10.0.0.1", (Device(0, "1.1.1.1"), Device(1, "1.1.1.1")))], "lists a device IP twice"),
    "server-twice": ([Server("10.0.0.1", (Device(0, "1.1.1.1"),)), Server("10.0.0.1", (Device(0, "1.1.1.2"),))],
                     "server 10.0.0.1 appears twice"),
    "uneven": ([Server("10.0.0.1", (Device(0, "1.1.1.1"),)),
                Server("10.0.0.2", (Device(0, "1.1.1.2"), Device(1, "1.1.1.3")))], "same number of devices"),
    "no-server": ([], "at least one server"),
}


@pytest.mark.parametrize("servers, message", BAD.values(), ids=BAD.keys())
def test_invalid_tables_are_refused(servers, message):
    with pytest.raises(RankTableError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rank_table.build(servers)


def test_bad_sources():
    with pytest.raises(RankTableError, match="no 'address_<id>=<ip>' lines"):
        rank_table.parse_hccn_conf("netmask_0=255.255.255.0\n")
    with pytest.raises(RankTableError, match=r"no address for device\(s\) \[8\]"):
        rank_table.server_from_hccn_conf("address_0=1.1.1.1\n", "10.0.0.1", [0, 8])
    with pytest.raises(RankTableError, match="pod worker-0: the device plugin's annotation is not the expected JSON"):
        rank_table.server_from_annotation('{"server_id": "10.0.0.1"}', pod="worker-0")
    with pytest.raises(RankTableError, match="must look like 0,1,2,3 or 0-7"):
        rank_table.parse_device_list("zero")


def test_static_table_from_the_command_line(run, tmp_path):
    result = run("rank-table", "--hccn-conf", str(DATA / "hccn_server1.conf"), "--server-ip", "10.0.0.11",
                 "--hccn-conf", str(DATA / "hccn_server2.conf"), "--server-ip", "10.0.0.12")
    assert result.code == 0, result.err
    assert json.loads(result.out) == EXPECTED_2X8
    out = tmp_path / "hccl.json"
    result = run("rank-table", "--device-ips", ",".join(SERVER_1_IPS[:2]), "--server-ip", "10.0.0.11",
                 "--devices", "0,1", "-o", str(out))
    assert result.code == 0 and result.out == ""
    assert json.loads(out.read_text())["server_list"][0]["device"][1] == \
        {"device_id": "1", "device_ip": "192.168.101.11", "rank_id": "1"}


CLI_ERRORS = {
    "no-source": ([], "rank-table needs --fill JOB, --hccn-conf FILE or --device-ips"),
    "ip-count": (["--device-ips", "1.1.1.1", "--device-ips", "1.1.1.2", "--server-ip", "10.0.0.1"],
                 "give one --server-ip per --device-ips"),
    "missing-file": (["--hccn-conf", "/nonexistent/hccn.conf", "--server-ip", "10.0.0.1"],
                     "cannot read hccn.conf '/nonexistent/hccn.conf'"),
    "bad-ip": (["--device-ips", "1.1.1", "--server-ip", "10.0.0.1"], "'1.1.1' is not an IP address"),
}


@pytest.mark.parametrize("argv, message", CLI_ERRORS.values(), ids=CLI_ERRORS.keys())
def test_static_table_errors_are_one_line(run, argv, message):
    result = run("rank-table", *argv)
    assert result.code == 2
    assert result.err.startswith("error: ") and message in result.err
    assert result.err.count("\n") == 1
