"""Migration 0004 on a real SQLite file: lineage columns round-trip, /jobs paging queries, deletion marks."""

from __future__ import annotations

from bot.jobs.store import Store


async def make(repo: Store, user: str, guild: str, **extra: object) -> int:
    job = await repo.create_job(
        provider="relay",
        user_id=user,
        guild_id=guild,
        prompt="p",
        seconds=4,
        size="1280x720",
        model="sora-2",
        extra=dict(extra),
    )
    return job.id


async def test_lineage_and_privacy_round_trip(repo: Store) -> None:
    source = await make(repo, "u1", "g1")
    child = await make(
        repo, "u1", "g1", kind="remix", source_job_id=source, source_provider_job_id="vid_1", private=True
    )
    job = await repo.get_job(child)
    assert job is not None
    assert (job.kind, job.source_job_id, job.source_provider_job_id, job.private) == ("remix", source, "vid_1", True)
    plain = await repo.get_job(source)
    assert plain is not None and (plain.kind, plain.private, plain.source_job_id) == ("new", False, None)


async def test_paging_queries_count_and_order(repo: Store) -> None:
    ids = [await make(repo, "u1" if i % 2 else "u2", "g1") for i in range(25)]
    await make(repo, "u1", "other-guild")
    assert await repo.count_jobs("u1") == 13 and await repo.count_guild_jobs("g1") == 25
    page2 = await repo.guild_jobs("g1", limit=10, offset=10)
    assert [j.id for j in page2] == sorted(ids, reverse=True)[10:20]


async def test_mark_result_deleted_once(repo: Store) -> None:
    job_id = await make(repo, "u1", "g1")
    assert await repo.mark_result_deleted(job_id, now=123.0) is True
    assert await repo.mark_result_deleted(job_id, now=456.0) is False
    job = await repo.get_job(job_id)
    assert job is not None and job.result_deleted_at == 123.0
