"""User errors: one `error:` line on stderr, exit code 2, no traceback."""
import subprocess
import sys

import pytest

pytest.importorskip("mindspore")


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "job", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from job.data import make_demo_data
    root = tmp_path_factory.mktemp("d")
    make_demo_data(root, train_classes=12, test_classes=12, image_size=32)
    return root


@pytest.mark.parametrize("args,message", [
    (["train", "--stage", "pretrain", "--data", "{missing}", "--run-dir", "{tmp}/r"], "is not a directory"),
    (["train", "--stage", "pretrain", "--data", "{demo}", "--run-dir", "{tmp}/r", "--set", "epoch=2"],
     "did you mean epochs"),
    (["train", "--stage", "finetune", "--data", "{demo}", "--run-dir", "{tmp}/r"],
     "no pretrain checkpoint"),
    (["eval", "--data", "{demo}", "--checkpoint", "{tmp}/none.ckpt"], "does not exist"),
    (["eval", "--data", "{demo}", "--checkpoint", "{tmp}/bad.ckpt"], "cannot be read"),
    (["train", "--stage", "pretrain", "--data", "{demo}", "--run-dir", "{tmp}/r", "--set",
      "train_split=nosuch"], "nosuch"),
], ids=["no-data", "typo-key", "finetune-first", "no-ckpt", "corrupt-ckpt", "bad-split"])
def test_user_errors_are_one_line(args, message, demo, tmp_path):
    (tmp_path / "bad.ckpt").write_bytes(b"\x00garbage" * 10)
    args = [a.format(missing=tmp_path / "missing", tmp=tmp_path, demo=demo) for a in args]
    r = run(*args)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], r.stderr
    assert "Traceback" not in r.stderr
