"""The throwaway-server fixture's rules: skip locally without PostgreSQL, fail under CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pg.fixtures import require_binaries


def test_missing_binaries_fail_under_ci() -> None:
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_binaries(None, {"CI": "true"})


def test_missing_binaries_skip_locally() -> None:
    with pytest.raises(pytest.skip.Exception, match=r"\.ci/pg"):
        require_binaries(None, {})


def test_found_binaries_are_used() -> None:
    assert require_binaries(Path("/x/bin"), {"CI": "true"}) == Path("/x/bin")
