"""The job's rank-table reader: every rule gets a message naming the field."""
import copy
import json

import pytest

from job import rank_table
from job.rank_table import RankTableError


def table(servers=1, devices=2):
    rank = 0
    server_list = []
    for s in range(servers):
        devs = []
        for d in range(devices):
            devs.append({"device_id": str(d), "device_ip": f"192.98.{s}.{d + 10}", "rank_id": str(rank)})
            rank += 1
        server_list.append({"server_id": f"10.0.0.{s + 1}", "device": devs, "host_nic_ip": "reserve"})
    return {"version": "1.0", "server_count": str(servers), "server_list": server_list,
            "status": "completed"}


def test_valid_table():
    servers = rank_table.validate(table(2, 8))
    assert [s.server_id for s in servers] == ["10.0.0.1", "10.0.0.2"]
    assert rank_table.rank_size(servers) == 16
    assert [d.rank_id for d in servers[1].devices] == list(range(8, 16))


def _mutate(fn):
    t = table(2, 2)
    fn(t)
    return t


BAD = {
    "initializing": (lambda t: t.update(status="initializing"), "not \"completed\""),
    "int-values": (lambda t: t["server_list"][0]["device"][0].update(rank_id=0), "must be a string"),
    "count-mismatch": (lambda t: t.update(server_count="3"), "server_list has 2 servers"),
    "dup-rank": (lambda t: t["server_list"][1]["device"][0].update(rank_id="0"), "duplicated [0]"),
    "gap-rank": (lambda t: t["server_list"][1]["device"][1].update(rank_id="7"), "cover 0..3"),
    "version": (lambda t: t.update(version="2.0"), "only format \"1.0\""),
    "no-devices": (lambda t: t["server_list"][0].update(device=[]), "non-empty list"),
    "dup-server": (lambda t: t["server_list"][1].update(server_id="10.0.0.1"), "appears twice"),
    "missing-ip": (lambda t: t["server_list"][0]["device"][1].pop("device_ip"), "missing \"device_ip\""),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_tables_say_what_is_wrong(case):
    mutate, message = BAD[case]
    with pytest.raises(RankTableError, match=message.replace("[", r"\[").replace("]", r"\]")):
        rank_table.validate(_mutate(mutate))


def test_read_names_the_file(tmp_path):
    f = tmp_path / "hccl.json"
    f.write_text("{not json")
    with pytest.raises(RankTableError, match="hccl.json is not valid JSON"):
        rank_table.read(f)
    f.write_text(json.dumps(_mutate(lambda t: t.update(server_count="1"))))
    with pytest.raises(RankTableError, match=r"hccl.json: server_count"):
        rank_table.read(f)


def test_find_server_by_host_ip_pod_ip_or_index():
    servers = rank_table.validate(table(3, 1))
    assert rank_table.find_server(servers, host_ip="10.0.0.2").index == 1
    assert rank_table.find_server(servers, host_ip="1.1.1.1", pod_ip="10.0.0.3").index == 2
    assert rank_table.find_server(servers, index=0).index == 0
    with pytest.raises(RankTableError, match="no server_id"):
        rank_table.find_server(servers, host_ip="1.1.1.1")
    with pytest.raises(RankTableError, match="outside"):
        rank_table.find_server(servers, index=5)


def test_status_of_tolerates_partial_files(tmp_path):
    f = tmp_path / "hccl.json"
    assert rank_table.status_of(f) is None
    f.write_text('{"status": "initia')
    assert rank_table.status_of(f) is None
    f.write_text('{"status": "initializing"}')
    assert rank_table.status_of(f) == "initializing"
    assert copy.deepcopy(table())["status"] == "completed"


@pytest.mark.parametrize("servers,devices", [(1, 1), (1, 8), (2, 8), (4, 8)])
def test_tables_the_client_builds_pass_the_jobs_reader(servers, devices):
    """One format, two sides: whatever operator_client writes, job reads."""
    from operator_client import rank_table as writer

    built = writer.build([writer.server_from_ips(f"10.0.0.{s + 1}",
                                                 [f"192.168.{d}.{s + 1}" for d in range(devices)])
                          for s in range(servers)])
    parsed = rank_table.validate(json.loads(writer.dumps(built)))
    assert [srv.server_id for srv in parsed] == [f"10.0.0.{s + 1}" for s in range(servers)]
    assert [d.rank_id for srv in parsed for d in srv.devices] == list(range(servers * devices))
