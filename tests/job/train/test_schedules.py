import math

import numpy as np
import pytest

from job.errors import ConfigError
from job.train.schedules import lr_schedule


def test_steps_matches_reference_boundaries():
    lr = lr_schedule("steps", total_steps=100, lr_max=0.3)
    assert lr[0] == pytest.approx(0.3) and lr[39] == pytest.approx(0.3)
    assert lr[40] == pytest.approx(0.03) and lr[79] == pytest.approx(0.03)
    assert lr[80] == pytest.approx(0.003) and lr[99] == pytest.approx(0.003)


def test_const():
    assert np.allclose(lr_schedule("const", total_steps=7, lr_max=1e-4), 1e-4)


@pytest.mark.parametrize("mode,formula", [
    ("poly", lambda t: 0.001 + (0.1 - 0.001) * (1 - t) ** 2),
    ("cosine", lambda t: 0.001 + (0.1 - 0.001) * 0.5 * (1 + math.cos(math.pi * t))),
    ("linear", lambda t: 0.1 + (0.001 - 0.1) * t),
], ids=["poly", "cosine", "linear"])
def test_decays_after_warmup(mode, formula):
    lr = lr_schedule(mode, total_steps=50, lr_max=0.1, lr_init=0.0, lr_end=0.001, warmup_steps=10)
    np.testing.assert_allclose(lr[:10], 0.1 * np.arange(1, 11) / 10, rtol=1e-6)
    expected = [formula(i / 40) for i in range(40)]
    np.testing.assert_allclose(lr[10:], expected, rtol=1e-5)


def test_unknown_mode_and_empty():
    with pytest.raises(ConfigError, match="cosine"):
        lr_schedule("exp", total_steps=3, lr_max=1)
    with pytest.raises(ConfigError):
        lr_schedule("const", total_steps=0, lr_max=1)


def test_the_compiled_step_follows_the_schedule(tiny_demo, tmp_path):
    """Regression: Parameter.set_data on the learning rate is invisible to a compiled step;
    the trainer must change it in place. Train with lr 0 for one epoch: weights must not move
    (beyond weight decay, which we also zero)."""
    pytest.importorskip("mindspore")
    from job.cli import main
    from job import checkpoints
    from job.model.net import MetricNet, NetSpec

    run = tmp_path / "r"
    args = ["train", "--stage", "pretrain", "--profile", "cpu", "--data", str(tiny_demo),
            "--run-dir", str(run), "--set", "image_size=32", "--set", "batch_size=16",
            "--set", "epochs=2", "--set", "lr_schedule=steps", "--set", "lr_max=0.5",
            "--set", "warmup_epochs=0", "--set", "max_steps_per_epoch=5", "--set", "save_checkpoint_epochs=1"]
    assert main(args) == 0
    hist = __import__("json").loads((run / "pretrain" / "metrics.json").read_text())["history"]
    # 10 steps: 0.5 for the first 4, 0.05 until step 8, then 0.005 (logged per epoch end)
    assert hist[0]["lr"] == pytest.approx(0.05) and hist[1]["lr"] == pytest.approx(0.005)
    e1, _ = checkpoints.load(run / "pretrain" / "checkpoints" / "pretrain-e001.ckpt")
    e2, _ = checkpoints.load(run / "pretrain" / "checkpoints" / "pretrain-e002.ckpt")
    net = MetricNet(NetSpec("resnet-mini", 0, 0, 32), seed=1)
    w0 = {p.name: p.asnumpy() for p in net.trainable_params()}
    first = max(float(np.abs(e1[k].asnumpy() - w0[k]).max()) for k in w0)
    second = max(float(np.abs(e2[k].asnumpy() - e1[k].asnumpy()).max()) for k in w0)
    # epoch 2 ran at 1/10 to 1/100 of epoch 1's rate: its updates are far smaller
    assert second < first / 3, (first, second)
