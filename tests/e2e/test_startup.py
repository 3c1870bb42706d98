"""Start-up failures end with one clear line, never a traceback."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp

from tests.e2e.harness import BotProcess
from tests.e2e.test_service import free_port
from tests.fakes.discord import FakeDiscord

ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what the Docker image sets; the playground must refuse it


async def test_missing_token_opens_the_playground_and_says_where_in_one_line() -> None:
    port = free_port()
    async with BotProcess({"DISCORD_TOKEN": "", "HTTP_PORT": str(port)}) as bot:
        line = await _playground_line(bot)
        assert line.startswith(f"Playground: http://127.0.0.1:{port} (DISCORD_TOKEN is not set"), line
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/") as response:
            assert response.status == 200
            assert "/sora" in await response.text()
        assert await bot.terminate() == 0
    assert "Traceback" not in bot.log_text()


async def test_playground_command_runs_it_even_with_a_token_on_loopback_only() -> None:
    port = free_port()
    bot = BotProcess({"DISCORD_TOKEN": "a-real-looking-token", "HTTP_PORT": str(port)}, args=["playground"])
    async with bot:
        line = await _playground_line(bot)
        assert line.startswith(f"Playground: http://127.0.0.1:{port} (open it"), line
        outward = _outward_address()
        if outward is not None:
            with socket.socket() as probe:  # bound to 127.0.0.1 only, not every interface
                assert probe.connect_ex((outward, port)) != 0
    assert "a-real-looking-token" not in bot.log_text()


async def test_the_playground_is_not_served_on_an_outside_address_unless_said_explicitly() -> None:
    """The Docker image listens on 0.0.0.0: without a token that must not put the playground, which
    has no login, on the network by accident."""
    port = free_port()
    env = {"DISCORD_TOKEN": "", "HTTP_PORT": str(port), "HTTP_HOST": ALL_INTERFACES}
    refused = BotProcess(env)
    await refused.start()
    assert await refused.wait_exit() == 2
    lines = [line for line in refused.log_text().splitlines() if line and not line.startswith("=====")]
    assert len(lines) == 1 and lines[0].startswith("configuration error: HTTP_HOST=0.0.0.0 would expose the playground")
    assert "PLAYGROUND_PUBLIC=1" in lines[0]
    async with BotProcess({**env, "PLAYGROUND_PUBLIC": "1"}) as public:
        assert (await _playground_line(public)).startswith(f"Playground: http://0.0.0.0:{port} ")
        assert await public.terminate() == 0


async def _playground_line(bot: BotProcess, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [x for x in bot.log_text().splitlines() if x.startswith("Playground: ")]
        if lines:
            return lines[0]
        assert bot.running, bot.log_tail()
        await asyncio.sleep(0.1)
    raise AssertionError(f"no 'Playground:' line\n{bot.log_tail()}")


def _outward_address() -> str | None:
    """This machine's address on its first non-loopback interface (no packet is sent); None without one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: only the routing table is consulted
            return str(sock.getsockname()[0])
    except OSError:
        return None


async def test_rejected_token_ends_start_up_with_one_line() -> None:
    async with FakeDiscord() as fake:
        bot = BotProcess({**fake.bot_env(), "DISCORD_TOKEN": "wrong-token-123"})
        await bot.start()
        assert await bot.wait_exit(timeout=20) == 1
        text = bot.log_text()
        assert "Discord rejected DISCORD_TOKEN" in text
        assert "wrong-token-123" not in text
        assert "Traceback" not in text


async def test_wrong_setting_names_the_variable() -> None:
    bot = BotProcess({"DISCORD_TOKEN": "x", "DAILY_CREDITS": "lots"})
    await bot.start()
    assert await bot.wait_exit() == 2
    lines = [line for line in bot.log_text().splitlines() if line and not line.startswith("=====")]
    assert lines == ["configuration error: DAILY_CREDITS must be a whole number (>= 0), got 'lots'"]
