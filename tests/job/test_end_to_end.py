"""softmax -> triplet -> eval on tiny demo data through the real CLI, on CPU.

Training must beat the untrained network's Recall@1 on held-out classes, and the exported
MINDIR must compute the same features as the checkpoint."""
import json

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

from job import checkpoints  # noqa: E402
from job.cli import main  # noqa: E402
from job.data import make_demo_data  # noqa: E402
from job.model.net import MetricNet, NetSpec  # noqa: E402

SMALL = ["--set", "image_size=32", "--set", "batch_size=32", "--set", "num_workers=2"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    make_demo_data(root, train_classes=60, test_classes=60, image_size=32, seed=3)
    return root


@pytest.fixture(scope="module")
def trained(demo, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    assert main(["train", "--stage", "pretrain", "--data", str(demo), "--run-dir", str(run),
                 "--profile", "cpu", "--set", "epochs=6", *SMALL]) == 0
    assert main(["train", "--stage", "finetune", "--loss", "triplet", "--data", str(demo),
                 "--run-dir", str(run), "--profile", "cpu", "--set", "epochs=4", *SMALL]) == 0
    assert main(["eval", "--data", str(demo), "--run-dir", str(run), "--show", "4"]) == 0
    return run


def test_run_directory_layout(trained):
    for stage in ("pretrain", "finetune"):
        d = trained / stage
        assert (d / "config.yaml").is_file() and (d / "train.log").is_file()
        m = json.loads((d / "metrics.json").read_text())
        assert m["stage"] == stage and len(m["history"]) == m["epochs"]
        assert all(np.isfinite(h["loss"]) for h in m["history"])
        assert checkpoints.latest(d / "checkpoints") is not None
    assert "epoch 1/6 step" in (trained / "pretrain" / "train.log").read_text()
    pre = json.loads((trained / "pretrain" / "metrics.json").read_text())
    assert pre["history"][-1]["loss"] < pre["history"][0]["loss"]


def test_trained_beats_untrained(trained, demo, tmp_path):
    metrics = json.loads((trained / "eval" / "metrics.json").read_text())
    assert set(metrics) >= {"recall@1", "recall@10", "recall@100", "recall@1000", "map@r",
                            "num_queries", "checkpoint"}
    assert metrics["checkpoint"].endswith("finetune-e004.ckpt")
    # the same architecture, untrained
    net = MetricNet(NetSpec("resnet-mini", 0, 0, 32), seed=1)
    untrained = checkpoints.save(net, tmp_path / "untrained-e000.ckpt",
                                 {"net": net.spec.to_dict(), "config": {"eval_split": "test"}})
    out = tmp_path / "untrained.json"
    assert main(["eval", "--data", str(demo), "--checkpoint", str(untrained), "--out", str(out)]) == 0
    base = json.loads(out.read_text())
    assert metrics["num_queries"] == base["num_queries"] > 0
    assert metrics["recall@1"] > base["recall@1"] + 0.05, (metrics["recall@1"], base["recall@1"])
    assert metrics["map@r"] > base["map@r"]


def test_export_mindir_matches_checkpoint(trained, tmp_path):
    out = tmp_path / "model.mindir"
    assert main(["export", "--run-dir", str(trained), "--out", str(out)]) == 0
    assert out.is_file()
    from job.evaluation.evaluate import build_net_from_checkpoint
    net, spec, _ = build_net_from_checkpoint(checkpoints.latest(trained / "finetune" / "checkpoints"))
    x = np.random.default_rng(0).normal(size=(1, 3, 32, 32)).astype(np.float32)
    graph = ms.nn.GraphCell(ms.load(str(out)))
    np.testing.assert_allclose(graph(ms.Tensor(x)).asnumpy(), net(ms.Tensor(x)).asnumpy(),
                               rtol=1e-4, atol=1e-5)
    assert graph(ms.Tensor(x)).shape == (1, 128)


def test_retrieval_grid_png(trained):
    from PIL import Image

    png = trained / "eval" / "retrieval.png"
    assert json.loads((trained / "eval" / "metrics.json").read_text())["retrieval_grid"] == str(png)
    with Image.open(png) as im:
        assert im.format == "PNG"
        assert im.size == ((5 + 1) * 96 + 96 // 4, 4 * 96)
        rgb = np.asarray(im.convert("RGB")).astype(int)
    # every neighbour tile has a green or red frame: sample the top-left frame pixel of each
    frames = [tuple(rgb[r * 96 + 3, 96 + 24 + c * 96 + 3]) for r in range(4) for c in range(5)]
    assert all(f in ((40, 170, 60), (210, 40, 40)) for f in frames), frames
