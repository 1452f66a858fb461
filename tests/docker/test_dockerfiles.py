"""What can be checked about the images without a docker engine: both Dockerfiles parse,
take the base image as a build argument, copy only files that exist, install this package,
run as a non-root user, and enter through a module that exists."""
import importlib.util
import io
import re
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
FILES = {"ascend": ROOT / "docker" / "Dockerfile", "cpu": ROOT / "docker" / "Dockerfile.cpu"}


def parse(path):
    p = DockerfileParser(fileobj=io.BytesIO(path.read_bytes()), cache_content=True)
    return p, [(i["instruction"], i["value"]) for i in p.structure]


@pytest.fixture(params=list(FILES), ids=list(FILES))
def dockerfile(request):
    return request.param, *parse(FILES[request.param])


def test_base_image_is_a_build_argument(dockerfile):
    kind, p, instr = dockerfile
    first_from = next(i for i, (k, _) in enumerate(instr) if k == "FROM")
    args_before = [v.split("=", 1) for k, v in instr[:first_from] if k == "ARG"]
    assert ["BASE_IMAGE"] == [a[0] for a in args_before]
    assert instr[first_from][1] == "${BASE_IMAGE}"
    default = args_before[0][1]
    if kind == "ascend":
        assert "cann" in default and "py3.11" in default       # CANN + Python 3.11
    else:
        assert default.startswith("python:3.11")


def test_every_copy_source_exists_and_is_not_ignored(dockerfile):
    _, _, instr = dockerfile
    ignore = (ROOT / ".dockerignore").read_text().split()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copies = [v.split() for k, v in instr if k == "COPY"]
    assert copies
    for parts in copies:
        for src in parts[:-1]:
            if src.startswith("--"):
                continue
            assert (ROOT / src).exists(), src
            assert src.rstrip("/") in allowed, f"{src} is excluded by .dockerignore"


def test_installs_the_pinned_mindspore_and_this_package(dockerfile):
    _, p, instr = dockerfile
    runs = " ".join(v for k, v in instr if k == "RUN")
    assert re.search(r'pip install "mindspore==\$\{MINDSPORE_VERSION\}" "\."', runs)
    version = dict(a.split("=", 1) for k, a in instr if k == "ARG" and "=" in a)["MINDSPORE_VERSION"]
    pins = (ROOT / "pyproject.toml").read_text()
    assert version.startswith("2.8.") and '"mindspore>=2.8,<2.9"' in pins


def test_runs_as_a_non_root_user(dockerfile):
    kind, _, instr = dockerfile
    users = [v for k, v in instr if k == "USER"]
    assert users and users[-1] not in ("root", "0")
    runs = " ".join(v for k, v in instr if k == "RUN")
    assert "useradd" in runs and users[-1] in runs
    if kind == "ascend":       # the driver's device nodes belong to HwHiAiUser
        assert "HwHiAiUser" in runs and "--gid ${ASCEND_GID}" in runs


def test_entrypoint_module_exists(dockerfile):
    _, _, instr = dockerfile
    import json
    (entry,) = [json.loads(v) for k, v in instr if k == "ENTRYPOINT"]
    assert entry[:3] == ["python3", "-m", "job"]
    assert importlib.util.find_spec(entry[2]) is not None
    from job.cli import COMMANDS
    assert entry[3] in COMMANDS
    workdirs = [v for k, v in instr if k == "WORKDIR"]
    assert workdirs


def test_no_secrets_or_downloads(dockerfile):
    _, p, _ = dockerfile
    text = p.content.lower()
    for bad in ("curl ", "wget ", "password", "token", "secret", "aws_"):
        assert bad not in text, bad
