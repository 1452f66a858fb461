"""The local backend: `submit --local` runs the job on this machine through the same launcher
and stages a rank pod runs (CPU, msrun-style ranks), in the same run-directory layout.

A local job is the folder `RUNS/<name>/`: the job's own outputs plus `job.log` (everything the
launcher printed) and `local-job.json` (command, pid, status, exit code), which `status`,
`logs` and `results` read. The job runs as a child process `python -m job ...`; this module
never imports MindSpore.
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from .errors import ClientError
from .launch_command import launch_command
from .spec import JobSpec

RUNS_ROOT = Path("runs")
DEMO_DATA = Path("data") / "demo-sop"
STATE_FILE = "local-job.json"
LOG_FILE = "job.log"
TRAIN_STAGES = ("pretrain", "finetune")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _write_state(run_dir: Path, state: dict[str, Any]) -> None:
    tmp = run_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(run_dir / STATE_FILE)


def read_state(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        raise ClientError(f"{run_dir} is not a local job (no {STATE_FILE}); local jobs live "
                          f"in the --runs-dir of `submit --local`") from None
    except ValueError:
        raise ClientError(f"{run_dir / STATE_FILE} is damaged (not JSON)") from None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ensure_demo_data(path: Path, out: TextIO) -> Path:
    """The built-in demo dataset, made once and reused."""
    info = path / "DEMO_INFO.json"
    try:
        if json.loads(info.read_text()).get("complete"):
            return path
    except (OSError, ValueError):
        pass
    out.write(f"preparing the demo dataset in {path} (once) ...\n")
    out.flush()
    code = subprocess.call([sys.executable, "-m", "job", "make-demo-data", "--out", str(path)])
    if code != 0:
        raise ClientError(f"could not build the demo dataset in {path} (exit code {code}); "
                          f"see the message above")
    return path


def submit_local(spec: JobSpec, *, ranks: int, data: Path | None, runs_root: Path,
                 out: TextIO = sys.stdout) -> int:
    """Run the job in the foreground; its output goes to `out` and to RUNS/<name>/job.log.
    Returns the job's exit code."""
    if ranks < 1:
        raise ClientError(f"--ranks must be >= 1, got {ranks}")
    if data is None:
        data = ensure_demo_data(DEMO_DATA, out)
    elif not (data / "Ebay_train.txt").is_file() and not (data / "train.txt").is_file():
        raise ClientError(f"--data {data} does not hold a dataset in SOP layout (no Ebay_train.txt); "
                          f"leave --data out to use the built-in demo data")
    run_dir = runs_root / spec.name
    if (run_dir / STATE_FILE).exists():
        state = read_state(run_dir)
        if state.get("status") == "running" and _alive(state.get("pid")):
            raise ClientError(f"local job {spec.name} is already running (pid {state['pid']})")
    run_dir.mkdir(parents=True, exist_ok=True)
    command = launch_command(spec, local_ranks=ranks, data_dir=str(data), run_dir=str(run_dir),
                             python=sys.executable)
    state = {"name": spec.name, "loss": spec.loss, "stages": list(spec.stages), "ranks": ranks,
             "data": str(data), "run_dir": str(run_dir), "command": command,
             "started": _now(), "status": "running", "pid": None, "exit_code": None}
    with open(run_dir / LOG_FILE, "a", encoding="utf-8") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1)
        state["pid"] = proc.pid
        _write_state(run_dir, state)
        try:
            for line in proc.stdout:
                out.write(line)
                out.flush()
                log.write(line)
                log.flush()
            code = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            code = proc.wait()
            state.update(status="interrupted", exit_code=code, finished=_now())
            _write_state(run_dir, state)
            raise
    state.update(status="succeeded" if code == 0 else "failed", exit_code=code, finished=_now())
    _write_state(run_dir, state)
    return code


def stage_progress(run_dir: Path, stage: str) -> str:
    """One word (and a detail) on where a stage stands, from the files it writes."""
    if stage in TRAIN_STAGES:
        try:
            summary = json.loads((run_dir / stage / "metrics.json").read_text())
            if summary.get("complete"):
                return f"done (final loss {summary['final_loss']:.4f}, {summary['epochs']} epochs)"
        except (OSError, ValueError, KeyError, TypeError):
            pass
        try:
            resume = json.loads((run_dir / stage / "checkpoints" / "resume.ckpt.json").read_text())
            return f"running (epoch {resume['epoch']} done)"
        except (OSError, ValueError, KeyError):
            return "started" if (run_dir / stage / "config.yaml").exists() else "pending"
    if stage == "eval":
        try:
            m = json.loads((run_dir / "eval" / "metrics.json").read_text())
            return f"done (Recall@1 {m['recall@1']:.4f}, MAP@R {m['map@r']:.4f})"
        except (OSError, ValueError, KeyError):
            return "pending"
    export = list((run_dir / "export").glob("*.mindir")) if (run_dir / "export").is_dir() else []
    return f"done ({export[0].name})" if export else "pending"


def status(run_dir: Path) -> dict[str, Any]:
    state = read_state(run_dir)
    if state.get("status") == "running" and not _alive(state.get("pid")):
        state["status"] = "died"      # killed without a chance to record its end
    state["progress"] = {s: stage_progress(run_dir, s) for s in state.get("stages", [])}
    return state


def follow_log(run_dir: Path, *, follow: bool, poll: float = 0.5) -> Iterator[str]:
    """The job's log lines; with `follow`, keep reading until the job has ended."""
    path = run_dir / LOG_FILE
    read_state(run_dir)
    with open(path, encoding="utf-8", errors="replace") as fh:
        pending = ""
        while True:
            chunk = fh.readline()
            if chunk:
                pending += chunk
                if pending.endswith("\n"):
                    yield pending.rstrip("\n")
                    pending = ""
                continue
            if not follow:
                break
            state = read_state(run_dir)
            if state.get("status") != "running" or not _alive(state.get("pid")):
                rest = fh.read()
                for line in (pending + rest).splitlines():
                    yield line
                break
            time.sleep(poll)
    if pending and not follow:
        yield pending


def latest_local_job(runs_root: Path) -> str:
    jobs = [p for p in runs_root.glob(f"*/{STATE_FILE}")] if runs_root.is_dir() else []
    if not jobs:
        raise ClientError(f"no local jobs under {runs_root}; start one with "
                          f"`python -m operator_client submit --loss triplet --local`")
    return max(jobs, key=lambda p: p.stat().st_mtime).parent.name
