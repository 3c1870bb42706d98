"""Start-up failures end with one clear line, never a traceback."""

from __future__ import annotations

from tests.e2e.harness import BotProcess
from tests.fakes.discord import FakeDiscord


async def test_missing_token_explains_how_to_get_one_and_how_to_try_the_demo() -> None:
    bot = BotProcess({"DISCORD_TOKEN": ""})
    await bot.start()
    assert await bot.wait_exit() == 2
    text = bot.log_text()
    assert "DISCORD_TOKEN is not set" in text
    assert "python -m bot generate" in text
    assert "Traceback" not in text


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
