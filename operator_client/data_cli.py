"""`python -m operator_client data ...`: the command line of operator_client.data.

    data prepare --from-url URL [--sha256 HEX] | --from-pvc-path PATH [--source-pvc PVC]
    data upload PATH            (a local archive or unpacked folder, streamed through a pod)
    data status [-o json]       (what is on the volume, one line per finding)
    data put-checkpoint FILE    (the ImageNet ResNet50 backbone, where submit looks for it)

Every command takes `--local DIR` to act on a folder of this machine instead of the cluster.
Findings go to stdout, one line each; the pods' progress and the waiting status to stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import names
from .errors import ClientError

PROG = "python -m operator_client data"


def _add_target(parser: argparse.ArgumentParser, add_connection: Callable[..., None]) -> None:
    group = parser.add_argument_group("the data volume")
    group.add_argument("--data-pvc", default=names.DEFAULT_DATA_PVC, metavar="PVC",
                       help=f"claim the rank pods mount at {names.DATA_MOUNT} (default: {names.DEFAULT_DATA_PVC})")
    group.add_argument("--data-subpath", default="", metavar="DIR",
                       help="its folder mounted at /data, as submit --data-subpath (default: the whole volume)")
    group.add_argument("--image", default=names.DEFAULT_IMAGE,
                       help=f"image with the job package for the data pod (default: {names.DEFAULT_IMAGE})")
    group.add_argument("--start-timeout", type=float, default=600.0, metavar="SECONDS",
                       help="how long the data pod may take to start (default: 600)")
    group.add_argument("--local", metavar="DIR",
                       help=f"act on this folder instead of the cluster: the dataset goes to "
                            f"DIR/{names.SOP_SUBDIR}, the backbone to DIR/{names.PRETRAINED_RELPATH}")
    add_connection(parser)


def _add_install_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("verification")
    group.add_argument("--sha256", metavar="HEX", help="expected SHA-256 of the archive")
    group.add_argument("--allow-partial", action="store_true",
                       help="install even if the image counts are not the official 59,551 / 60,502 "
                            "or listed images are missing")
    group.add_argument("--expect-train", type=int, metavar="N",
                       help="train images to expect instead of 59,551 (a dataset in SOP layout that is not SOP)")
    group.add_argument("--expect-test", type=int, metavar="N", help="test images to expect instead of 60,502")
    group.add_argument("--force", action="store_true", help="install again over a prepared dataset")


def add_parsers(commands: Any, add_connection: Callable[..., None]) -> None:
    """Register `data` and its subcommands on the top-level subparsers."""
    data = commands.add_parser(
        "data", help="put SOP and the pretrained backbone on the data volume; what is there",
        description=textwrap.fill(
            f"Get Stanford Online Products onto the data volume where the rank pods read it "
            f"({names.DATA_DIR}) and the ImageNet ResNet50 checkpoint where submit looks for it "
            f"({names.DEFAULT_PRETRAINED_CKPT}), through a short-lived Job or pod in the job image "
            f"(CPU only); or, with --local DIR, into a folder of this machine.", 88),
        epilog=f"examples:\n"
               f"  {PROG} prepare --from-url https://example.org/Stanford_Online_Products.zip --sha256 HEX\n"
               f"  {PROG} upload ~/Downloads/Stanford_Online_Products.zip\n"
               f"  {PROG} put-checkpoint resnet50_imagenet.ckpt\n"
               f"  {PROG} status",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True,
                                parser_class=type(data))

    p = verbs.add_parser(
        "prepare", help="fetch or copy the SOP archive onto the volume, verify, unpack, write the lists",
        description=textwrap.fill(
            "Run a Kubernetes Job that fetches the archive (http/https) or reads it from a claim, "
            "checks its SHA-256, unpacks it next to the dataset folder and renames it into place "
            "(a half-finished copy is never mistaken for data), checks both Ebay_*.txt files and the "
            "image counts per split, and writes the list files (full, half, tiny). On a prepared "
            "volume it does nothing and says so.", 88))
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-url", metavar="URL",
                        help="http(s) URL of Stanford_Online_Products.zip; for an object store "
                             "(s3://...) pass a pre-signed https URL")
    source.add_argument("--from-pvc-path", metavar="PATH",
                        help=f"archive or unpacked folder on the data volume, relative to its root "
                             f"(e.g. {names.INCOMING_SUBDIR}/Stanford_Online_Products.zip) or under "
                             f"{names.DATA_MOUNT}/; with --local, a path on this machine")
    p.add_argument("--source-pvc", metavar="PVC",
                   help=f"read --from-pvc-path from this claim instead (mounted read-only at "
                        f"{names.SOURCE_MOUNT}), e.g. a volume where SOP is already unpacked")
    _add_install_options(p)
    _add_target(p, add_connection)
    p.set_defaults(func=cmd_prepare)

    p = verbs.add_parser(
        "upload", help="stream a local archive or folder into the volume, then prepare it",
        description=textwrap.fill(
            f"Stream a local Stanford_Online_Products.zip (or the unpacked folder) into "
            f"{names.DATA_MOUNT}/{names.INCOMING_SUBDIR}/ through a short-lived pod (pod exec with "
            f"a tar stream, the `kubectl cp` way), with a progress bar, then install it as "
            f"`prepare --from-pvc-path` does and remove the staged copy.", 88))
    p.add_argument("path", metavar="PATH", help="the archive or the unpacked dataset folder")
    p.add_argument("--no-prepare", action="store_true",
                   help=f"only upload to {names.DATA_MOUNT}/{names.INCOMING_SUBDIR}/")
    _add_install_options(p)
    _add_target(p, add_connection)
    p.set_defaults(func=cmd_upload)

    p = verbs.add_parser(
        "status", help="what is on the volume: splits, counts, list files, missing images, checkpoint",
        description="Read the volume with a short-lived pod and print one line per finding "
                    "(also recorded in the ConfigMap that submit reads).")
    p.add_argument("--sample", type=int, metavar="N",
                   help="listed images per split looked for on disk (default: 200)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    _add_target(p, add_connection)
    p.set_defaults(func=cmd_status)

    p = verbs.add_parser(
        "put-checkpoint", help="place the ImageNet ResNet50 checkpoint where submit expects it",
        description=f"Copy FILE to {names.DEFAULT_PRETRAINED_CKPT} on the data volume (checked by "
                    f"SHA-256 on arrival, replaced atomically), the default of submit "
                    f"--pretrained-ckpt.")
    p.add_argument("file", metavar="FILE", help="the checkpoint (.ckpt)")
    _add_target(p, add_connection)
    p.set_defaults(func=cmd_put_checkpoint)


# --- commands -------------------------------------------------------------------------------

def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _backend(args: argparse.Namespace, line: Any) -> Any:
    from .data import DataClient, LocalData
    from .data_render import DataTarget

    if args.start_timeout <= 0:
        raise ClientError(f"--start-timeout must be positive, got {args.start_timeout:g}")
    if args.local:
        return LocalData(Path(args.local), on_progress=line, on_output=_output(line))
    from .cluster import Cluster

    if args.poll_interval <= 0:
        raise ClientError(f"--poll-interval must be positive, got {args.poll_interval:g}")
    target = DataTarget(namespace=args.namespace, data_pvc=args.data_pvc,
                        data_subpath=args.data_subpath, image=args.image)
    return DataClient(Cluster.connect(args.kubeconfig, args.context), target,
                      poll_interval=args.poll_interval, start_timeout=args.start_timeout,
                      on_progress=line, on_output=_output(line))


def _output(line: Any) -> Callable[[str], None]:
    def show(text: str) -> None:
        line.close()
        _say(text)
    return show


def _options(args: argparse.Namespace) -> Any:
    from .data import InstallOptions

    for flag in ("expect_train", "expect_test"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ClientError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    return InstallOptions(sha256=args.sha256, allow_partial=args.allow_partial, force=args.force,
                          expect_train=args.expect_train, expect_test=args.expect_test)


def _print_findings(findings: list[dict[str, Any]]) -> None:
    from .data import format_finding

    for finding in findings:
        print(format_finding(finding))


def _run(args: argparse.Namespace, action: Callable[[Any], Any], interrupted: str | None = None) -> Any:
    from .cli import StatusLine

    line = StatusLine()
    try:
        return action(_backend(args, line))
    except KeyboardInterrupt:
        line.close()
        if interrupted and not args.local:
            _say(interrupted)
        raise
    finally:
        line.close()


def cmd_prepare(args: argparse.Namespace) -> int:
    options = _options(args)
    if args.local:
        if args.source_pvc:
            raise ClientError("--source-pvc names a claim of the cluster; with --local give the path "
                              "on this machine in --from-pvc-path")
        source = args.from_url or str(Path(args.from_pvc_path).expanduser().resolve())
        findings = _run(args, lambda b: b.prepare(source, options=options))
    else:
        findings = _run(args, lambda b: b.prepare(args.from_url or args.from_pvc_path,
                                                  from_url=bool(args.from_url), options=options,
                                                  source_pvc=args.source_pvc),
                        interrupted="interrupted: the install Job keeps running in the cluster; "
                                    f"see it with `{PROG} status` later, or kubectl get jobs")
    _print_findings(findings)
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    path = Path(args.path).expanduser()
    if not path.exists():
        raise ClientError(f"{path} does not exist")
    findings = _run(args, lambda b: b.upload(path, options=_options(args), prepare=not args.no_prepare))
    _print_findings(findings)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    if args.sample is not None and args.sample < 0:
        raise ClientError(f"--sample must be >= 0, got {args.sample}")
    findings = _run(args, lambda b: b.status(sample=args.sample))
    if args.output == "json":
        print(json.dumps(findings, indent=2))
    else:
        _print_findings(findings)
    return 0


def cmd_put_checkpoint(args: argparse.Namespace) -> int:
    file = Path(args.file).expanduser()
    if not file.is_file():
        raise ClientError(f"checkpoint {file} is not a file")
    finding = _run(args, lambda b: b.put_checkpoint(file))
    _print_findings([finding])
    return 0
