"""Fixtures shared by all tests: a tiny demo dataset in SOP layout (built once per session)."""
import os
import sys
from pathlib import Path

import pytest

# msrun and the launcher start workers with the `python` on PATH: the venv's first.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

TINY = ["--set", "image_size=32", "--set", "batch_size=16", "--set", "num_workers=2"]


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    from job.data import make_demo_data

    root = tmp_path_factory.mktemp("tiny-demo")
    make_demo_data(root, train_classes=40, test_classes=30, image_size=32, seed=5)
    return root
