"""The command line: help for every command, render without a cluster, no MindSpore, lazy kubernetes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMMANDS = {
    "render": ["--loss", "--stages", "--servers", "--devices-per-server", "--image", "--namespace", "--queue",
               "--name", "--data-pvc", "--data-subpath", "--runs-pvc", "--pretrained-ckpt", "--set", "--launch",
               "-f FILE"],
    "submit": ["--no-fill", "--fill-timeout", "--kubeconfig", "--context", "--loss", "--servers"],
    "status": ["name", "--kubeconfig", "--context", "--namespace"],
    "list": ["--all"],
    "wait": ["--timeout", "exit 124"],
    "logs": ["--follow", "--rank N"],
    "cancel": ["name"],
    "rank-table": ["--fill JOB", "--hccn-conf FILE", "--server-ip IP", "--device-ips", "--devices", "--watch"],
}


def test_main_help_lists_every_command(run):
    result = run("--help")
    assert result.code == 0
    for command in COMMANDS:
        assert command in result.out
    assert "kubectl apply -k manifests/cluster" in result.out


@pytest.mark.parametrize("command, expected", COMMANDS.items(), ids=COMMANDS.keys())
def test_command_help(run, command, expected):
    result = run(command, "--help")
    assert result.code == 0
    text = " ".join(result.out.split())
    for item in expected:
        assert item in text, f"{command} --help does not mention {item}"


def test_missing_command_is_one_line(run):
    result = run()
    assert result.code == 2 and result.err.count("\n") == 1 and result.err.startswith("error: ")


def _clean_env(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("KUBECONFIG", None)
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return env


def test_render_runs_without_any_cluster_config_and_imports_neither_mindspore_nor_kubernetes(tmp_path):
    code = ("import sys\n"
            "from operator_client.cli import main\n"
            "assert main(['render', '--loss', 'triplet', '--name', 'offline', '--servers', '4']) == 0\n"
            "print('loaded:', sorted(m for m in ('kubernetes', 'mindspore') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_clean_env(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    *manifest, loaded = done.stdout.rstrip("\n").split("\n")
    assert loaded == "loaded: []"
    docs = list(yaml.safe_load_all("\n".join(manifest)))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Job"]


def test_the_package_never_imports_mindspore_and_imports_kubernetes_lazily():
    for path in (REPO / "operator_client").rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            assert not stripped.startswith(("import mindspore", "from mindspore")), f"{path.name}: {line}"
            assert not line.startswith(("import kubernetes", "from kubernetes")), \
                f"{path.name} imports kubernetes at module level: {line}"
