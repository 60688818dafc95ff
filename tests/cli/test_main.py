"""The `deepfake` entry point itself: --version, help text on the flags."""
from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib

import pytest

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


def _subcommand(path: list[str]) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        [choices] = [a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = choices[name]
    return parser


@pytest.mark.parametrize("path", [["analyze"], ["serve"], ["web"], ["worker"], ["db", "upgrade"],
                                  ["submit"], ["status"], ["result"]])
def test_every_argument_has_help_text(path):
    parser = _subcommand(path)

    unexplained = [action.option_strings or action.dest for action in parser._actions
                   if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()]

    assert unexplained == []


def test_a_missing_command_module_is_an_error_not_a_missing_command(monkeypatch):
    monkeypatch.setattr(cli.main, "COMMAND_MODULES", (*cli.main.COMMAND_MODULES, "cli.not_there"))

    with pytest.raises(ModuleNotFoundError, match="cli.not_there"):
        build_parser()


def test_top_level_flags_have_help_text():
    parser = build_parser()
    assert all(action.help for action in parser._actions if action.option_strings)


def test_serve_help_says_that_no_workers_means_no_analysis():
    [workers] = [action for action in _subcommand(["serve"])._actions if "--workers" in action.option_strings]

    assert "0: web only, no analysis here" in workers.help
