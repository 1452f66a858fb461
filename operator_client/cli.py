"""`python -m operator_client`: render, submit and manage the training jobs.

Every error a user can cause ends in one line `error: ...` on stderr and exit code 2.
`wait` exits 0 when the job completed, 1 when it failed, 124 on timeout.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any, NoReturn, TextIO

from . import names, rank_table
from .errors import ClientError, RankTableError, WaitTimeout
from .spec import DEFAULT_STAGES, LAUNCH_MODES, LOSSES, JobSpec, load_spec_file, spec_from_sources
from .status import JobStatus, age

PROG = "python -m operator_client"
EXIT_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_TIMEOUT = 124
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(JobSpec)}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message} (see '{self.prog} --help')\n")
        sys.exit(EXIT_USER_ERROR)


class StatusLine:
    """Progress while waiting: one rewritten line on a terminal, else one line per change."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last: str | None = None

    def __call__(self, message: str) -> None:
        if message == self.last:
            return
        self.last = message
        if self.tty:
            width = shutil.get_terminal_size((120, 20)).columns - 1
            self.stream.write("\r\033[K" + message[:width])
        else:
            self.stream.write(message + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.last is not None:
            self.stream.write("\n")
            self.stream.flush()
        self.last = None


def _say(message: str) -> None:
    print(message, file=sys.stderr)


# --- argument groups ------------------------------------------------------------------------

def _add_connection(parser: argparse.ArgumentParser, *, namespace: bool = True) -> None:
    group = parser.add_argument_group("cluster connection")
    group.add_argument("--kubeconfig", metavar="FILE",
                       help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster)")
    group.add_argument("--context", help="kubeconfig context (default: its current context)")
    if namespace:
        group.add_argument("-n", "--namespace", default=names.DEFAULT_NAMESPACE, metavar="NAME",
                           help=f"namespace of the job (default: {names.DEFAULT_NAMESPACE})")
    group.add_argument("--poll-interval", type=float, default=2.0, metavar="SECONDS",
                       help="seconds between looks at the cluster while waiting (default: 2)")


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    d = _DEFAULTS
    group = parser.add_argument_group("job options (also from -f FILE; flags win)")
    group.add_argument("-f", "--file", metavar="FILE",
                       help="YAML file of job options, keys as the long flags: "
                            "'loss: triplet', 'servers: 2', 'set: {epochs: 10}'")
    group.add_argument("--loss", metavar="NAME", help=f"loss: {', '.join(LOSSES)} (softmax only with --stages pretrain)")
    group.add_argument("--stages", metavar="LIST", help=f"comma-separated stages in pipeline order "
                                        f"(default: {','.join(DEFAULT_STAGES)}; also: export)")
    group.add_argument("--servers", metavar="N", help=f"servers, one rank pod each (default: {d['servers']})")
    group.add_argument("--devices-per-server", metavar="N", help="Ascend 910 NPUs per server: 1, 2, 4 or 8 "
                                                    f"(default: {d['devices_per_server']})")
    group.add_argument("--device", metavar="KIND", help="ascend (default) or cpu: pods request CPU "
                                        "and memory instead of NPUs (clusters without Ascend)")
    group.add_argument("--cpus", metavar="N", help=f"with --device cpu: CPU per pod (default: {d['cpus']})")
    group.add_argument("--memory", metavar="SIZE", help=f"with --device cpu: memory per pod (default: {d['memory']})")
    group.add_argument("--image", help=f"container image with the job package (default: "
                                       f"{names.DEFAULT_IMAGE}, with --device cpu {names.DEFAULT_CPU_IMAGE})")
    group.add_argument("-n", "--namespace", metavar="NAME", help=f"namespace (default: {d['namespace']})")
    group.add_argument("--queue", metavar="NAME", help=f"Volcano queue (default: {d['queue']})")
    group.add_argument("--name", metavar="NAME", help="job name (default: sop-<loss>-<MMDD-HHMMSS>-<random>)")
    group.add_argument("--data-pvc", metavar="PVC", help=f"PVC holding the SOP dataset, mounted at {names.DATA_MOUNT}; "
                                          f"the dataset is read from {names.DATA_DIR} "
                                          f"(default: {d['data_pvc']})")
    group.add_argument("--data-subpath", metavar="DIR", help="folder of the data volume to mount at "
                                              f"{names.DATA_MOUNT} (default: the whole volume)")
    group.add_argument("--runs-pvc", metavar="PVC", help=f"PVC for run directories, mounted at {names.RUNS_MOUNT}; "
                                          f"the job writes {names.RUNS_MOUNT}/<name> "
                                          f"(default: {d['runs_pvc']})")
    group.add_argument("--pretrained-ckpt", metavar="PATH",
                       help="checkpoint pretraining starts from, as a path inside the pod; 'none': "
                            f"random weights (default: {names.DEFAULT_PRETRAINED_CKPT}, placed by "
                            "'data put-checkpoint'; none with --device cpu)")
    group.add_argument("--set", action="append", metavar="KEY=VALUE", dest="overrides",
                       help="trainer setting passed on to the job (repeatable), e.g. --set epochs=10")
    group.add_argument("--launch", metavar="MODE", help=f"start-up mode: {' or '.join(LAUNCH_MODES)} "
                                        f"(default: rank-table; dynamic with --device cpu)")
    group.add_argument("--max-retry", metavar="N", help=f"job restarts after a failed or evicted pod "
                                           f"(default: {d['max_retry']})")


_SPEC_FLAGS = ("loss", "stages", "servers", "devices_per_server", "device", "cpus", "memory",
               "image", "namespace", "queue",
               "name", "data_pvc", "data_subpath", "runs_pvc", "pretrained_ckpt", "overrides",
               "launch", "max_retry")


_LOCAL_RUNS = Path("runs")


def _add_local(parser: argparse.ArgumentParser, *, submit: bool = False) -> None:
    group = parser.add_argument_group("local runs (no cluster)")
    group.add_argument("--local", action="store_true",
                       help="on this machine: the same launcher and stages, on CPU"
                       if submit else "a local job (from submit --local)")
    group.add_argument("--runs-dir", default=str(_LOCAL_RUNS), metavar="DIR",
                       help=f"folder of local run directories (default: {_LOCAL_RUNS})")
    if submit:
        group.add_argument("--ranks", type=int, default=1, metavar="N",
                           help="with --local: training processes (default: 1)")
        group.add_argument("--data", metavar="DIR",
                           help="with --local: dataset in SOP layout (default: the built-in "
                                "demo data, prepared once in data/demo-sop)")


def spec_from_args(args: argparse.Namespace) -> JobSpec:
    """The JobSpec of `-f FILE` and the flags (flags win), named."""
    file_values = load_spec_file(args.file) if args.file else {}
    flags = {field: getattr(args, field) for field in _SPEC_FLAGS}
    return spec_from_sources(file_values, flags).with_name()


# --- commands -------------------------------------------------------------------------------

def _client(args: argparse.Namespace, namespace: str) -> Any:
    from .client import JobClient
    from .cluster import Cluster

    if args.poll_interval <= 0:
        raise ClientError(f"--poll-interval must be positive, got {args.poll_interval:g}")
    return JobClient(Cluster.connect(args.kubeconfig, args.context), namespace,
                     poll_interval=args.poll_interval)


def _job_name(args: argparse.Namespace, client: Any) -> str:
    if args.name:
        return args.name
    name = client.latest_job()
    _say(f"(newest job in {client.namespace}: {name})")
    return name


def cmd_render(args: argparse.Namespace) -> int:
    from .render import render, to_yaml

    manifests = render(spec_from_args(args))
    if args.output == "json":
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}, indent=2))
    else:
        sys.stdout.write(to_yaml(manifests))
    return 0


def _local_summary(run_dir: Path) -> None:
    from . import results

    try:
        res = results.gather([run_dir])
    except ClientError:
        return
    if res.rows:
        print("\n" + results.table(res.rows))


def cmd_submit_local(args: argparse.Namespace, spec: JobSpec) -> int:
    from . import local

    runs = Path(args.runs_dir)
    _say(f"local job {spec.name}: {args.ranks} rank(s) on this machine's CPU, stages "
         f"{','.join(spec.stages)}, run directory {runs / spec.name}")
    code = local.submit_local(spec, ranks=args.ranks, data=Path(args.data) if args.data else None,
                              runs_root=runs)
    run_dir = runs / spec.name
    if code != 0:
        _say(f"error: local job {spec.name} failed (exit code {code}); its log: {run_dir / local.LOG_FILE}")
        return EXIT_FAILED
    _local_summary(run_dir)
    _say(f"\njob {spec.name} done. Next:\n"
         f"  {PROG} results {run_dir} --plot        # table, CSV, curves\n"
         f"  {PROG} logs {spec.name} --local         # the whole log\n"
         f"  retrieval picture: {run_dir / 'eval' / 'retrieval.png'}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    if args.local:
        return cmd_submit_local(args, spec)
    from .data import check_before_submit

    client = _client(args, spec.namespace)
    check_before_submit(client.cluster, spec)  # the default ImageNet backbone is on the volume
    line = StatusLine()
    fill = spec.uses_rank_table and not args.no_fill
    try:
        client.submit(spec, fill=False)
        _say(f"submitted job {spec.name} to namespace {spec.namespace}: {spec.servers} server(s) x "
             f"{spec.devices_per_server} NPUs, queue {spec.queue}, stages {','.join(spec.stages)}")
        if fill:
            try:
                client.fill_rank_table(spec.name, timeout=args.fill_timeout, on_progress=line)
            except WaitTimeout as e:
                line.close()
                raise WaitTimeout(
                    f"{e}; the job stays queued: fill its rank table later with "
                    f"'{PROG} rank-table --fill {spec.name} -n {spec.namespace}' or cancel it") from e
    finally:
        line.close()
    print(spec.name)
    _say(f"follow it with: {PROG} logs {spec.name} -n {spec.namespace} --follow")
    return 0


def _status_dict(status: JobStatus) -> dict[str, Any]:
    return dataclasses.asdict(status) | {"restarts": status.restarts}


def cmd_status_local(args: argparse.Namespace) -> int:
    from . import local

    runs = Path(args.runs_dir)
    name = args.name or local.latest_local_job(runs)
    state = local.status(runs / name)
    if args.output == "json":
        print(json.dumps(state, indent=2))
        return 0
    code = f" (exit code {state['exit_code']})" if state.get("exit_code") not in (None, 0) else ""
    print(f"local job {name}  status {state['status']}{code}  loss {state['loss']}  "
          f"ranks {state['ranks']}  started {state['started']}")
    rows = [("STAGE", "PROGRESS")] + [(st, p) for st, p in state["progress"].items()]
    print(_table(rows))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    if args.local:
        return cmd_status_local(args)
    client = _client(args, args.namespace)
    status = client.status(_job_name(args, client))
    if args.output == "json":
        print(json.dumps(_status_dict(status), indent=2))
        return 0
    devices = f" x {status.devices_per_server} NPUs" if status.devices_per_server else ""
    print(f"job {status.name}  namespace {status.namespace}  phase {status.phase}  "
          f"servers {status.servers}{devices}  retries {status.retry_count}/{status.max_retry}  "
          f"restarts {status.restarts}  age {age(status.created)}")
    if status.pods:
        rows = [("POD", "PHASE", "NODE", "RESTARTS", "PROBLEM")]
        rows += [(names.pod_short_name(p.name, status.name), p.phase, p.node or "-", str(p.restarts),
                  p.reason or "") for p in status.pods]
        print(_table(rows))
    else:
        print("no pods yet")
    if status.reason:
        print(f"reason: {status.reason}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    client = _client(args, args.namespace)
    jobs = client.list(all_jobs=args.all)
    if not jobs:
        _say(f"no jobs in namespace {args.namespace}")
        return 0
    rows = [("NAME", "PHASE", "LOSS", "SERVERS", "NPUS", "RETRIES", "AGE")]
    rows += [(j.name, j.phase, j.loss or "-", str(j.servers), str(j.devices_per_server or "-"),
              f"{j.retry_count}/{j.max_retry}", age(j.created)) for j in jobs]
    print(_table(rows))
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    client = _client(args, args.namespace)
    name = _job_name(args, client)
    line = StatusLine()
    try:
        status = client.wait(name, timeout=args.timeout, on_progress=line)
    finally:
        line.close()
    print(f"{status.name}: {status.phase}" + (f" - {status.reason}" if status.reason and not status.succeeded else ""))
    return 0 if status.succeeded else EXIT_FAILED


def cmd_logs(args: argparse.Namespace) -> int:
    if args.local:
        from . import local

        runs = Path(args.runs_dir)
        name = args.name or local.latest_local_job(runs)
        for text in local.follow_log(runs / name, follow=args.follow):
            if args.rank is None or text.startswith(f"[rank {args.rank}] "):
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
        return 0
    client = _client(args, args.namespace)
    name = _job_name(args, client)
    line = StatusLine()
    try:
        for log_line in client.logs(name, follow=args.follow, rank=args.rank, on_progress=line):
            line.close()
            sys.stdout.write(log_line.format(name) + "\n")
            sys.stdout.flush()
    finally:
        line.close()
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    client = _client(args, args.namespace)
    client.cancel(args.name)
    _say(f"deleted job {args.name} (Volcano deletes its pods) and its rank table")
    return 0


def cmd_rank_table(args: argparse.Namespace) -> int:
    if args.fill:
        client = _client(args, args.namespace)
        line = StatusLine()
        try:
            table = client.fill_rank_table(args.fill, timeout=args.timeout, watch=args.watch,
                                           on_progress=line)
        finally:
            line.close()
        _say(f"rank table of {args.fill}: {table.get('server_count')} server(s), "
             f"{rank_table.rank_size(table)} ranks, written to "
             f"{names.rank_table_configmap(args.fill)}")
        if args.output:
            _write(args.output, rank_table.dumps(table))
        return 0
    sources = [("hccn", path) for path in args.hccn_conf or []] + \
              [("ips", ips) for ips in args.device_ips or []]
    if not sources:
        raise ClientError("rank-table needs --fill JOB, --hccn-conf FILE or --device-ips IP,IP,...")
    if args.hccn_conf and args.device_ips:
        raise ClientError("use either --hccn-conf or --device-ips, not both")
    server_ips = args.server_ip or []
    if len(server_ips) != len(sources):
        raise ClientError(
            f"give one --server-ip per {'--hccn-conf' if args.hccn_conf else '--device-ips'} "
            f"(in the same order): {len(sources)} source(s), {len(server_ips)} --server-ip")
    devices = rank_table.parse_device_list(args.devices) if args.devices else None
    servers = []
    for (kind, value), server_ip in zip(sources, server_ips):
        if kind == "hccn":
            try:
                text = Path(value).read_text(encoding="utf-8")
            except OSError as e:
                raise RankTableError(f"cannot read hccn.conf {value!r}: {e.strerror}") from e
            servers.append(rank_table.server_from_hccn_conf(text, server_ip, devices))
        else:
            ips = [ip.strip() for ip in value.split(",") if ip.strip()]
            servers.append(rank_table.server_from_ips(server_ip, ips, devices))
    text = rank_table.dumps(rank_table.build(servers))
    if args.output:
        _write(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_eval_batch(args: argparse.Namespace) -> int:
    from . import eval_batch

    if args.local:
        code = eval_batch.run_local(args.checkpoints, data=Path(args.data or "data/demo-sop"),
                                    devices=int(args.devices_per_server or 1), split=args.split,
                                    force=args.force)
        return code if code in (0, EXIT_USER_ERROR) else EXIT_FAILED
    if not args.loss:
        args.loss = "triplet"     # JobSpec needs one; eval-batch does not train
    if not args.name:
        args.name = names.default_job_name("eval")
    spec = spec_from_args(args)
    manifests = eval_batch.render_eval_batch(spec, args.checkpoints, split=args.split,
                                             force=args.force)
    if args.render:
        from .render import to_yaml
        sys.stdout.write(to_yaml(manifests))
        return 0
    client = _client(args, spec.namespace)
    client.cluster.require_volcano()
    client.cluster.create_job(manifests[0])
    _say(f"submitted eval-batch job {spec.name}: {len(args.checkpoints)} checkpoint argument(s) "
         f"over {spec.servers} server(s) x {spec.devices_per_server} devices")
    print(spec.name)
    _say(f"follow it with: {PROG} logs {spec.name} -n {spec.namespace} --follow; then "
         f"{PROG} results <run dirs>")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from . import results

    paths = [Path(p) for p in args.runs] if args.runs else sorted(
        p for p in Path(args.runs_dir).glob("*") if p.is_dir())
    if not paths:
        raise ClientError(f"no run directories given and none under {args.runs_dir}")
    res = results.gather(paths)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if res.rows:
        print(results.table(res.rows))
        _write(str(out / "results.csv"), results.to_csv(res.rows))
        _write(str(out / "results.md"), results.to_markdown(res.rows))
        top = results.best(res.rows)
        if top:
            _say(f"\nbest MAP@R: {top['run']} {top['stage']} epoch {top['epoch']} "
                 f"({top['map@r']:.4f}, Recall@1 {top['recall@1']:.4f}): {top['checkpoint']}")
        _say(f"wrote {out / 'results.csv'} and {out / 'results.md'}")
    else:
        _say("no evaluation metrics yet (only training curves)")
    if args.plot:
        for path in results.plot(res, out):
            _say(f"wrote {path}")
    return 0


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as e:
        raise ClientError(f"cannot write {path!r}: {e.strerror}") from e


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


# --- parser ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Render, submit and manage deep-metric-learning training jobs (MindSpore, "
                    "ResNet50, Stanford Online Products) as Volcano jobs on Ascend 910 servers.",
        epilog=f"One-off cluster set-up: kubectl apply -k manifests/cluster. "
               f"Example: {PROG} submit --loss triplet --servers 2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log API calls and error causes")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=_Parser)

    p = commands.add_parser("render", help="print the job's manifests (no cluster needed)",
                            description="Print the Volcano Job and its rank-table ConfigMap as "
                                        "YAML, ready for 'kubectl apply -f -'. Touches no cluster.")
    _add_job_options(p)
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="format (default: yaml)")
    p.set_defaults(func=cmd_render)

    p = commands.add_parser("submit", help="create the job and fill its rank table",
                            description="Create the job on the cluster, then wait until its pods "
                                        "are scheduled and write their HCCL rank table. Prints "
                                        "the job name on stdout.")
    _add_job_options(p)
    _add_connection(p, namespace=False)
    p.add_argument("--no-fill", action="store_true",
                   help="do not write the rank table (clusters whose Ascend Operator fills it)")
    p.add_argument("--fill-timeout", type=float, default=900.0, metavar="SECONDS",
                   help="how long to wait for the pods to be scheduled (default: 900)")
    _add_local(p, submit=True)
    p.set_defaults(func=cmd_submit)

    p = commands.add_parser("status", help="phase, pods, restarts and why a job is stuck",
                            description="Show a job's phase, its pods, restarts, retry count, and "
                                        "the reason when it is stuck or failed.")
    p.add_argument("name", nargs="?", help="job name (default: the newest job)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    _add_connection(p)
    _add_local(p)
    p.set_defaults(func=cmd_status)

    p = commands.add_parser("list", help="the namespace's jobs",
                            description="List the jobs submitted with this client (--all: every Volcano job).")
    p.add_argument("--all", action="store_true", help="every Volcano job of the namespace")
    _add_connection(p)
    p.set_defaults(func=cmd_list)

    p = commands.add_parser("wait", help="wait until a job completes or fails",
                            description="Wait until the job is Completed (exit 0) or Failed, "
                                        "Aborted or Terminated (exit 1); exit 124 on timeout.")
    p.add_argument("name", nargs="?", help="job name (default: the newest job)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after this long")
    _add_connection(p)
    p.set_defaults(func=cmd_wait)

    p = commands.add_parser("logs", help="every rank pod's log, prefixed with its pod",
                            description="Print the logs of the job's rank pods, each line prefixed "
                                        "with its pod (worker-<server index>). --follow streams "
                                        "them from Pending until the job ends, each line once.")
    p.add_argument("name", nargs="?", help="job name (default: the newest job)")
    p.add_argument("-f", "--follow", action="store_true", help="keep streaming until the job ends")
    p.add_argument("--rank", type=int, metavar="N",
                   help="only the pod of server index N (VC_TASK_INDEX); with --local, rank N")
    _add_connection(p)
    _add_local(p)
    p.set_defaults(func=cmd_logs)

    p = commands.add_parser("eval-batch", help="evaluate many checkpoints, one per device",
                            description="One Volcano job evaluating many checkpoints: each device "
                                        "takes a round-robin share and writes "
                                        "<checkpoint>.<split>.metrics.json next to each; "
                                        "checkpoints already evaluated are skipped unless --force.")
    p.add_argument("--checkpoints", nargs="+", required=True, metavar="PATH",
                   help=f"checkpoint files, globs or run directories as the pods see them "
                        f"({names.RUNS_MOUNT}/...); with --local, local paths")
    p.add_argument("--split", help="split to evaluate (default: each checkpoint's eval split)")
    p.add_argument("--force", action="store_true", help="re-evaluate evaluated checkpoints")
    p.add_argument("--render", action="store_true", help="print the manifest instead of submitting")
    _add_job_options(p)
    _add_connection(p, namespace=False)
    _add_local(p)
    p.add_argument("--data", metavar="DIR", help="with --local: the dataset (default: data/demo-sop)")
    p.set_defaults(func=cmd_eval_batch)

    p = commands.add_parser("results", help="gather metrics of runs into a table, CSV and plots",
                            description="Gather every metrics file of the given run directories "
                                        "(eval and eval-batch results, training loss histories) "
                                        "into an aligned table, results.csv and results.md; "
                                        "--plot adds recall_vs_epoch.png and loss_curves.png.")
    p.add_argument("runs", nargs="*", metavar="RUN_DIR",
                   help="run directories (default: every folder of --runs-dir)")
    p.add_argument("--runs-dir", default=str(_LOCAL_RUNS), metavar="DIR",
                   help=f"where run directories are (default: {_LOCAL_RUNS})")
    p.add_argument("--out", default="results", metavar="DIR",
                   help="where to write results.csv, results.md and plots (default: results)")
    p.add_argument("--plot", action="store_true", help="also write PNG plots")
    p.set_defaults(func=cmd_results)

    p = commands.add_parser("cancel", help="delete a job, its pods and its rank table",
                            description="Delete the job; Volcano deletes its pods. Run directories "
                                        "on the runs volume are kept.")
    p.add_argument("name", help="job name")
    _add_connection(p)
    p.set_defaults(func=cmd_cancel)

    p = commands.add_parser(
        "rank-table", help="fill a job's HCCL rank table, or print a static one",
        description=textwrap.fill(
            "--fill JOB: wait until every pod of JOB is scheduled and annotated by the Ascend "
            "device plugin, then write the HCCL rank table into its ConfigMap (status completed). "
            "Otherwise print a static table (format 1.0), like hccl_tools.py: one --server-ip per "
            "--hccn-conf or per --device-ips list.", 88),
        epilog=f"examples:\n  {PROG} rank-table --fill sop-triplet-0612-1530-a3f9\n"
               f"  {PROG} rank-table --hccn-conf /etc/hccn.conf --server-ip 10.0.0.1\n"
               f"  {PROG} rank-table --device-ips 192.168.100.101,192.168.101.101 "
               f"--server-ip 10.0.0.1 --devices 0,1",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fill", metavar="JOB", help="fill the rank table of this job")
    p.add_argument("--watch", action="store_true",
                   help="with --fill: keep the table in step with job restarts until the job ends")
    p.add_argument("--timeout", type=float, default=900.0, metavar="SECONDS",
                   help="with --fill: how long to wait for the pods (default: 900)")
    p.add_argument("--hccn-conf", action="append", metavar="FILE",
                   help="a server's /etc/hccn.conf (address_<id>=<ip> lines); repeatable")
    p.add_argument("--device-ips", action="append", metavar="IP,IP,...",
                   help="a server's device NIC IPs, device 0 first; repeatable")
    p.add_argument("--server-ip", action="append", metavar="IP",
                   help="host IP of the server, once per --hccn-conf / --device-ips, same order")
    p.add_argument("--devices", metavar="LIST",
                   help="device ids to use, e.g. 0,1,2,3 or 0-7 (default: all listed)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the table to FILE instead of stdout")
    _add_connection(p)
    p.set_defaults(func=cmd_rank_table)

    from .data_cli import add_parsers as add_data_parsers  # data prepare|upload|status|put-checkpoint

    add_data_parsers(commands, _add_connection)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # urllib3 warns on every connection retry; the error that follows says it in one line.
    logging.getLogger("urllib3").setLevel(logging.DEBUG if args.verbose else logging.ERROR)
    try:
        return args.func(args)
    except ClientError as e:
        _say(f"error: {e}")
        if args.verbose and e.__cause__ is not None:
            _say(f"  caused by: {type(e.__cause__).__name__}: {str(e.__cause__).strip()[:500]}")
        return EXIT_USER_ERROR
    except WaitTimeout as e:
        _say(f"error: {e}")
        return EXIT_TIMEOUT
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
