"""The model catalogue end to end: the real bot process, a fake Discord and fake providers.

/sora model: autocomplete, per-model refusals, Veo 3.1 on Segmind with its own fields, and a model
the provider says no longer exists (explained, refunded, hidden)."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from tests.e2e.world import world
from tests.fakes.segmind import FakeSegmind

pytestmark = pytest.mark.timeout(120)


async def test_model_autocomplete_offers_only_what_a_configured_provider_runs() -> None:
    async with world("segmind") as w:
        ia = await w.discord.send_autocomplete(command="sora", focused="model", options={"prompt": "x", "model": "veo"})
        await ia.wait_callback(timeout=3)
        assert ia.callback_type == 8
        values = [c["value"] for c in ia.callback_data["choices"]]  # type: ignore[index]
        assert values == ["veo-3.1-fast", "veo-3.1"]  # Segmind hosts no Kling, Seedance or Hailuo
        ia = await w.discord.send_autocomplete(command="sora", focused="model", options={"prompt": "x", "model": ""})
        await ia.wait_callback(timeout=3)
        names = {c["value"]: c["name"] for c in ia.callback_data["choices"]}  # type: ignore[index]
        assert list(names) == ["veo-3.1-fast", "veo-3.1", "sora-2", "sora-2-pro"]
        assert "retired upstream" in names["sora-2"] and "retired" not in names["veo-3.1"]


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"model": "veo-3.1", "duration": 12}, "12 s is not available for veo-3.1; choose 4 s, 6 s or 8 s."),
        ({"model": "veo-3.1-fast", "size": "1024x1792"}, "choose 1280x720, 720x1280, 1920x1080 or 1080x1920"),
        ({"model": "kling-3-pro"}, "Model kling-3-pro cannot be run right now; choose veo-3.1-fast, veo-3.1"),
    ],
)
async def test_refusals_name_the_models_allowed_values(options: dict[str, object], needle: str) -> None:
    async with world("segmind") as w:
        ia = await w.sora("a tall city", **options)
        text = await w.followup_text(ia)
        assert needle in text, text
        await asyncio.sleep(0.3)
        assert w.status_messages() == [] and w.video_fake.requests_to("/v2/", "POST") == []  # type: ignore[union-attr]
        assert w.db_rows("SELECT COUNT(*) FROM ledger") == [(0,)]


@pytest.mark.parametrize("model", ["veo-3.1", "veo-3.1-fast"])
async def test_veo_on_segmind_with_and_without_a_reference_image(model: str) -> None:
    async with world("segmind", env={"DAILY_CREDITS": "200"}) as w:
        fake = w.video_fake
        assert isinstance(fake, FakeSegmind)
        await w.sora("a heron takes off", model=model, duration=6, size="1080x1920", audio=False)
        buf = io.BytesIO()
        Image.new("RGB", (640, 640), (20, 90, 200)).save(buf, "PNG")
        attachment = w.discord.upload_user_attachment(buf.getvalue(), "ref.png", "image/png", width=640, height=640)
        ia = await w.discord.send_interaction(
            command="sora",
            options={"prompt": "it flies away", "model": model, "duration": 8, "image": attachment["id"]},
            attachments=[attachment],
            user_id=w.discord.add_user("bob").id,
        )
        await ia.wait_callback(timeout=3)
        await w.wait_video(2)
        first, second = (r.json() for r in fake.requests_to(f"/v2/{model}", "POST"))
        assert first == {
            "prompt": "a heron takes off",
            "duration": 6,
            "aspect_ratio": "9:16",
            "resolution": "1080p",
            "generate_audio": False,
        }
        image_url = second.pop("image")
        assert image_url.startswith(w.discord.base_url + "/attachments/")
        assert second == {
            "prompt": "it flies away",
            "duration": 8,
            "aspect_ratio": "16:9",
            "resolution": "720p",
            "generate_audio": True,
        }
        done = await w.wait_status("Done")
        assert model in str(done.embeds) and "segmind" in str(done.embeds)
        # Priced from the catalogue: Veo 3.1 Fast 2 (silent) / 3 (sound) credits a second, Veo 3.1 4 / 8.
        per_second = {"veo-3.1-fast": (2, 3), "veo-3.1": (4, 8)}[model]
        costs = [c for (c,) in w.db_rows("SELECT cost FROM jobs ORDER BY id")]
        assert costs == [6 * per_second[0], 8 * per_second[1]]


async def test_a_model_the_provider_no_longer_has_is_explained_refunded_and_hidden() -> None:
    async with world("segmind") as w:
        fake = w.video_fake
        assert isinstance(fake, FakeSegmind)
        fake.retired.add("sora-2")  # Segmind after 2026-09-24: the slug answers like an unknown one
        await w.sora("an old favourite", model="sora-2", duration=4)
        failed = await w.wait_status("Failed")
        assert "no longer offered by the video provider" in str(failed.embeds)
        assert dict(w.db_rows("SELECT kind, SUM(amount) FROM ledger GROUP BY kind")) == {"reserve": 4, "refund": 4}
        assert len(fake.requests_to("/v2/sora-2", "POST")) == 1
        ia = await w.sora("again", model="sora-2", duration=4)
        assert "cannot be run right now" in await w.followup_text(ia)
        assert len(fake.requests_to("/v2/sora-2", "POST")) == 1
        ia = await w.discord.send_autocomplete(command="sora", focused="model", options={"prompt": "x", "model": ""})
        await ia.wait_callback(timeout=3)
        assert "sora-2" not in [c["value"] for c in ia.callback_data["choices"]]  # type: ignore[index]
