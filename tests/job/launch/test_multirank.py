"""Two ranks through msrun on CPU train a few triplet steps: both hold identical weights, and
they equal one rank averaging the same two global batches per step (micro_batches=2)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

from job import checkpoints  # noqa: E402
from job.launch import free_port  # noqa: E402
from job.model.net import MetricNet, NetSpec  # noqa: E402
from tests.conftest import TINY  # noqa: E402

ARGS = ["train", "--stage", "finetune", "--loss", "triplet", "--profile", "cpu", *TINY,
        "--set", "epochs=1", "--set", "max_steps_per_epoch=3", "--set", "lr_max=0.05"]
MAIN = str(Path(__file__).resolve().parents[3] / "job" / "__main__.py")


def trainable(ckpt):
    params, _ = checkpoints.load(ckpt, verified=True)
    net = MetricNet(NetSpec("resnet-mini", 0, 0, 32))
    names = {p.name for p in net.trainable_params()}
    return {k: v.asnumpy() for k, v in params.items() if k in names}


@pytest.fixture(scope="module")
def init_ckpt(tmp_path_factory):
    net = MetricNet(NetSpec("resnet-mini", 0, 0, 32), seed=9)
    path = tmp_path_factory.mktemp("init") / "init-e000.ckpt"
    return checkpoints.save(net, path, {"net": net.spec.to_dict()})


def test_two_ranks_equal_one_rank_over_the_same_global_batches(tiny_demo, init_ckpt, tmp_path):
    two = tmp_path / "two"
    logs = tmp_path / "msrun-logs"
    cmd = ["msrun", "--worker_num=2", "--local_worker_num=2", f"--master_port={free_port()}",
           f"--log_dir={logs}", "--join=True", MAIN, *ARGS, "--data", str(tiny_demo),
           "--run-dir", str(two), "--init", str(init_ckpt)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "GLOG_v": "3"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    digests = {}
    for i in (0, 1):
        text = (logs / f"worker_{i}.log").read_text()
        assert "2 ranks x 1 x batch 16" in text
        digests[i] = re.findall(r"trainable weights sha256 ([0-9a-f]{64})", text)
    assert len(digests[0]) == 1 and digests[0] == digests[1], "the ranks' weights differ"

    one = tmp_path / "one"
    r = subprocess.run([sys.executable, "-m", "job", *ARGS, "--set", "micro_batches=2",
                        "--data", str(tiny_demo), "--run-dir", str(one), "--init", str(init_ckpt)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    w2 = trainable(checkpoints.latest(two / "finetune" / "checkpoints"))
    w1 = trainable(checkpoints.latest(one / "finetune" / "checkpoints"))
    w0 = trainable(init_ckpt)
    assert w2.keys() == w1.keys() and len(w2) > 10
    moved = max(float(np.abs(w2[k] - w0[k]).max()) for k in w2)
    assert moved > 1e-3, "training did not change the weights"
    for k in w2:
        np.testing.assert_allclose(w2[k], w1[k], rtol=1e-4, atol=1e-6, err_msg=k)
