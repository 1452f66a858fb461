"""Fixtures: a Kubernetes API emulator on loopback, a kubeconfig for it, the CLI in-process."""
from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from operator_client.cli import main

from .emulator import ApiServer, Player, ServerThread

NAMESPACE = "ml"
POLL = "0.02"  # seconds: the CLI's --poll-interval in tests
PLAYER_AGENT = "test-player"


@dataclasses.dataclass
class Cluster:
    """The emulator, its URL, a kubeconfig pointing at it and a Player acting as Volcano."""

    server: ApiServer
    url: str
    kubeconfig: Path
    player: Player
    namespace: str = NAMESPACE

    def client_requests(self, plural: str | None = None) -> list:
        """API requests made by the client under test (not by the player), optionally of one resource."""
        return [r for r in self.server
                if r.resource is not None and r.resource.plural
                and r.headers.get("User-Agent") != PLAYER_AGENT
                and (plural is None or r.resource.plural == plural)]

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
        player_api = config.new_client_from_config(config_file=str(kubeconfig))
        player_api.user_agent = PLAYER_AGENT  # tells the player's requests from the client's
        player = Player(player_api, NAMESPACE)
        if namespace:
            player.create_namespace(namespace)
            seed_volume_record(player, namespace)
        yield Cluster(server, thread.url, kubeconfig, player)


def seed_volume_record(player: Player, namespace: str) -> None:
    """The data volume as `data put-checkpoint` leaves it: the default ImageNet backbone recorded
    (submit refuses to pretrain without it; tests/operator_client/test_data.py tests that)."""
    from operator_client import names
    from operator_client.data import record_manifest
    from operator_client.data_render import DataTarget

    checkpoint = {"finding": "checkpoint", "path": names.DEFAULT_PRETRAINED_CKPT, "present": True,
                  "bytes": 102_400_000, "sha256": "ab" * 32}
    player.core.create_namespaced_config_map(
        namespace, record_manifest(DataTarget(namespace=namespace), [checkpoint]), _preload_content=False)


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


def eventually(check, timeout: float = 10.0, interval: float = 0.02):
    """Poll `check()` until it returns a truthy value (returned) or fail after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except Exception:  # noqa: BLE001 - e.g. 404 until the object exists
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {getattr(check, '__name__', check)}")
        time.sleep(interval)


@pytest.fixture
def background():
    """Run a callable in a daemon thread: fut = background(fn, *args); fut.result(timeout).

    Daemon threads, never joined: a failing test must not hang on a client that still waits;
    it stops with an error once the API server is gone.
    """
    import threading
    from concurrent.futures import Future

    def submit(fn, *args, **kwargs) -> Future:
        future: Future = Future()

        def target() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:  # noqa: BLE001 - handed to the test through the future
                future.set_exception(e)

        threading.Thread(target=target, daemon=True).start()
        return future

    yield submit


@pytest.fixture(scope="session")
def kubectl() -> str:
    """A real kubectl: $KUBECTL, else the one on PATH (Debian: apt-get install -y kubernetes-client).

    Missing: a failure in CI (env CI set), else a skip that says why.
    """
    path = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if path is None:
        message = "kubectl not found: apt-get install -y kubernetes-client (or set KUBECTL=/path/to/kubectl)"
        if os.environ.get("CI"):
            pytest.fail(message)
        print(message)
        pytest.skip(message)
    return path
