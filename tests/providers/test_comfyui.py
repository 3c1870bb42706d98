"""ComfyUIProvider against the fake ComfyUI (HTTP + websocket), with the shipped example workflows."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from PIL import Image

from bot.catalogue import load_catalogue
from bot.domain import JobState, JobStatus, ReferenceImage, VideoRequest
from bot.errors import AuthenticationFailed, ConfigError, GenerationFailed, InvalidRequest, WorkflowRejected
from bot.media.video import probe
from bot.providers.base import VideoProvider
from bot.providers.comfyui import ComfyUIProvider, fill_workflow, find_output, load_client_id
from tests.fakes.comfyui import FakeComfyUI
from tests.providers.polling import statuses_until_done

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "comfyui"
TEXT_WORKFLOW = EXAMPLES / "ltxv-text-to-video.json"
CATALOGUE = load_catalogue(EXAMPLES / "models.toml")
NEGATIVE = CATALOGUE.hosts_for("comfyui")["ltx-video"].fields["negative_prompt"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeComfyUI]:
    server = FakeComfyUI(run_seconds=0.2)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make(fake: FakeComfyUI, http_session: aiohttp.ClientSession) -> AsyncIterator[Callable[..., ComfyUIProvider]]:
    made: list[ComfyUIProvider] = []

    def build(**kwargs: Any) -> ComfyUIProvider:
        options: dict[str, Any] = {
            "base_url": fake.base_url,
            "workflow": TEXT_WORKFLOW,
            "hosts": CATALOGUE.hosts_for("comfyui"),
            "specs": CATALOGUE.models,
            "retry_base_delay": 0.01,
            "ws_retry_delay": 0.05,
            **kwargs,
        }
        provider = ComfyUIProvider(http_session, **options)
        made.append(provider)
        return provider

    yield build
    for provider in made:
        await provider.aclose()


def request(**kwargs: Any) -> VideoRequest:
    return VideoRequest(
        **{"prompt": "a fox runs through snow", "seconds": 4, "size": "768x512", "model": "ltx-video", **kwargs}
    )


def png(width: int = 320, height: int = 200) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


async def until_done(provider: ComfyUIProvider, job_id: str, timeout: float = 10.0) -> list[JobStatus]:
    return await statuses_until_done(provider, job_id, timeout)


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


# --- placeholders and submission -----------------------------------------------------------------


async def test_is_a_video_provider(make: Callable[..., ComfyUIProvider]) -> None:
    provider = make()
    assert isinstance(provider, VideoProvider)
    assert provider.capabilities.can_cancel and provider.capabilities.resumable
    assert provider.capabilities.reports_progress and provider.capabilities.image_mode == "bytes"


async def test_the_workflow_is_sent_with_every_placeholder_filled_with_typed_values(
    fake: FakeComfyUI, make: Callable[..., ComfyUIProvider]
) -> None:
    provider = make()
    prompt_id = await provider.submit(request())
    [body] = [r.json() for r in fake.requests_to("/prompt", "POST")]
    assert body["client_id"] == provider.client_id
    sent = body["prompt"]
    seed = sent["72"]["inputs"]["noise_seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**32
    # Exactly the example with its placeholders replaced: nothing else changed.
    expected = json.loads(
        TEXT_WORKFLOW.read_text()
        .replace('"{{prompt}}"', '"a fox runs through snow"')
        .replace('"{{negative_prompt}}"', json.dumps(NEGATIVE))
        .replace('"{{width}}"', "768")
        .replace('"{{height}}"', "512")
        .replace('"{{frames}}"', "97")  # 4 s x 24 fps + 1: the 8n+1 frames LTX-Video takes
        .replace('"{{fps}}"', "24")
        .replace('"{{seed}}"', str(seed))
    )
    assert sent == expected
    assert (await until_done(provider, prompt_id))[-1].state is JobState.SUCCEEDED


def test_placeholders_inside_text_become_text_and_whole_ones_keep_their_type() -> None:
    graph: dict[str, Any] = {
        "1": {
            "class_type": "X",
            "inputs": {"a": "{{ width }}", "b": "clip_{{seed}}_{{width}}x{{height}}", "c": [1, "{{fps}}"]},
        }
    }
    filled = fill_workflow(graph, {"width": 768, "height": 512, "seed": 7, "fps": 24.0})
    assert filled == {"1": {"class_type": "X", "inputs": {"a": 768, "b": "clip_7_768x512", "c": [1, 24.0]}}}
    assert graph["1"]["inputs"]["a"] == "{{ width }}"  # the loaded workflow is never changed


async def test_a_reference_image_is_uploaded_and_named_in_the_image_workflow(
    fake: FakeComfyUI, make: Callable[..., ComfyUIProvider]
) -> None:
    provider = make()
    data = png()
    prompt_id = await provider.submit(request(image=ReferenceImage(data=data), size="512x768", seconds=2))
    [upload] = fake.requests_to("/upload/image", "POST")
    assert upload.headers["Content-Type"].startswith("multipart/form-data")
    [(name, stored)] = fake.uploads.items()
    assert stored == data and name.startswith("sora-bot-") and name.endswith(".png")
    sent = fake.submitted()[0]
    assert sent["78"] == {"class_type": "LoadImage", "inputs": {"image": name}, "_meta": sent["78"]["_meta"]}
    assert sent["77"]["inputs"]["width"] == 512 and sent["77"]["inputs"]["length"] == 49
    assert (await until_done(provider, prompt_id))[-1].state is JobState.SUCCEEDED


async def test_an_image_is_refused_by_a_model_whose_workflow_takes_none(
    fake: FakeComfyUI, make: Callable[..., ComfyUIProvider]
) -> None:
    hosts = {"ltx-video": CATALOGUE.hosts_for("comfyui")["ltx-video"].__class__(provider="comfyui", model="ltxv")}
    provider = make(hosts=hosts)
    with pytest.raises(InvalidRequest, match="cannot start from an image"):
        await provider.submit(request(image=ReferenceImage(data=png())))
    with pytest.raises(InvalidRequest, match="choose 768x512, 512x768 or 640x640"):
        provider.validate(request(size="1280x720"))
    assert fake.requests_to("/prompt") == [] and fake.requests_to("/upload") == []


async def test_node_errors_are_one_log_line_for_the_operator_and_a_polite_user_error(
    tmp_path: Path, fake: FakeComfyUI, make: Callable[..., ComfyUIProvider], caplog: pytest.LogCaptureFixture
) -> None:
    broken = json.loads(TEXT_WORKFLOW.read_text())
    broken["8"]["inputs"]["vae"] = ["99", 2]  # a node that does not exist
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    provider = make(
        workflow=path,
        hosts={"ltx-video": CATALOGUE.hosts_for("comfyui")["ltx-video"].__class__(provider="comfyui", model="x")},
    )
    with caplog.at_level(logging.ERROR, logger="bot.providers.comfyui"), pytest.raises(WorkflowRejected) as info:
        await provider.submit(request())
    assert "node 8 (VAEDecode): Required input is missing: vae: no node 99" in caplog.text
    assert "server-side setup problem" in info.value.user_message and "node" not in info.value.user_message
    assert len(fake.requests_to("/prompt", "POST")) == 1  # a 400 is never sent again


# --- progress, outputs, failures ------------------------------------------------------------------


async def test_progress_comes_from_the_websocket_and_only_grows(
    fake: FakeComfyUI, make: Callable[..., ComfyUIProvider]
) -> None:
    fake.run_seconds, fake.steps = 0.8, 8
    provider = make()
    prompt_id = await provider.submit(request())
    seen = await until_done(provider, prompt_id)
    progress = [s.progress for s in seen if s.state is JobState.RUNNING and s.progress is not None]
    assert progress and all(0 < p < 100 for p in progress)
    assert progress == sorted(progress)
    assert seen[-1].state is JobState.SUCCEEDED and seen[-1].progress == 100
    assert any(cid == provider.client_id and m["type"] == "progress" for cid, m in fake.sent)


async def test_the_websocket_wakes_subscribers_and_spares_history_requests(
    fake: FakeComfyUI, make: Callable[..., ComfyUIProvider]
) -> None:
    fake.run_seconds, fake.steps = 1.0, 10
    provider = make()
    woken: list[str] = []
    provider.subscribe(woken.append)
    prompt_id = await provider.submit(request())
    seen = await until_done(provider, prompt_id)  # a status call every 20 ms
    assert seen[-1].state is JobState.SUCCEEDED and set(woken) == {prompt_id}
    asked = len(fake.requests_to(f"/history/{prompt_id}")) + len(fake.requests_to("/queue", "GET"))
    assert len(seen) > 20 and asked <= 6, (len(seen), asked)


@pytest.mark.parametrize("output", ["webp", "gif", "savevideo", "vhs", "webm"])
async def test_every_kind_of_saved_clip_becomes_a_playable_h264_mp4(
    output: str, tmp_path: Path, fake: FakeComfyUI, make: Callable[..., ComfyUIProvider]
) -> None:
    fake.output = output
    provider = make()
    prompt_id = await provider.submit(request())
    final = (await until_done(provider, prompt_id))[-1]
    assert final.state is JobState.SUCCEEDED and final.result_url is not None
    assert "type=output" in final.result_url  # the clip, not the temp preview PNG
    dest = await provider.download(prompt_id, final, tmp_path / "job.mp4", max_bytes=10_000_000)
    info = probe(dest)
    assert info.video_codec == "h264" and info.duration > 0
    with av.open(str(dest)) as container:
        assert "mp4" in container.format.name.split(",")
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
        assert sum(1 for _ in container.decode(video=0)) >= 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.mp4"]  # the source file is gone


def test_find_output_prefers_a_real_video_and_ignores_still_previews() -> None:
    preview = {"images": [{"filename": "p.png", "subfolder": "", "type": "temp"}]}
    webp = {"images": [{"filename": "a.webp", "subfolder": "s", "type": "output"}], "animated": [True]}
    vhs = {"gifs": [{"filename": "b.mp4", "subfolder": "", "type": "output", "format": "video/h264-mp4"}]}
    assert find_output({"1": preview}) is None
    assert find_output({"1": preview, "2": webp}) == {"filename": "a.webp", "subfolder": "s", "type": "output"}
    assert find_output({"2": webp, "3": vhs}) == {"filename": "b.mp4", "subfolder": "", "type": "output"}
    assert find_output({"1": {"images": [{"filename": "../x.webp"}], "animated": [False]}}) is None
    assert find_output("garbage") is None and find_output({"1": {"images": "x"}}) is None


async def test_a_workflow_that_saves_no_clip_fails_clearly(
    fake: FakeComfyUI, make: Callable[..., ComfyUIProvider]
) -> None:
    fake.output = "none"
    provider = make()
    final = (await until_done(provider, await provider.submit(request())))[-1]
    assert isinstance(final.error, GenerationFailed)
    assert "saved no video or animation" in final.error.detail


async def test_an_execution_error_names_the_node(fake: FakeComfyUI, make: Callable[..., ComfyUIProvider]) -> None:
    fake.fail_with = "CUDA out of memory"
    provider = make()
    final = (await until_done(provider, await provider.submit(request())))[-1]
    assert final.state is JobState.FAILED and isinstance(final.error, GenerationFailed)
    assert "node 72 (SamplerCustom): RuntimeError: CUDA out of memory" in final.error.detail


async def test_a_prompt_the_server_lost_fails_instead_of_waiting_forever(
    fake: FakeComfyUI, make: Callable[..., ComfyUIProvider]
) -> None:
    provider = make()
    status = await provider.status("0123-not-a-prompt")
    assert status.state is JobState.FAILED and "neither queued, running nor in the history" in str(status.error)


# --- cancel ------------------------------------------------------------------------------------------


async def test_cancel_a_queued_prompt_deletes_it_from_the_queue(
    fake: FakeComfyUI, make: Callable[..., ComfyUIProvider]
) -> None:
    fake.paused = True
    provider = make()
    first, second = await provider.submit(request()), await provider.submit(request(prompt="another"))
    assert (await provider.status(second)) == JobStatus(JobState.QUEUED, queue_position=2)
    assert await provider.cancel(second) is True
    assert fake.deleted == [second] and fake.interrupts == []
    fake.resume()
    assert (await until_done(provider, first))[-1].state is JobState.SUCCEEDED
    assert second not in fake.history


async def test_cancel_a_running_prompt_interrupts_it(fake: FakeComfyUI, make: Callable[..., ComfyUIProvider]) -> None:
    fake.run_seconds = 60
    provider = make()
    prompt_id = await provider.submit(request())
    await until(lambda: fake.running == prompt_id)
    assert (await provider.status(prompt_id)).state is JobState.RUNNING
    assert await provider.cancel(prompt_id) is True
    assert fake.interrupts == [prompt_id] and fake.deleted == []
    final = (await until_done(provider, prompt_id))[-1]
    assert final.state is JobState.FAILED and "interrupted" in str(final.error)
    assert await provider.cancel(prompt_id) is False  # finished: nothing left to stop


# --- restarts, reconnects, auth ---------------------------------------------------------------------


async def test_a_restarted_bot_resumes_from_the_history_without_a_second_prompt(
    tmp_path: Path, fake: FakeComfyUI, make: Callable[..., ComfyUIProvider]
) -> None:
    fake.run_seconds, fake.steps = 1.0, 10
    client_id = load_client_id(tmp_path / "comfyui-client-id")
    assert load_client_id(tmp_path / "comfyui-client-id") == client_id  # kept across restarts
    before = make(client_id=client_id)
    prompt_id = await before.submit(request())
    await until(lambda: fake.running == prompt_id)
    await before.aclose()  # the bot stops mid-job
    after = make(client_id=client_id)
    seen = await until_done(after, prompt_id)
    assert seen[-1].state is JobState.SUCCEEDED
    # Same client id: the new websocket still hears this prompt's progress.
    assert any(s.progress is not None and 0 < s.progress < 100 for s in seen)
    dest = await after.download(prompt_id, seen[-1], tmp_path / "job.mp4", max_bytes=10_000_000)
    assert probe(dest).duration > 0
    assert len(fake.requests_to("/prompt", "POST")) == 1


async def test_the_websocket_reconnects_after_the_server_drops_it(
    fake: FakeComfyUI, make: Callable[..., ComfyUIProvider]
) -> None:
    provider = make()
    await provider.submit(request())
    await until(lambda: provider.client_id in fake.sockets)
    first = fake.sockets[provider.client_id]
    await fake.drop_sockets()
    await until(lambda: provider.client_id in fake.sockets and fake.sockets[provider.client_id] is not first)
    assert len(fake.requests_to("/ws", "GET")) == 2  # one socket per provider, not per job


async def test_a_token_is_sent_as_a_bearer_header_and_never_shown(
    http_session: aiohttp.ClientSession,
) -> None:
    token = "proxy-TOKEN-0123456789"
    async with FakeComfyUI(run_seconds=0.05, token=token) as fake:
        assert isinstance(fake, FakeComfyUI)
        common: dict[str, Any] = {
            "base_url": fake.base_url,
            "workflow": TEXT_WORKFLOW,
            "hosts": CATALOGUE.hosts_for("comfyui"),
            "specs": CATALOGUE.models,
            "retry_base_delay": 0.01,
        }
        good = ComfyUIProvider(http_session, token=token, **common)
        bad = ComfyUIProvider(http_session, token="wrong-token-0000", **common)
        try:
            prompt_id = await good.submit(request())
            assert (await until_done(good, prompt_id))[-1].state is JobState.SUCCEEDED
            with pytest.raises(AuthenticationFailed) as info:
                await bad.submit(request())
            assert "wrong-token-0000" not in info.value.detail + info.value.user_message
        finally:
            await good.aclose()
            await bad.aclose()


# --- configuration ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"nodes": [], "links": []}', "UI format; save it with Workflow > Export (API)"),
        ("[1, 2]", "must be a JSON object of nodes"),
        ("{not json", "is not valid JSON"),
        ('{"1": {"class_type": "X", "inputs": {"text": "fixed"}}}', "has no {{prompt}} placeholder"),
        (
            '{"1": {"class_type": "X", "inputs": {"text": "{{prompt}}", "s": "{{steps}}"}}}',
            "unknown placeholders steps",
        ),
    ],
)
def test_a_bad_workflow_stops_start_up_with_one_line(
    content: str, needle: str, tmp_path: Path, http_session: aiohttp.ClientSession
) -> None:
    path = tmp_path / "wf.json"
    path.write_text(content)
    hosts = {"ltx-video": CATALOGUE.hosts_for("comfyui")["ltx-video"].__class__(provider="comfyui", model="m")}
    with pytest.raises(ConfigError) as info:
        ComfyUIProvider(http_session, base_url="http://127.0.0.1:1", workflow=path, hosts=hosts, specs=CATALOGUE.models)
    assert needle in info.value.detail and "\n" not in info.value.detail


def test_no_comfyui_model_in_the_catalogue_stops_start_up(http_session: aiohttp.ClientSession) -> None:
    with pytest.raises(ConfigError, match="no model in the catalogue runs on comfyui: add one in MODELS_FILE"):
        ComfyUIProvider(
            http_session, base_url="http://127.0.0.1:1", workflow=TEXT_WORKFLOW, hosts={}, specs=CATALOGUE.models
        )
