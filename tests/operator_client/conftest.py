"""Fixtures: a Kubernetes API emulator on loopback, a kubeconfig for it, the CLI in-process."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from operator_client.cli import main

from .emulator import ApiServer, Player, ServerThread

NAMESPACE = "ml"
POLL = "0.02"  # seconds: the CLI's --poll-interval in tests


@dataclasses.dataclass
class Cluster:
    """The emulator, its URL, a kubeconfig pointing at it and a Player acting as Volcano."""

    server: ApiServer
    url: str
    kubeconfig: Path
    player: Player
    namespace: str = NAMESPACE

    def args(self) -> list[str]:
        """Connection flags for the CLI."""
        return ["--kubeconfig", str(self.kubeconfig), "-n", self.namespace, "--poll-interval", POLL]


def write_kubeconfig(path: Path, url: str, namespace: str = NAMESPACE) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "tester", "user": {"token": "test-token"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester",
                                                       "namespace": namespace}}],
    }))
    return path


def _serve(tmp_path: Path, *, volcano: bool, namespace: str | None = NAMESPACE) -> Iterator[Cluster]:
    from kubernetes import config

    server = ApiServer()
    if volcano:
        server.declare_volcano()
    with ServerThread(server) as thread:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", thread.url)
        player = Player(config.new_client_from_config(config_file=str(kubeconfig)), NAMESPACE)
        if namespace:
            player.create_namespace(namespace)
        yield Cluster(server, thread.url, kubeconfig, player)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """An API server with Volcano's resources and the namespace `ml`."""
    yield from _serve(tmp_path, volcano=True)


@pytest.fixture
def cluster_without_volcano(tmp_path: Path) -> Iterator[Cluster]:
    yield from _serve(tmp_path, volcano=False)


@dataclasses.dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]):
    """Run the CLI in-process: run("status", "job") -> Result(code, out, err)."""
    def _run(*argv: str) -> Result:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as e:  # argparse errors and --help
            code = int(e.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)
    return _run
