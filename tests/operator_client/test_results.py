"""`results` on fixture metrics files: the expected table, CSV, Markdown, and PNG plots."""
import json
import struct

import pytest

from operator_client import results
from operator_client.errors import ClientError


def _eval(path, *, run, stage, loss, epoch, r1, mapr, split="test"):
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = f"/runs/{run}/{stage}/checkpoints/{stage}-e{epoch:03d}.ckpt"
    path.write_text(json.dumps({
        "recall@1": r1, "recall@10": r1 + 0.1, "recall@100": r1 + 0.2, "recall@1000": 1.0,
        "map@r": mapr, "num_queries": 100, "checkpoint": ckpt, "stage": stage, "epoch": epoch,
        "loss": loss, "split": split}))


@pytest.fixture
def runs(tmp_path):
    tri, quad = tmp_path / "tri", tmp_path / "quad"
    for epoch, r1, m in [(10, 0.61, 0.30), (20, 0.70, 0.35), (30, 0.739, 0.38)]:
        _eval(tri / "finetune" / "checkpoints" / f"finetune-e{epoch:03d}.test.metrics.json",
              run="tri", stage="finetune", loss="triplet-batch-hard", epoch=epoch, r1=r1, mapr=m)
    # the launcher's eval of the newest checkpoint duplicates eval-batch's: one row only
    _eval(tri / "eval" / "metrics.json", run="tri", stage="finetune", loss="triplet-batch-hard",
          epoch=30, r1=0.739, mapr=0.38)
    _eval(quad / "eval" / "metrics.json", run="quad", stage="finetune", loss="quadruplet-chen",
          epoch=30, r1=0.743, mapr=0.39)
    _eval(quad / "eval" / "pretrain.metrics.json", run="quad", stage="pretrain", loss="softmax",
          epoch=30, r1=0.5, mapr=0.2)
    (tri / "finetune" / "metrics.json").write_text(json.dumps(
        {"history": [{"epoch": e, "loss": 0.4 / e} for e in range(1, 31)]}))
    (quad / "pretrain").mkdir()
    (quad / "pretrain" / "metrics.json").write_text(json.dumps(
        {"history": [{"epoch": e, "loss": 8.5 - e * 0.1} for e in range(1, 31)]}))
    return tri, quad


EXPECTED_TABLE = """\
run   stage     loss                epoch  split  recall@1  recall@10  recall@100  recall@1000   map@r
quad  pretrain  softmax                30  test     0.5000     0.6000      0.7000       1.0000  0.2000
quad  finetune  quadruplet-chen        30  test     0.7430     0.8430      0.9430       1.0000  0.3900
tri   finetune  triplet-batch-hard     10  test     0.6100     0.7100      0.8100       1.0000  0.3000
tri   finetune  triplet-batch-hard     20  test     0.7000     0.8000      0.9000       1.0000  0.3500
tri   finetune  triplet-batch-hard     30  test     0.7390     0.8390      0.9390       1.0000  0.3800"""


def test_table(runs):
    res = results.gather(list(runs))
    assert results.table(res.rows) == EXPECTED_TABLE
    assert results.best(res.rows)["run"] == "quad"


def test_csv_and_markdown(runs):
    rows = results.gather(list(runs)).rows
    csv_text = results.to_csv(rows)
    lines = csv_text.splitlines()
    assert lines[0] == "run,stage,loss,epoch,split,recall@1,recall@10,recall@100,recall@1000,map@r,checkpoint"
    assert lines[3] == ("tri,finetune,triplet-batch-hard,10,test,0.61,0.71,0.81,1.0,0.3,"
                        "/runs/tri/finetune/checkpoints/finetune-e010.ckpt")
    assert len(lines) == 6
    md = results.to_markdown(rows).splitlines()
    assert md[0].startswith("| run | stage | loss | epoch |") and md[1].startswith("|---|---|---|---:|")
    assert md[2] == "| quad | pretrain | softmax | 30 | test | 0.5000 | 0.6000 | 0.7000 | 1.0000 | 0.2000 |"


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_plots_are_pngs_of_the_expected_size(runs, tmp_path):
    res = results.gather(list(runs))
    files = results.plot(res, tmp_path / "plots")
    assert [f.name for f in files] == ["recall_vs_epoch.png", "loss_curves.png"]
    size = (int(results.PLOT_SIZE[0] * results.PLOT_DPI), int(results.PLOT_SIZE[1] * results.PLOT_DPI))
    for f in files:
        assert _png_size(f) == size


def test_nothing_found_is_a_clear_error(tmp_path):
    with pytest.raises(ClientError, match="no metrics found"):
        results.gather([tmp_path])
    with pytest.raises(ClientError, match="no such run directory"):
        results.gather([tmp_path / "missing"])
