"""`submit --local`: the whole job on this machine through the client, then `status`, `logs`
and `results` on the local run, as a user would type them."""
import json
import subprocess
import sys

import pytest

pytest.importorskip("mindspore")


def client(*args, cwd):
    return subprocess.run([sys.executable, "-m", "operator_client", *args], capture_output=True,
                          text=True, timeout=900, cwd=cwd)


@pytest.fixture(scope="module")
def local_run(tiny_demo, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("user")
    r = client("submit", "--loss", "triplet", "--local", "--ranks", "2", "--data", str(tiny_demo),
               "--name", "demo-run", "--set", "image_size=32", "--set", "batch_size=16",
               "--set", "epochs=1", "--set", "max_steps_per_epoch=3", cwd=cwd)
    return cwd, r


def test_submit_local_runs_every_stage(local_run):
    cwd, r = local_run
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "[rank 0] " in r.stdout and "[rank 1] " in r.stdout
    assert "result: {'acc':" in r.stdout
    run = cwd / "runs" / "demo-run"
    state = json.loads((run / "local-job.json").read_text())
    assert state["status"] == "succeeded" and state["exit_code"] == 0 and state["ranks"] == 2
    assert (run / "eval" / "metrics.json").is_file() and (run / "eval" / "retrieval.png").is_file()
    assert "recall@1" in r.stdout and "demo-run" in r.stdout          # the summary table
    assert "results runs/demo-run --plot" in r.stderr                  # the next commands


def test_status_logs_results_on_the_local_run(local_run):
    cwd, _ = local_run
    st = client("status", "demo-run", "--local", cwd=cwd)
    assert st.returncode == 0, st.stderr
    assert "status succeeded" in st.stdout
    assert "pretrain  done" in st.stdout and "eval      done (Recall@1" in st.stdout
    logs = client("logs", "--local", "--rank", "1", cwd=cwd)          # newest local job
    assert logs.returncode == 0 and logs.stdout
    assert all(line.startswith("[rank 1] ") for line in logs.stdout.splitlines())
    res = client("results", "--plot", cwd=cwd)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].split()[:4] == ["run", "stage", "loss", "epoch"]
    assert "demo-run" in res.stdout and "triplet-batch-hard" in res.stdout
    assert (cwd / "results" / "results.csv").is_file()
    assert (cwd / "results" / "recall_vs_epoch.png").is_file()
    assert (cwd / "results" / "loss_curves.png").is_file()


def test_local_errors_are_one_line(tmp_path):
    r = client("submit", "--loss", "triplet", "--local", "--data", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: --data")
    r = client("status", "--local", cwd=tmp_path)
    assert r.returncode == 2 and "no local jobs" in r.stderr


def test_eval_batch_local_on_the_two_checkpoints_then_skips(local_run, tiny_demo):
    cwd, _ = local_run
    args = ("eval-batch", "--local", "--checkpoints", "runs/demo-run", "--data", str(tiny_demo),
            "--devices-per-server", "2")
    r = client(*args, cwd=cwd)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    files = sorted((cwd / "runs" / "demo-run").glob("*/checkpoints/*.test.metrics.json"))
    assert [f.name for f in files] == ["finetune-e001.test.metrics.json", "pretrain-e001.test.metrics.json"]
    assert r.stdout.count("result: {'acc'") == 2 and "[shard 1] " in r.stdout
    again = client(*args, cwd=cwd)
    assert again.returncode == 0 and again.stdout.count("skipping") == 2
    res = client("results", "runs/demo-run", cwd=cwd)
    assert "pretrain  softmax" in res.stdout     # eval-batch rows join the table
