"""`python -m job launch --local --ranks 2`: real MindSpore ranks on CPU through the same
launcher a rank pod runs; a second launch skips every finished stage."""
import json
import subprocess
import sys

import pytest

pytest.importorskip("mindspore")

from tests.conftest import TINY  # noqa: E402


def launch(data, run):
    return subprocess.run(
        [sys.executable, "-m", "job", "launch", "--local", "--ranks", "2",
         "--stages", "pretrain,finetune,eval", "--loss", "quadruplet", "--data", str(data),
         "--run-dir", str(run), *TINY, "--set", "epochs=1", "--set", "max_steps_per_epoch=4"],
        capture_output=True, text=True, timeout=600)


def test_local_two_ranks_then_resume_skips(tiny_demo, tmp_path):
    run = tmp_path / "run"
    r = launch(tiny_demo, run)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    for rank in (0, 1):
        assert f"[rank {rank}] " in out and f"rank{rank} INFO epoch 1/1 done" in out
    assert "quadruplet-chen" in out and "2 ranks x 1 x batch 16" in out
    assert "[rank 0] result: {'acc':" in out
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["checkpoint"].endswith("finetune-e001.ckpt") and metrics["num_queries"] > 0
    assert json.loads((run / "finetune" / "metrics.json").read_text())["ranks"] == 2

    again = launch(tiny_demo, run)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("already finished") == 4          # 2 stages x 2 ranks
    assert "already holds the newest checkpoint's metrics; skipping" in again.stdout
