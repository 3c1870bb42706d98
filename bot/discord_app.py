"""Start the Discord bot from settings (``python -m bot`` with a DISCORD_TOKEN; bot/__main__.py opens the
playground without one): endpoint overrides, signal handling, one line for a rejected token."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import discord
import yarl
from discord.gateway import DiscordWebSocket

from bot.client import make_bot
from bot.config import Settings

log = logging.getLogger(__name__)


def apply_endpoint_overrides(settings: Settings) -> None:
    """Point discord.py at another REST base / gateway (a local fake Discord in tests)."""
    if settings.discord_api_base_url:
        discord.http.Route.BASE = settings.discord_api_base_url
    if settings.discord_gateway_url:
        # The non-sharded client connects here first and falls back here after an invalid session.
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def run_bot(settings: Settings) -> int:
    # A video bot never joins voice: silence discord.py's start-up warnings about voice libraries.
    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False
    apply_endpoint_overrides(settings)
    try:
        asyncio.run(_serve(settings))
    except discord.LoginFailure:
        print(
            "Discord rejected DISCORD_TOKEN (401 Unauthorized): reset the bot token and update .env.", file=sys.stderr
        )
        return 1
    except discord.PrivilegedIntentsRequired:
        print("Discord refused the gateway intents this bot asked for.", file=sys.stderr)
        return 1
    return 0


async def _serve(settings: Settings) -> None:
    bot = make_bot(settings)
    loop = asyncio.get_running_loop()
    stopping: set[asyncio.Task[None]] = set()

    def stop(signame: str) -> None:
        log.info("%s received; shutting down (unfinished jobs resume on the next start)", signame)
        stopping.add(asyncio.create_task(bot.close()))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig.name)
    async with bot:
        await bot.start(settings.discord_token.get())
