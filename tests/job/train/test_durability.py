"""Resume after a kill, damaged checkpoints, config changes, finished stages, divergence."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

from job import checkpoints  # noqa: E402
from tests.conftest import TINY  # noqa: E402

ARGS = ["train", "--stage", "pretrain", "--profile", "cpu", *TINY, "--set", "epochs=4",
        "--set", "save_checkpoint_epochs=1", "--set", "keep_checkpoint_max=4"]


def train(data, run, *extra, timeout=600):
    return subprocess.run([sys.executable, "-m", "job", *ARGS, *extra, "--data", str(data),
                           "--run-dir", str(run)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def uninterrupted(tiny_demo, tmp_path_factory):
    run = tmp_path_factory.mktemp("full")
    r = train(tiny_demo, run)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return run


def _weights(path):
    params, _ = checkpoints.load(path, verified=True)
    return {k: v.asnumpy() for k, v in params.items()}


def test_killed_run_resumes_and_matches_uninterrupted(tiny_demo, uninterrupted, tmp_path):
    run = tmp_path / "killed"
    manifest = run / "pretrain" / "checkpoints" / "resume.ckpt.json"
    proc = subprocess.Popen([sys.executable, "-m", "job", *ARGS, "--data", str(tiny_demo),
                             "--run-dir", str(run)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not manifest.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = json.loads(manifest.read_text())
    assert saved["epoch"] < 4, "the run finished before it could be killed"

    r = train(tiny_demo, run)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming pretrain from {manifest.with_suffix('')}: epoch {saved['epoch'] + 1}" in r.stdout
    done = json.loads((run / "pretrain" / "metrics.json").read_text())
    ref = json.loads((uninterrupted / "pretrain" / "metrics.json").read_text())
    assert done["resumed_from_step"] == saved["global_step"]
    assert [h["step"] for h in done["history"]] == [h["step"] for h in ref["history"]]
    # MindSpore 2.8 on CPU is bit-deterministic here, so the resumed run equals the
    # uninterrupted one exactly (weights, BN statistics), not just approximately.
    a = _weights(run / "pretrain" / "checkpoints" / "pretrain-e004.ckpt")
    b = _weights(uninterrupted / "pretrain" / "checkpoints" / "pretrain-e004.ckpt")
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert done["weights_sha256"] == ref["weights_sha256"]


def test_finished_stage_is_skipped(tiny_demo, uninterrupted):
    r = train(tiny_demo, uninterrupted)
    assert r.returncode == 0 and "already finished" in r.stdout


def test_changed_config_is_refused_then_forced(tiny_demo, uninterrupted, tmp_path):
    r = train(tiny_demo, uninterrupted, "--set", "margin=0.3", "--set", "lr_max=0.2")
    assert r.returncode == 2
    assert "was started with another config" in r.stderr and "lr_max 0.1 -> 0.2" in r.stderr
    assert "--force-new" in r.stderr


def test_force_new_moves_the_old_stage_aside(tiny_demo, tmp_path):
    run = tmp_path / "r"
    assert train(tiny_demo, run, "--set", "epochs=1").returncode == 0
    r = train(tiny_demo, run, "--set", "epochs=2", "--force-new")
    assert r.returncode == 0, r.stderr[-2000:]
    assert any(p.name.startswith("pretrain.old-") for p in run.iterdir())
    assert json.loads((run / "pretrain" / "metrics.json").read_text())["epochs"] == 2


def test_truncated_checkpoint_is_skipped(uninterrupted, tmp_path, caplog):
    import shutil
    ckpts = tmp_path / "c"
    shutil.copytree(uninterrupted / "pretrain" / "checkpoints", ckpts)
    newest = ckpts / "pretrain-e004.ckpt"
    newest.write_bytes(newest.read_bytes()[:1000])
    caplog.set_level("WARNING", logger="job.checkpoints")
    assert checkpoints.latest(ckpts) == ckpts / "pretrain-e003.ckpt"
    assert "skipping checkpoint" in caplog.text and "truncated" in caplog.text
    with pytest.raises(checkpoints.CorruptCheckpoint):
        checkpoints.load(newest, verified=True)


def test_truncated_resume_state_starts_over(tiny_demo, tmp_path):
    run = tmp_path / "r"
    assert train(tiny_demo, run, "--set", "epochs=1").returncode == 0
    resume = run / "pretrain" / "checkpoints" / "resume.ckpt"
    resume.write_bytes(resume.read_bytes()[:500])
    (run / "pretrain" / "metrics.json").unlink()        # pretend the run died before the end
    r = train(tiny_demo, run, "--set", "epochs=1")
    assert r.returncode == 0
    assert "ignoring the resume state" in r.stdout and "starting the stage from scratch" in r.stdout


def test_non_finite_loss_stops_with_a_hint(tiny_demo, tmp_path):
    r = train(tiny_demo, tmp_path / "r", "--set", "lr_max=1e30", "--set", "lr_schedule=const",
              "--set", "epochs=1")
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: loss is nan") or last.startswith("error: loss is inf"), last
    assert "lower lr_max" in last
