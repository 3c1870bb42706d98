"""Start the Discord bot from settings: endpoint overrides, token checks, signal handling."""

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

SETUP_HELP = """\
DISCORD_TOKEN is not set, so the Discord bot cannot start.

To run the bot in Discord:
  1. Open https://discord.com/developers/applications, create an application, open "Bot",
     press "Reset Token" and copy the token.
  2. Put it in a file named .env next to this project:  DISCORD_TOKEN=your-token
     (add SYNC_COMMANDS=1 on the first start so /sora appears).
  3. Invite the bot: OAuth2 > URL Generator, scopes "bot" and "applications.commands",
     permissions Send Messages, Embed Links, Attach Files, Read Message History.
  4. Run: python -m bot

To try it without Discord (no account anywhere needed, the demo provider renders locally):
  python -m bot generate "a paper boat drifting down a rainy street" --seconds 4 -o demo.mp4
"""


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
    if not settings.discord_token:
        print(SETUP_HELP, file=sys.stderr)
        return 2
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
