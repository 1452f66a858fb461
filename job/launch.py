"""`python -m job launch`: what a rank pod's container runs (and `--local` on a laptop).

For each stage in order it starts one process per local device with the environment of the
chosen start-up mode, streams their output to stdout with a `[rank N]` prefix (what
`kubectl logs` shows), forwards SIGTERM, and exits non-zero as soon as any rank fails (after
stopping the others), so Volcano's policies can restart the job. Stages read the previous
stage's output from the shared run directory, and each stage resumes or skips what it
finished before a restart.

- rank-table: waits until the mounted table says "completed" (ConfigMap volumes update
  late), finds this pod's server entry (host IP, pod IP, or VC_TASK_INDEX), then sets
  RANK_TABLE_FILE, RANK_SIZE, RANK_ID (global) and DEVICE_ID (local) per process.
- dynamic: the environment msrun would set (MS_ROLE, MS_SCHED_HOST/PORT, MS_WORKER_NUM,
  MS_NODE_ID, RANK_ID, DEVICE_ID); server 0 also runs the scheduler process. `--local
  --ranks N` is this mode on 127.0.0.1 with N CPU workers.
- single: one process, no collective group.
`eval` and `export` run once, on server 0, device 0.
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from job import rank_table
from job.checkpoints import TRAIN_STAGES
from job.errors import ConfigError, JobError

log = logging.getLogger("job.launch")

STAGES = ("pretrain", "finetune", "eval", "export")
MODES = ("rank-table", "dynamic", "single")
DEFAULT_SCHED_PORT = 8118
GRID_QUERIES = 8      # the eval stage also draws RUN/eval/retrieval.png of this many queries
_NOISE = re.compile(r"^\[(INFO|DEBUG)\] ")   # MindSpore's C++ runtime chatter


@dataclass
class Topology:
    """Who runs here: the processes of this pod and their environments."""

    mode: str
    rank_size: int
    server_index: int
    local: list[dict[str, str]]                  # one env delta per local worker
    scheduler: dict[str, str] | None = None      # env delta of the scheduler, if here
    labels: list[str] = field(default_factory=list)


def parse_stages(text: str) -> list[str]:
    stages = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if not stages or bad:
        raise ConfigError(f"--stages {text!r}: each must be one of {', '.join(STAGES)}")
    order = [STAGES.index(s) for s in stages]
    if order != sorted(order) or len(set(stages)) != len(stages):
        raise ConfigError(f"--stages {text!r} must be in pipeline order without repeats: "
                          f"{','.join(STAGES)}")
    return stages


# ------------------------------------------------------------------ topologies

def wait_for_rank_table(path: Path, *, timeout: float, poll: float = 2.0,
                        progress_every: float = 30.0, ips: tuple[str, ...] = ()) -> None:
    """Block until the table's status is "completed" (and, when this pod's `ips` are known,
    until it lists one of them: after a job restart the mounted ConfigMap can still hold the
    previous gang's table for a while); one progress line now and then."""
    start = time.monotonic()
    last = None
    while True:
        status = rank_table.status_of(path)
        if status == "completed":
            if not ips:
                return
            try:
                servers = rank_table.read(path)
            except rank_table.RankTableError:
                servers = []
            if any(srv.server_id in ips for srv in servers):
                return
            status = f"completed but without this pod's IP {'/'.join(ips)} (stale?)"
        now = time.monotonic()
        if now - start >= timeout:
            raise JobError(f"rank table {path} is still {status or 'missing'!r} after "
                           f"{timeout:.0f}s; is `operator_client rank-table --fill` (or the "
                           f"Ascend Operator) running for this job?")
        if last is None or now - last >= progress_every:
            log.info("waiting for rank table %s: status %s (%.0fs of %.0fs)", path,
                     status or "missing", now - start, timeout)
            last = now
        time.sleep(poll)


def rank_table_topology(path: Path, *, devices_per_server: int | None, timeout: float,
                        env=os.environ) -> Topology:
    ips = tuple(ip for ip in (env.get("HOST_IP"), env.get("POD_IP")) if ip)
    wait_for_rank_table(path, timeout=timeout, ips=ips)
    servers = rank_table.read(path)
    index = env.get("VC_TASK_INDEX") or env.get("SERVER_INDEX")
    server = rank_table.find_server(servers, host_ip=env.get("HOST_IP"), pod_ip=env.get("POD_IP"),
                                    index=int(index) if index and index.isdigit() else None)
    if devices_per_server and len(server.devices) != devices_per_server:
        raise JobError(f"rank table gives server {server.server_id} {len(server.devices)} devices "
                       f"but --devices-per-server is {devices_per_server}")
    size = rank_table.rank_size(servers)
    local = []
    # DEVICE_ID is the device's index among this pod's visible devices (ordered by id).
    for logical, dev in enumerate(sorted(server.devices, key=lambda d: d.device_id)):
        local.append({"RANK_TABLE_FILE": str(path), "RANK_SIZE": str(size),
                      "RANK_ID": str(dev.rank_id), "DEVICE_ID": str(logical)})
    log.info("rank table: server %d/%d (%s), %d local devices, ranks %s of %d",
             server.index + 1, len(servers), server.server_id, len(local),
             ",".join(e["RANK_ID"] for e in local), size)
    return Topology("rank-table", size, server.index, local,
                    labels=[f"rank {e['RANK_ID']}" for e in local])


def dynamic_topology(*, host: str, port: int, worker_num: int, node_rank: int,
                     local_workers: int) -> Topology:
    if worker_num % local_workers:
        raise ConfigError(f"MS_WORKER_NUM={worker_num} is not a multiple of the "
                          f"{local_workers} workers per server")
    if not 0 <= node_rank < worker_num // local_workers:
        raise ConfigError(f"node rank {node_rank} is outside 0..{worker_num // local_workers - 1}")
    common = {"MS_SCHED_HOST": host, "MS_SCHED_PORT": str(port), "MS_WORKER_NUM": str(worker_num),
              "RANK_SIZE": str(worker_num)}
    local = []
    for i in range(local_workers):
        rank = node_rank * local_workers + i
        local.append({**common, "MS_ROLE": "MS_WORKER", "MS_NODE_ID": str(rank),
                      "RANK_ID": str(rank), "DEVICE_ID": str(i)})
    scheduler = {**common, "MS_ROLE": "MS_SCHED", "RANK_ID": "0"} if node_rank == 0 else None
    return Topology("dynamic", worker_num, node_rank, local, scheduler,
                    labels=[f"rank {e['RANK_ID']}" for e in local])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ process group

class ProcessGroup:
    """Processes of one stage: output streamed with a prefix, fail-fast, SIGTERM forwarded."""

    def __init__(self, out=None, *, verbose: bool = False, grace: float = 10.0) -> None:
        self.out = out or sys.stdout
        self.verbose = verbose
        self.grace = grace
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self, label: str, argv: list[str], env: dict[str, str]) -> None:
        p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True, text=True,
                             errors="replace", bufsize=1)
        self.procs.append((label, p))
        t = threading.Thread(target=self._pump, args=(label, p), daemon=True)
        t.start()
        self._threads.append(t)

    def _pump(self, label: str, p: subprocess.Popen) -> None:
        for line in p.stdout:
            if not self.verbose and _NOISE.match(line):
                continue
            with self._lock:
                self.out.write(f"[{label}] {line}" if line.endswith("\n") else f"[{label}] {line}\n")
                self.out.flush()

    def signal_all(self, sig: int) -> None:
        for _, p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass

    def stop(self) -> None:
        """SIGTERM everyone still running, SIGKILL after the grace period."""
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for _, p in self.procs:
            try:
                p.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
        self.signal_all(signal.SIGKILL)
        for _, p in self.procs:
            p.wait()

    def wait(self, poll: float = 0.2) -> tuple[int, str | None]:
        """(0, None) when all exit 0; else (code, label) of the first failure, others stopped."""
        try:
            while True:
                running = 0
                for label, p in self.procs:
                    code = p.poll()
                    if code is None:
                        running += 1
                    elif code != 0:
                        self.stop()
                        return code, label
                if not running:
                    return 0, None
                time.sleep(poll)
        finally:
            for t in self._threads:
                t.join(timeout=5)


# ------------------------------------------------------------------ stages

@dataclass
class LaunchOptions:
    stages: list[str]
    loss: str
    data: Path
    run_dir: Path
    mode: str = "single"
    rank_table: Path | None = None
    devices_per_server: int | None = None
    pretrained_ckpt: Path | None = None
    overrides: list[str] = field(default_factory=list)
    profile: str = "auto"
    device: str = "auto"
    force_new: bool = False
    local_ranks: int | None = None
    rank_table_timeout: float = 900.0
    verbose: bool = False


def stage_argv(stage: str, o: LaunchOptions) -> list[str]:
    """The `python -m job ...` command of one stage."""
    base = [sys.executable, "-m", "job"]
    if stage in TRAIN_STAGES:
        argv = base + ["train", "--stage", stage, "--loss", o.loss, "--data", str(o.data),
                       "--run-dir", str(o.run_dir), "--profile", o.profile, "--device", o.device]
        if stage == "pretrain" and o.pretrained_ckpt:
            argv += ["--init", str(o.pretrained_ckpt)]
        if o.force_new:
            argv.append("--force-new")
        for item in o.overrides:
            argv += ["--set", item]
        return argv
    if stage == "eval":
        return base + ["eval", "--data", str(o.data), "--run-dir", str(o.run_dir),
                       "--device", o.device, "--show", str(GRID_QUERIES)]
    return base + ["export", "--run-dir", str(o.run_dir), "--device", o.device]


def build_topology(o: LaunchOptions, env=os.environ) -> Topology:
    if o.local_ranks is not None:
        if o.local_ranks < 1:
            raise ConfigError(f"--ranks must be >= 1, got {o.local_ranks}")
        if o.local_ranks == 1:
            return Topology("single", 1, 0, [{}], labels=["rank 0"])
        return dynamic_topology(host="127.0.0.1", port=free_port(), worker_num=o.local_ranks,
                                node_rank=0, local_workers=o.local_ranks)
    if o.mode == "rank-table":
        if o.rank_table is None:
            raise ConfigError("--launch rank-table needs --rank-table FILE")
        return rank_table_topology(o.rank_table, devices_per_server=o.devices_per_server,
                                   timeout=o.rank_table_timeout, env=env)
    if o.mode == "dynamic":
        try:
            worker_num = int(env["MS_WORKER_NUM"])
            host = env["MS_SCHED_HOST"]
        except (KeyError, ValueError):
            raise ConfigError("--launch dynamic needs MS_SCHED_HOST and MS_WORKER_NUM in the "
                              "environment") from None
        port = int(env.get("MS_SCHED_PORT", DEFAULT_SCHED_PORT))
        node = env.get("MS_NODE_RANK") or env.get("VC_TASK_INDEX") or "0"
        local = o.devices_per_server or worker_num
        return dynamic_topology(host=host, port=port, worker_num=worker_num,
                                node_rank=int(node), local_workers=local)
    if o.mode == "single":
        return Topology("single", 1, 0, [{}], labels=["rank 0"])
    raise ConfigError(f"--launch {o.mode!r} is not one of: {', '.join(MODES)}")


def _eval_done(run_dir: Path) -> bool:
    """eval already wrote metrics for the newest checkpoint of the run."""
    from job import checkpoints

    try:
        metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    except (FileNotFoundError, ValueError):
        return False
    newest = checkpoints.newest_in_run(run_dir)
    return newest is not None and metrics.get("checkpoint") == str(newest)


def run(o: LaunchOptions, env=None, out=None) -> int:
    """Run the stages; returns the exit code of the launcher."""
    env = dict(os.environ if env is None else env)
    out = out or sys.stdout
    topo = build_topology(o, env)
    o.run_dir.mkdir(parents=True, exist_ok=True)
    current: dict[str, ProcessGroup | None] = {"group": None}
    stopping = {"signal": None}

    def forward(signum, _frame):
        stopping["signal"] = signum
        group = current["group"]
        log.warning("received signal %d; stopping the ranks", signum)
        if group is not None:
            group.signal_all(signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for stage in o.stages:
            t0 = time.monotonic()
            group = ProcessGroup(out, verbose=o.verbose)
            current["group"] = group
            argv = stage_argv(stage, o)
            if stage in TRAIN_STAGES:
                mode = topo.mode
                if mode == "dynamic" and o.local_ranks:
                    # a fresh port per stage: the previous scheduler's may linger in TIME_WAIT
                    port = str(free_port())
                    for e in topo.local + [topo.scheduler or {}]:
                        if e:
                            e["MS_SCHED_PORT"] = port
                log.info("stage %s: %d local process(es) of %d ranks (%s)", stage,
                         len(topo.local), topo.rank_size, mode)
                if topo.scheduler is not None:
                    group.start("sched", argv, {**env, **topo.scheduler})
                for label, delta in zip(topo.labels, topo.local):
                    group.start(label, argv, {**env, **delta})
            else:
                if topo.server_index != 0:
                    log.info("stage %s runs on server 0; nothing to do here", stage)
                    continue
                if stage == "eval" and _eval_done(o.run_dir):
                    log.info("stage eval: %s already holds the newest checkpoint's metrics; "
                             "skipping", o.run_dir / "eval" / "metrics.json")
                    continue
                log.info("stage %s: 1 process", stage)
                clean = {k: v for k, v in env.items()
                         if k not in ("MS_ROLE", "RANK_TABLE_FILE", "MS_WORKER_NUM")}
                group.start("rank 0", argv, {**clean, "RANK_ID": "0", "DEVICE_ID": "0",
                                             "RANK_SIZE": "1"})
            code, label = group.wait()
            current["group"] = None
            if stopping["signal"] is not None:
                log.error("stopped by signal %d during %s", stopping["signal"], stage)
                return 128 + stopping["signal"]
            if code != 0:
                log.error("stage %s failed: %s exited with code %d; the other ranks were "
                          "stopped", stage, label, code)
                return code if 0 < code < 128 else 1
            log.info("stage %s done in %.0fs", stage, time.monotonic() - t0)
        return 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
