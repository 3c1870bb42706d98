"""/sora end to end: the real bot process, a fake Discord and a fake video provider per test."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from tests.e2e.world import PROVIDERS, world
from tests.fakes.discord import RateLimitRule

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_happy_path_posts_one_video_mentioning_only_the_requester(provider: str) -> None:
    async with world(provider) as w:
        ia = await w.sora("a fox @everyone <@&123> jumps over a fence", duration=4)
        assert ia.callback_type == 5 and ia.ephemeral, "must defer ephemerally at once"
        assert ia.callback_latency is not None and ia.callback_latency < 3
        assert "queued" in await w.followup_text(ia)

        (video,) = await w.wait_video()
        user = w.discord.user.id
        assert video.content.startswith(f"<@{user}>")
        assert video.allowed_mentions is not None
        assert video.allowed_mentions.get("parse") == []
        assert [str(u) for u in video.allowed_mentions.get("users", [])] == [str(user)]
        # The idempotency nonce is the job's own (a random one would not stop a repeat after a crash).
        ((job_id,),) = w.db_rows("SELECT id FROM jobs")
        assert video.nonce == f"sora-job-{job_id}"
        (post,) = [r for r in w.discord.requests_to("/messages", "POST") if r.files]
        assert post.json["nonce"] == f"sora-job-{job_id}" and post.json["enforce_nonce"] is True
        done = await w.wait_status("Done")
        assert done.components == [], "the Cancel button goes away when the job is over"
        assert w.submits() == (0 if provider == "demo" else 1)
        # The status message is an ordinary channel message (bot token), not the interaction response.
        assert done.webhook_id is None
        key = getattr(w.video_fake, "api_key", None)
        if key:
            assert key not in w.bot.log_text()
            assert all(key not in str(m.embeds) + m.content for m in w.discord.messages(w.discord.channel.id))
        charged = w.db_rows("SELECT kind, SUM(amount) FROM ledger GROUP BY kind")
        assert dict(charged) == {"reserve": 4, "capture": 4}


async def test_invalid_combination_is_refused_politely_with_nothing_sent() -> None:
    async with world("relay") as w:
        ia = await w.sora("a tall city", size="1024x1792", model="sora-2")
        text = await w.followup_text(ia)
        assert "1024x1792" in text and "1280x720" in text, text
        assert ia.followups[-1].flags & 64, "errors are ephemeral"
        await asyncio.sleep(0.5)
        assert w.status_messages() == [] and w.submits() == 0
        assert w.db_rows("SELECT COUNT(*) FROM ledger") == [(0,)]


async def test_reference_image_is_fitted_and_passed_by_url() -> None:
    async with world("relay", require_image_size=(1280, 720)) as w:
        buf = io.BytesIO()
        Image.new("RGB", (800, 800), (200, 30, 30)).save(buf, "PNG")
        attachment = w.discord.upload_user_attachment(buf.getvalue(), "photo.png", "image/png", width=800, height=800)
        ia = await w.discord.send_interaction(
            command="sora",
            options={"prompt": "make it move", "duration": 4, "image": attachment["id"]},
            attachments=[attachment],
        )
        await ia.wait_callback(timeout=3)
        await w.wait_video()
        (submit,) = w.video_fake.requests_to("/v2/videos/generations", "POST")  # type: ignore[union-attr]
        (url,) = submit.json()["images"]
        assert url.startswith(w.discord.base_url + "/attachments/"), url
        assert w.video_fake.fetched_images == [url]  # type: ignore[union-attr]


async def test_reference_image_bytes_for_openai_style_provider() -> None:
    async with world("openai") as w:
        buf = io.BytesIO()
        Image.new("RGB", (300, 600), (10, 200, 30)).save(buf, "JPEG")
        attachment = w.discord.upload_user_attachment(buf.getvalue(), "p.jpg", "image/jpeg", width=300, height=600)
        ia = await w.discord.send_interaction(
            command="sora",
            options={"prompt": "portrait", "duration": 4, "size": "720x1280", "image": attachment["id"]},
            attachments=[attachment],
        )
        await ia.wait_callback(timeout=3)
        await w.wait_video()
        (form,) = w.video_fake.forms  # type: ignore[union-attr]
        with Image.open(io.BytesIO(form["input_reference"].data)) as sent:
            assert sent.size == (720, 1280)


async def test_moderation_failure_is_explained_and_refunded() -> None:
    async with world("relay", fail_with="output video flagged by moderation", fail_at=0.9) as w:
        await w.sora("something", duration=4)
        failed = await w.wait_status("Failed")
        assert "safety system rejected the finished video" in str(failed.embeds)
        assert w.videos() == []
        assert dict(w.db_rows("SELECT kind, SUM(amount) FROM ledger GROUP BY kind")) == {"reserve": 4, "refund": 4}


async def test_interaction_token_expiry_mid_job_does_not_matter() -> None:
    async with world("relay", run_seconds=3.0) as w:
        ia = await w.sora("slow one", duration=4)
        await w.followup_text(ia)
        w.discord.expire_all_tokens()
        await w.wait_video()
        await w.wait_status("Done")
        late = [c for c in ia.webhook_calls if c.status == 401] if hasattr(ia, "webhook_calls") else []
        assert late == [], "nothing may use the interaction token after the first answer"


async def test_deleted_status_message_is_left_alone() -> None:
    async with world("relay", run_seconds=4.0) as w:
        await w.sora("going away", duration=4)
        status = await w.wait_status("Generating")
        await w.discord.remove_message(status)
        await w.wait_video()
        misses = [r for r in w.discord.requests_to(f"/messages/{status.id}", "PATCH") if r.status == 404]
        assert len(misses) <= 1, f"kept editing a deleted message: {len(misses)} 404s"


async def test_edit_rate_limits_are_respected_and_the_final_state_lands() -> None:
    async with world("relay", run_seconds=4.0) as w:
        w.discord.edit_rule = RateLimitRule(limit=2, per=3.0)
        for _ in range(3):
            await w.sora("busy channel", duration=4, user_id=w.discord.add_user(f"u{_}").id)
        await w.wait_video(3, timeout=90)
        for message in w.status_messages():
            await w.discord.wait_for(lambda m=message: "Done" in str(m.embeds), 30, what="final edit")
        edits = w.discord.requests_to("/messages/", "PATCH")
        # Coalescing: far fewer edits than progress polls, and discord.py waited out any 429 it met.
        assert len(edits) < 40, len(edits)


async def test_a_25_mb_result_is_shrunk_under_a_10_mib_limit(big_clip: bytes) -> None:
    async with world("relay", video_bytes=big_clip) as w:
        assert w.discord.upload_limit == 10 * 1024 * 1024
        await w.sora("big", duration=4)
        (video,) = await w.wait_video(timeout=110)
        assert video.attachments[0].size <= 10 * 1024 * 1024
        assert "Re-encoded" in str(video.embeds)
        too_large = [r for r in w.discord.requests_to("/messages", "POST") if r.status == 413]
        assert too_large == []


async def test_sigkill_mid_job_resumes_without_a_second_submit_or_post() -> None:
    async with world("relay", run_seconds=6.0) as w:
        await w.sora("survive a crash", duration=4)
        await w.wait_status("Generating")
        assert w.submits() == 1
        await w.bot.restart(hard=True)
        await w.wait_video()
        await w.wait_status("Done")
        await asyncio.sleep(1.0)
        assert w.submits() == 1
        assert len(w.videos()) == 1
        assert dict(w.db_rows("SELECT kind, SUM(amount) FROM ledger GROUP BY kind")) == {"reserve": 4, "capture": 4}


async def test_a_burst_of_50_interactions_is_all_acknowledged() -> None:
    async with world("relay", run_seconds=30.0) as w:
        users = [w.discord.add_user(f"burst{i}") for i in range(50)]
        sends = [
            w.discord.send_interaction(command="sora", options={"prompt": f"clip {i}", "duration": 4}, user_id=u.id)
            for i, u in enumerate(users)
        ]
        interactions = await asyncio.gather(*sends)
        await asyncio.gather(*(ia.wait_callback(timeout=3) for ia in interactions))
        assert all(ia.callback_type == 5 for ia in interactions)
        assert max(ia.callback_latency or 99 for ia in interactions) < 3
        await w.discord.wait_for(lambda: all(ia.followups for ia in interactions), 30, what="all follow-ups")
        queued = await w.wait_status("position")
        assert queued is not None


async def test_cancel_button_only_for_the_requester_and_refunds() -> None:
    # A provider that confirms its cancel: only then is a submitted job refunded (see test_operator_limits).
    async with world("openai", run_seconds=30.0) as w:
        await w.sora("cancel me", duration=4)
        status = await w.wait_status("Generating")
        custom_id = status.components[0]["components"][0]["custom_id"]
        other = await w.discord.send_component(status.id, custom_id, user_id=w.discord.other_user.id)
        await other.wait_callback(timeout=3)
        refusal = await w.followup_text(other)
        assert "Only the person" in refusal
        mine = await w.discord.send_component(status.id, custom_id, user_id=w.discord.user.id)
        await mine.wait_callback(timeout=3)
        assert "refunded" in await w.followup_text(mine)
        await w.wait_status("Cancelled")
        assert dict(w.db_rows("SELECT kind, SUM(amount) FROM ledger GROUP BY kind")) == {"reserve": 4, "refund": 4}


async def test_jobs_lists_recent_videos() -> None:
    async with world("relay") as w:
        await w.sora("first clip", duration=4)
        await w.wait_video()
        ia = await w.discord.send_interaction(command="jobs", options={}, user_id=w.discord.user.id)
        await ia.wait_callback(timeout=3)
        listing = await w.discord.wait_for(lambda: ia.followups and ia.followups[-1], 10)
        assert "first clip" in str(listing.embeds) and "succeeded" in str(listing.embeds)


async def test_injected_429s_on_edits_and_uploads_are_waited_out() -> None:
    async with world("relay", run_seconds=2.0) as w:
        w.discord.inject(429, path_contains="/messages/", method="PATCH", times=3, headers={"Retry-After": "0.5"})
        w.discord.inject(429, path_contains="/messages", method="POST", times=1, headers={"Retry-After": "0.5"})
        await w.sora("rate limited", duration=4)
        await w.wait_video()
        await w.wait_status("Done")
        assert w.discord.count_429 >= 3
        await asyncio.sleep(1.0)
        assert len(w.videos()) == 1


async def test_channel_deleted_mid_job_fails_quietly_and_refunds() -> None:
    async with world("relay", run_seconds=3.0) as w:
        await w.sora("nowhere to go", duration=4)
        await w.wait_status("Generating")
        await w.discord.delete_channel(w.discord.channel.id)
        await w.discord.wait_for(
            lambda: w.db_rows("SELECT state FROM jobs") == [("failed",)], 30, what="the job to fail"
        )
        assert dict(w.db_rows("SELECT kind, SUM(amount) FROM ledger GROUP BY kind")) == {"reserve": 4, "refund": 4}
        gone = [r for r in w.discord.requests if r.status == 404 and str(w.discord.channel.id) in r.path]
        assert len(gone) <= 3, f"kept knocking on a deleted channel: {len(gone)} 404s"
