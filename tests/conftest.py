from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

# The throwaway PostgreSQL server, for every test that asks for it (tests/pg, tests/storage, tests/faults).
from tests.pg.fixtures import pg_dsn, pg_server

__all__ = ["pg_dsn", "pg_server"]


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
