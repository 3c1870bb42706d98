"""The throwaway PostgreSQL server: one per xdist worker, one fresh database per test. Registered for the
whole suite by tests/conftest.py, so the storage tests (tests/storage/conftest.py) run on it too.

Without PostgreSQL binaries the tests are skipped locally, but FAIL when ``CI`` is set: CI installs the
server with ``.ci/pg`` and must never skip these silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import asyncpg
import pytest

from tests.pg.server import PgServer, find_bin_dir, running_server


def require_binaries(bin_dir: Path | None, environ: Mapping[str, str]) -> Path:
    """The bin dir; without one, skip locally but fail under CI (CI must never skip these silently)."""
    if bin_dir is None:
        reason = "PostgreSQL binaries not found (/usr/lib/postgresql/*/bin); run .ci/pg to install them"
        if environ.get("CI"):
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(reason)
    return bin_dir


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    with running_server(require_binaries(find_bin_dir(), os.environ)) as server:
        yield server


@pytest.fixture
async def pg_dsn(pg_server: PgServer) -> AsyncIterator[str]:
    """The DSN of an empty database made for this test alone."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(pg_server.dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield pg_server.dsn_for(name)
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()
