"""The real ``python -m bot`` process on PostgreSQL: one /sora job from command to posted video and charge."""

from __future__ import annotations

import asyncpg
import pytest

from tests.e2e.world import world

pytestmark = pytest.mark.timeout(120)

# Trust auth ignores it, but the bot must never print it.
PASSWORD = "pg-s3cret-never-logged"


async def test_a_sora_job_runs_and_is_charged_on_postgres(pg_dsn: str) -> None:
    dsn = pg_dsn.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")
    async with world("relay", env={"DATABASE_URL": dsn}) as w:
        ia = await w.sora("a lighthouse in a storm", duration=4)
        assert "queued" in await w.followup_text(ia)
        (video,) = await w.wait_video()
        assert video.content.startswith(f"<@{w.discord.user.id}>")
        await w.wait_status("Done")
        assert w.submits() == 1
        log_text = w.bot.log_text()
        assert f"using PostgreSQL at 127.0.0.1:{dsn.rsplit(':', 1)[-1]}" in log_text  # host, port, db only
        assert PASSWORD not in log_text
        assert not (w.bot.workdir / "data" / "bot.db").exists(), "nothing may go to SQLite"
    conn = await asyncpg.connect(pg_dsn)
    try:
        jobs = await conn.fetch("SELECT state, provider, cost FROM jobs")
        charged = await conn.fetch("SELECT kind, SUM(amount) FROM ledger GROUP BY kind")
    finally:
        await conn.close()
    assert [tuple(r) for r in jobs] == [("succeeded", "relay", 4)]
    assert {r[0]: r[1] for r in charged} == {"reserve": 4, "capture": 4}
