"""Discord chaos against the real bot process: 429s on edits and uploads, 5xx on the upload (lost
answers included), the gateway dropping mid-job. Each video is posted exactly once, or the job ends
failed and refunded with nothing posted."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.world import World
from tests.faults import STORE_THEN_FAIL, audit, chaos_world, video_posts, wait_all_terminal

pytestmark = pytest.mark.timeout(90)

UPLOAD = {"path_contains": "/messages", "method": "POST"}


def ledger(w: World, job_id: int) -> dict[str, int]:
    return dict(w.db_rows("SELECT kind, SUM(amount) FROM ledger WHERE job_id = ? GROUP BY kind", (job_id,)))


def jobs(w: World) -> int:
    return int(w.db_rows("SELECT COUNT(*) FROM jobs")[0][0])


def assert_clean(w: World) -> None:
    result = audit(w)
    assert result.problems == [], "\n".join(result.problems)


async def test_429_storms_on_edits_and_uploads_still_post_each_video_once() -> None:
    async with chaos_world(run_seconds=1.5) as w:
        w.discord.inject(429, times=8, path_contains="/messages/", method="PATCH", headers={"Retry-After": "0.3"})
        w.discord.inject(429, {"message": "slow", "retry_after": 0.2, "global": False}, times=4, **UPLOAD)
        users = [w.discord.add_user(f"storm{i}").id for i in range(3)]
        for n, user in enumerate(users):
            await w.sora(f"stormy {n}", duration=4, user_id=user)
        await w.wait_video(3, timeout=40)
        await wait_all_terminal(w, timeout=30)
        for message in w.status_messages():
            await w.discord.wait_for(lambda m=message: "Done" in str(m.embeds), 20, what="the final edit")
        await asyncio.sleep(0.5)
        assert w.discord.count_429 >= 12, "the storm was met"
        assert sorted(video_posts(w).values()) == [1, 1, 1]
        assert_clean(w)


async def test_5xx_on_upload_posts_once_or_fails_and_refunds() -> None:
    async with chaos_world(run_seconds=1.0) as w:
        # One user per job: nobody waits for a per-user slot.
        second, third = (w.discord.add_user(f"u{n}").id for n in (2, 3))
        # Job 1: Discord stores the video but the 500 answer is lost; discord.py retries with the same
        # nonce and must get the stored message back, not post a second one.
        await w.sora("lost answer", duration=4)
        await w.discord.wait_for(lambda: jobs(w) == 1, 10, what="the first job")  # its status message is out
        w.discord.inject(500, STORE_THEN_FAIL, **UPLOAD)
        await w.wait_video(1, timeout=30)
        await wait_all_terminal(w, timeout=20)
        assert w.discord.nonce_hits >= 1, "the retry was answered from the nonce"
        # Job 2: a plain 502 then success.
        await w.sora("flaky gateway", duration=4, user_id=second)
        await w.discord.wait_for(lambda: jobs(w) == 2, 10, what="the second job")
        w.discord.inject(502, "bad gateway", **UPLOAD)
        await w.wait_video(2, timeout=30)
        await wait_all_terminal(w, timeout=20)
        # Job 3: a 503, which discord.py does not retry. Either the bot posts it (the nonce makes a retry
        # safe) or it gives up: then the job fails and is refunded with nothing posted.
        await w.sora("unavailable", duration=4, user_id=third)
        await w.discord.wait_for(lambda: jobs(w) == 3, 10, what="the third job")
        w.discord.inject(503, "unavailable", **UPLOAD)
        await wait_all_terminal(w, timeout=30)
        await asyncio.sleep(1.0)
        states = w.db_rows("SELECT id, state FROM jobs ORDER BY id")
        assert [s for _, s in states][:2] == ["succeeded", "succeeded"], states
        job_id, state = states[2]
        if state == "failed":
            assert ledger(w, job_id) == {"reserve": 4, "refund": 4}
            assert job_id not in video_posts(w)
        assert_clean(w)


async def test_a_lost_answer_to_a_503_upload_neither_fails_the_job_nor_posts_twice() -> None:
    async with chaos_world(run_seconds=1.0) as w:
        await w.sora("stored, then 503", duration=4)
        await w.discord.wait_for(lambda: jobs(w) == 1, 10, what="the job")
        w.discord.inject(503, STORE_THEN_FAIL, **UPLOAD)
        await wait_all_terminal(w, timeout=30)
        await asyncio.sleep(1.0)
        assert dict(video_posts(w)) == {1: 1}
        assert w.db_rows("SELECT state FROM jobs") == [("succeeded",)]
        assert ledger(w, 1) == {"reserve": 4, "capture": 4}
        assert_clean(w)


async def test_gateway_disconnect_mid_job_resumes_and_misses_nothing() -> None:
    async with chaos_world(run_seconds=3.0) as w:
        first = await w.sora("through the storm", duration=4)
        await w.wait_status("Generating")
        resumes = len(w.discord.gateway.resumes)
        await w.discord.disconnect_gateway()
        # Sent while the bot is away: replayed on RESUME and still answered.
        late = await w.discord.send_interaction(
            command="sora", options={"prompt": "sent while away", "duration": 4}, user_id=w.discord.other_user.id
        )
        await late.wait_callback(timeout=10)
        assert late.callback_type == 5
        await w.discord.wait_for(lambda: len(w.discord.gateway.resumes) > resumes, 10, what="a RESUME")
        await w.discord.invalidate_session()  # and once more, not resumable this time
        await w.wait_video(2, timeout=40)
        await wait_all_terminal(w, timeout=20)
        await asyncio.sleep(0.5)
        assert first.followups and late.followups
        assert sorted(video_posts(w).values()) == [1, 1]
        assert_clean(w)
        assert "Traceback" not in w.bot.log_text(), w.bot.log_tail(60)
