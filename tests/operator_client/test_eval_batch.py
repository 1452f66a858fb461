"""eval-batch on the cluster: the rendered job's pods split the checkpoints without overlap or
gap; it validates; submit creates it in the API server; errors are one line."""
from __future__ import annotations

import pytest

from job.evaluation.batch import shard   # the job's own rule for a device's share
from operator_client.eval_batch import render_eval_batch
from operator_client.spec import JobSpec

from .validation import validate

CKPT = "/runs/exp/finetune/checkpoints/finetune-e{:03d}.ckpt"


def assignments(job):
    """What each (server, device) of the rendered job evaluates, by the job's own rule."""
    (container,) = job["spec"]["tasks"][0]["template"]["spec"]["containers"]
    cmd = container["command"]
    assert cmd[:4] == ["python", "-m", "job", "eval-batch"]
    ckpts = cmd[cmd.index("--checkpoints") + 1:cmd.index("--data")]
    devices = int(cmd[cmd.index("--devices") + 1])
    servers = int(cmd[cmd.index("--servers") + 1])
    assert servers == job["spec"]["tasks"][0]["replicas"] == job["spec"]["minAvailable"]
    total = servers * devices
    return {(s, d): shard(sorted(ckpts), s * devices + d, total)
            for s in range(servers) for d in range(devices)}, sorted(ckpts)


@pytest.mark.parametrize("count,servers", [(10, 1), (16, 2)], ids=["10-on-8-devices", "16-on-2-servers"])
def test_pods_split_the_checkpoints_without_overlap_or_gap(count, servers):
    ckpts = [CKPT.format(10 * i) for i in range(1, count + 1)]
    (job,) = render_eval_batch(JobSpec(loss="triplet", name="evb", servers=servers), ckpts)
    validate(job)
    shares, listed = assignments(job)
    assert listed == sorted(ckpts)
    flat = [c for share in shares.values() for c in share]
    assert sorted(flat) == sorted(ckpts) and len(flat) == len(set(flat))
    assert max(len(s) for s in shares.values()) == -(-count // (servers * 8))
    if count == 16:
        assert all(len(s) == 1 for s in shares.values())     # one checkpoint per device


def test_no_rank_table_no_cluster_env_and_force_passes_through():
    (job,) = render_eval_batch(JobSpec(loss="triplet", name="evb"), [CKPT.format(1)], split="test_half",
                               force=True)
    pod = job["spec"]["tasks"][0]["template"]
    (container,) = pod["spec"]["containers"]
    assert all(v["name"] != "ascend-910-config" for v in pod["spec"]["volumes"])
    assert not any(e["name"].startswith("MS_") for e in container["env"])
    assert container["command"][-3:] == ["--split", "test_half", "--force"]
    assert container["resources"]["limits"] == {"huawei.com/Ascend910": "8"}


def test_submit_creates_the_job(run, cluster):
    result = run("eval-batch", "--checkpoints", CKPT.format(10), CKPT.format(20), "--name", "evb",
                 "--servers", "1", *cluster.args())
    assert result.code == 0, result.err
    assert result.out == "evb\n"
    stored = cluster.player.job("evb")
    assert stored["metadata"]["labels"]["sop-metric-job/kind"] == "eval-batch"


@pytest.mark.parametrize("args,message", [
    (["--checkpoints", "runs/x.ckpt"], "must be a path as the pods see it"),
    (["--checkpoints", CKPT.format(1), "--devices-per-server", "3"], "--devices-per-server must be 1, 2, 4 or 8"),
], ids=["relative-path", "bad-devices"])
def test_errors(run, args, message):
    result = run("eval-batch", "--render", *args)
    assert result.code == 2 and message in result.err and result.err.count("\n") == 1
