"""The per-pod launcher against a rank table for 1 server x 2 devices, with stand-in worker
processes (HCCL itself needs Ascend): waits for "completed" written late, starts one process
per device with the right environment, prefixes their output, fails fast, forwards SIGTERM."""
import io
import json
import os
import signal
import sys
import threading
import time

import pytest

from job import launch
from job.errors import ConfigError, JobError

from tests.job.launch.test_rank_table import table

WORKER = r"""
import json, os, sys, time
keys = ["RANK_TABLE_FILE", "RANK_SIZE", "RANK_ID", "DEVICE_ID"]
print("ENV " + json.dumps({k: os.environ.get(k) for k in keys}), flush=True)
behaviour = os.environ.get("BEHAVIOUR_RANK_" + os.environ["RANK_ID"], "ok")
if behaviour == "fail":
    sys.exit(1)
if behaviour == "hang":
    time.sleep(120)
"""


def stand_in(stage, opts):
    return [sys.executable, "-c", WORKER]


def _opts(tmp_path, rank_table_path, stages=("pretrain",)):
    return launch.LaunchOptions(stages=list(stages), loss="triplet", data=tmp_path,
                                run_dir=tmp_path / "run", mode="rank-table",
                                rank_table=rank_table_path, devices_per_server=2,
                                rank_table_timeout=30)


def _write_later(path, doc, delay):
    def go():
        time.sleep(delay)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(path)
    t = threading.Thread(target=go)
    t.start()
    return t


def test_waits_for_completed_then_starts_one_process_per_device(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(launch, "stage_argv", stand_in)
    path = tmp_path / "hccl.json"
    path.write_text('{"status":"initializing"}')
    writer = _write_later(path, table(1, 2), delay=1.5)
    out = io.StringIO()
    caplog.set_level("INFO", logger="job.launch")
    t0 = time.monotonic()
    code = launch.run(_opts(tmp_path, path), env={**os.environ, "VC_TASK_INDEX": "0"}, out=out)
    writer.join()
    assert code == 0
    assert time.monotonic() - t0 >= 1.5                       # it really waited
    assert "waiting for rank table" in caplog.text and "initializing" in caplog.text
    envs = {}
    for line in out.getvalue().splitlines():
        prefix, _, rest = line.partition("] ")
        if rest.startswith("ENV "):
            envs[prefix + "]"] = json.loads(rest[4:])
    assert envs == {
        "[rank 0]": {"RANK_TABLE_FILE": str(path), "RANK_SIZE": "2", "RANK_ID": "0", "DEVICE_ID": "0"},
        "[rank 1]": {"RANK_TABLE_FILE": str(path), "RANK_SIZE": "2", "RANK_ID": "1", "DEVICE_ID": "1"},
    }


def test_second_server_gets_global_ranks(tmp_path, monkeypatch):
    monkeypatch.setattr(launch, "stage_argv", stand_in)
    path = tmp_path / "hccl.json"
    path.write_text(json.dumps(table(2, 2)))
    out = io.StringIO()
    code = launch.run(_opts(tmp_path, path), env={**os.environ, "HOST_IP": "10.0.0.2"}, out=out)
    assert code == 0
    ranks = sorted(json.loads(l.split("ENV ", 1)[1])["RANK_ID"] for l in out.getvalue().splitlines() if "ENV " in l)
    assert ranks == ["2", "3"]


def test_a_failing_rank_stops_the_others_promptly(tmp_path, monkeypatch):
    monkeypatch.setattr(launch, "stage_argv", stand_in)
    path = tmp_path / "hccl.json"
    path.write_text(json.dumps(table(1, 2)))
    env = {**os.environ, "VC_TASK_INDEX": "0", "BEHAVIOUR_RANK_0": "hang", "BEHAVIOUR_RANK_1": "fail"}
    t0 = time.monotonic()
    code = launch.run(_opts(tmp_path, path, stages=("pretrain", "finetune")), env=env, out=io.StringIO())
    assert code == 1
    assert time.monotonic() - t0 < 20          # rank 0 would sleep 120 s


def test_sigterm_is_forwarded(tmp_path, monkeypatch):
    monkeypatch.setattr(launch, "stage_argv", stand_in)
    path = tmp_path / "hccl.json"
    path.write_text(json.dumps(table(1, 2)))
    env = {**os.environ, "VC_TASK_INDEX": "0", "BEHAVIOUR_RANK_0": "hang", "BEHAVIOUR_RANK_1": "hang"}
    threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
    t0 = time.monotonic()
    code = launch.run(_opts(tmp_path, path), env=env, out=io.StringIO())
    assert code == 128 + signal.SIGTERM
    assert time.monotonic() - t0 < 20


def test_rank_table_timeout_says_what_to_check(tmp_path):
    path = tmp_path / "hccl.json"
    path.write_text('{"status":"initializing"}')
    with pytest.raises(JobError, match="still 'initializing'.*rank-table --fill"):
        launch.wait_for_rank_table(path, timeout=0.5, poll=0.1)


def test_device_count_mismatch(tmp_path):
    path = tmp_path / "hccl.json"
    path.write_text(json.dumps(table(1, 4)))
    with pytest.raises(JobError, match="4 devices but --devices-per-server is 2"):
        launch.build_topology(_opts(tmp_path, path), env={"VC_TASK_INDEX": "0"})


def test_dynamic_topology_env():
    topo = launch.dynamic_topology(host="job-worker-0.job", port=8118, worker_num=16, node_rank=1,
                                   local_workers=8)
    assert topo.scheduler is None                     # only server 0 runs the scheduler
    assert [e["MS_NODE_ID"] for e in topo.local] == [str(r) for r in range(8, 16)]
    assert {e["MS_ROLE"] for e in topo.local} == {"MS_WORKER"}
    assert topo.local[3]["DEVICE_ID"] == "3" and topo.local[3]["MS_WORKER_NUM"] == "16"
    head = launch.dynamic_topology(host="h", port=1, worker_num=2, node_rank=0, local_workers=2)
    assert head.scheduler["MS_ROLE"] == "MS_SCHED"


@pytest.mark.parametrize("text,ok", [("pretrain,finetune,eval", True), ("eval", True),
                                     ("finetune,pretrain", False), ("train", False), ("", False)])
def test_parse_stages(text, ok):
    if ok:
        assert launch.parse_stages(text) == text.split(",")
    else:
        with pytest.raises(ConfigError):
            launch.parse_stages(text)


def test_a_stale_table_without_this_host_is_not_used(tmp_path, monkeypatch, caplog):
    """After a restart the mounted table may still be the previous gang's: wait for ours."""
    monkeypatch.setattr(launch, "stage_argv", stand_in)
    path = tmp_path / "hccl.json"
    stale = table(1, 2)
    stale["server_list"][0]["server_id"] = "10.9.9.9"
    path.write_text(json.dumps(stale))
    writer = _write_later(path, table(1, 2), delay=1.5)          # server 10.0.0.1
    caplog.set_level("INFO", logger="job.launch")
    out = io.StringIO()
    code = launch.run(_opts(tmp_path, path), env={**os.environ, "HOST_IP": "10.0.0.1"}, out=out)
    writer.join()
    assert code == 0 and "(stale?)" in caplog.text
    assert out.getvalue().count("ENV ") == 2
