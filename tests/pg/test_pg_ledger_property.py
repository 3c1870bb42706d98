"""tests/storage's property test (the ledger always matches an independent model), on PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tests.storage.test_repository as shared
from bot.storage.postgres import PostgresRepository, connect
from tests.pg.server import PgServer


async def _fresh_database(server: PgServer) -> str:
    name = f"p_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(server.dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    pool = await connect(server.dsn_for(name))  # migrate once, so each example only empties the tables
    await pool.close()
    return server.dsn_for(name)


async def _empty(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE jobs, ledger, callback_secrets RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def property_dsn(pg_server: PgServer) -> str:
    return asyncio.run(_fresh_database(pg_server))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(allowance=st.integers(min_value=0, max_value=40), ops=shared.operations)
def test_ledger_balance_matches_an_independent_model(
    property_dsn: str, allowance: int, ops: list[tuple[str, int]]
) -> None:
    asyncio.run(_empty(property_dsn))
    with pytest.MonkeyPatch.context() as patch:
        # The shared body opens ``Repository(await connect(path))``: point both names at PostgreSQL.
        patch.setattr(shared, "connect", connect)
        patch.setattr(shared, "Repository", PostgresRepository)
        asyncio.run(shared._run_operations(property_dsn, allowance, ops))  # type: ignore[arg-type]
