"""``python -m bot generate`` as a real subprocess: the demo provider, a refused request, a fake relay."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import av
import pytest

from bot.providers.relay import PATH
from tests.fakes.relay import FakeRelay
from tests.fakes.videos import tiny_mp4

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-relay-SECRET-cli-0123456789"


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Only what the CLI needs: no provider key or setting from the developer's shell leaks in."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'bot.db'}",
        **extra,
    }


async def run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "generate",
        *args,
        cwd=tmp_path,
        env=env or clean_env(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def probe(path: Path) -> tuple[str, int, int, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.name, stream.width, stream.height, float(container.duration or 0) / 1e6


async def test_generate_with_the_demo_provider_writes_a_real_mp4(tmp_path: Path) -> None:
    output = tmp_path / "out" / "out.mp4"
    code, out, err = await run_cli(tmp_path, "a test", "--provider", "demo", "--seconds", "4", "-o", str(output))
    assert code == 0, err
    assert f"wrote {output}" in out
    assert "succeeded" in err
    codec, width, height, seconds = await asyncio.to_thread(probe, output)
    assert (codec, width, height) == ("h264", 1280, 720)
    assert seconds == pytest.approx(4.0, abs=0.25)
    # The CLI keeps its bookkeeping in a temporary directory, not in the bot's data dir.
    assert not (tmp_path / "data").exists()


async def test_invalid_combination_exits_non_zero_and_writes_nothing(tmp_path: Path) -> None:
    output = tmp_path / "out.mp4"
    code, out, err = await run_cli(
        tmp_path, "a test", "--provider", "demo", "--model", "sora-2", "--size", "1024x1792", "-o", str(output)
    )
    assert code != 0
    assert "Size 1024x1792 is not available for sora-2" in err
    assert "1280x720" in err and "720x1280" in err  # says what is allowed
    assert "Traceback" not in err
    assert out == ""
    assert list(tmp_path.iterdir()) == []


async def test_configuration_error_is_one_line(tmp_path: Path) -> None:
    env = clean_env(tmp_path, PROVIDER="relay", RELAY_API_KEY=KEY)  # no RELAY_BASE_URL
    code, _, err = await run_cli(tmp_path, "a test", env=env)
    assert code == 2
    assert err.strip().splitlines() == [
        "configuration error: RELAY_BASE_URL is required when PROVIDER=relay (e.g. https://relay.example.com)"
    ]


async def test_generate_against_a_fake_relay(tmp_path: Path) -> None:
    async with FakeRelay(api_key=KEY, run_seconds=0.2) as relay:
        env = clean_env(
            tmp_path,
            PROVIDER="relay",
            RELAY_BASE_URL=relay.base_url,
            RELAY_API_KEY=KEY,
            TYPICAL_JOB_SECONDS="1",
        )
        output = tmp_path / "relay.mp4"
        code, out, err = await run_cli(tmp_path, "a dog surfing", "--seconds", "8", "-o", str(output), env=env)
        assert code == 0, err
        assert output.read_bytes() == tiny_mp4()
        [post] = relay.requests_to(PATH, "POST")
        assert post.json()["prompt"] == "a dog surfing" and post.json()["duration"] == "8"
        assert post.headers["Authorization"] == f"Bearer {KEY}"
        assert len(relay.requests_to("/files/")) == 1
        assert KEY not in out + err


async def test_model_option_picks_the_models_defaults_and_is_named(tmp_path: Path) -> None:
    output = tmp_path / "veo.mp4"
    code, _, err = await run_cli(
        tmp_path, "a heron", "--model", "veo-3.1-fast", "--size", "720x1280", "-o", str(output)
    )
    assert code == 0, err
    assert "veo-3.1-fast, 720x1280, 4 s" in err  # the model's shortest duration by default
    assert probe(output)[1:3] == (720, 1280)
    code, _, err = await run_cli(tmp_path, "a heron", "--model", "kling-3-pro", "--seconds", "8", "-o", str(output))
    assert code == 2 and "8 s is not available for kling-3-pro; choose 5 s or 10 s." in err


async def test_models_command_lists_the_catalogue_and_what_can_run(tmp_path: Path) -> None:
    async def models(env: dict[str, str]) -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "models", cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0
        return out.decode()

    text = await models(clean_env(tmp_path))
    assert "providers configured: demo" in text and "* demo" in text
    text = await models(clean_env(tmp_path, SEGMIND_API_KEY="k"))
    assert "* veo-3.1-fast" in text
    kling = text[text.index("kling-3-pro") :].splitlines()[2]
    assert "not available" in kling, kling
