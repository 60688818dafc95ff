"""The `deepfake` entry point itself: --version."""
from __future__ import annotations

import subprocess
import sys
import tomllib


import cli.main
from cli.main import build_parser, package_version
from tests.conftest import REPO_ROOT

PROJECT_VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_version_prints_the_package_version():
    done = subprocess.run([sys.executable, "-m", "cli", "--version"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"deepfake {PROJECT_VERSION}"


def test_version_falls_back_to_pyproject_when_not_installed(monkeypatch):
    monkeypatch.setattr(cli.main, "DISTRIBUTION", "deepfake-detector-not-installed")

    assert package_version() == PROJECT_VERSION
