"""The project's own checks, run with the tests so that the one test command (README, .ci/run) fails on
a lint finding, an unformatted file or a type error: ruff (rules in pyproject.toml), ruff format, and
mypy over bot/ and cogs/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(600)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_finds_nothing() -> None:
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_file_is_formatted() -> None:
    result = run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_types_check() -> None:
    result = run("mypy")  # files and strictness from [tool.mypy] in pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr
