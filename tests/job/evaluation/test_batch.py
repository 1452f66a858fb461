"""eval-batch: shards cover the checkpoints without overlap or gap; two tiny checkpoints
are evaluated end to end by two device processes; evaluated ones are skipped."""
import json
import subprocess
import sys

import pytest

from job.evaluation.batch import expand_checkpoints, metrics_path, shard


@pytest.mark.parametrize("n,servers,devices", [(10, 1, 8), (16, 2, 8), (3, 1, 8), (17, 2, 4)],
                         ids=["10-on-8", "16-on-2x8", "3-on-8", "17-on-2x4"])
def test_shards_partition_the_list(n, servers, devices):
    items = list(range(n))
    total = servers * devices
    parts = [shard(items, i, total) for i in range(total)]
    flat = [x for p in parts for x in p]
    assert sorted(flat) == items and len(flat) == len(set(flat))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_expand_run_dir_picks_epoch_checkpoints_only(tmp_path):
    ck = tmp_path / "run" / "finetune" / "checkpoints"
    ck.mkdir(parents=True)
    for name in ("finetune-e001.ckpt", "finetune-e002.ckpt", "resume.ckpt", ".x.tmp-1.ckpt"):
        (ck / name).write_bytes(b"x")
    assert [p.name for p in expand_checkpoints([str(tmp_path / "run")])] == \
        ["finetune-e001.ckpt", "finetune-e002.ckpt"]
    assert len(expand_checkpoints([str(ck / "finetune-e00*.ckpt"), str(ck / "finetune-e001.ckpt")])) == 2


@pytest.mark.parametrize("arg", ["nosuch.ckpt", "nothing/*.ckpt"])
def test_bad_checkpoint_arguments(arg, tmp_path):
    from job.errors import JobError
    with pytest.raises(JobError):
        expand_checkpoints([str(tmp_path / arg)])


@pytest.fixture(scope="module")
def two_checkpoints(tiny_demo, tmp_path_factory):
    pytest.importorskip("mindspore")
    run = tmp_path_factory.mktemp("batch-run")
    r = subprocess.run([sys.executable, "-m", "job", "train", "--stage", "pretrain", "--profile", "cpu",
                        "--data", str(tiny_demo), "--run-dir", str(run), "--set", "image_size=32",
                        "--set", "batch_size=16", "--set", "epochs=2", "--set", "max_steps_per_epoch=3",
                        "--set", "save_checkpoint_epochs=1"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return run


def _batch(data, run, *extra):
    return subprocess.run([sys.executable, "-m", "job", "eval-batch", "--checkpoints", str(run),
                           "--data", str(data), "--devices", "2", *extra],
                          capture_output=True, text=True, timeout=600)


def test_two_devices_evaluate_two_checkpoints_then_skip(tiny_demo, two_checkpoints):
    ckpts = expand_checkpoints([str(two_checkpoints)])
    assert len(ckpts) == 2
    r = _batch(tiny_demo, two_checkpoints)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "[shard 0] " in r.stdout and "[shard 1] " in r.stdout
    for c in ckpts:
        m = json.loads(metrics_path(c, "test").read_text())
        assert m["checkpoint"] == str(c) and m["split"] == "test" and len(m["checkpoint_sha256"]) == 64
        assert 0.0 <= m["recall@1"] <= 1.0 and m["num_queries"] > 0
    again = _batch(tiny_demo, two_checkpoints)
    assert again.returncode == 0 and again.stdout.count("already evaluated on test; skipping") == 2
    forced = _batch(tiny_demo, two_checkpoints, "--force")
    assert forced.returncode == 0 and forced.stdout.count("result: {'acc'") == 2
