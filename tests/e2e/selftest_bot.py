"""A tiny discord.py bot used only by the fake Discord self-test: ``python -m tests.e2e.selftest_bot``.

Env: DISCORD_TOKEN, DISCORD_API_BASE_URL, DISCORD_GATEWAY_URL, SELFTEST_GUILD_ID, SELFTEST_EDITS (8),
SELFTEST_HOLD (seconds /hold waits before its follow-up), SELFTEST_SLOW (seconds /slow waits before deferring).
Commands: /ping text [image], /hello, /form (modal), /hold, /slow, /upload size; a persistent "Again" button.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys

import discord
import yarl
from discord import app_commands
from discord.ext import commands

log = logging.getLogger("selftest_bot")

BUTTON_ID = "selftest:again"


def point_at_fake(api_base: str, gateway_url: str) -> None:
    """The override the real bot copies (explained in tests/e2e/harness.py)."""
    discord.http.Route.BASE = api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, discord.HTTPException):
        return f"{exc.status} {exc.code}"
    return type(exc).__name__


class AgainView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Again", custom_id=BUTTON_ID, style=discord.ButtonStyle.primary)
    async def again(self, interaction: discord.Interaction, _button: discord.ui.Button[AgainView]) -> None:
        await interaction.response.send_message(f"clicked by {interaction.user.id}")


class NameModal(discord.ui.Modal, title="Your name"):
    name: discord.ui.TextInput[NameModal] = discord.ui.TextInput(label="Name", custom_id="selftest:name")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"hello {self.name.value}")


class SelftestBot(commands.Bot):
    def __init__(self, guild_id: int) -> None:
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents.default())
        self.guild_id = guild_id

    async def setup_hook(self) -> None:
        self.add_view(AgainView())
        guild = discord.Object(self.guild_id)
        self.tree.copy_global_to(guild=guild)
        await self.tree.sync(guild=guild)
        log.info("synced commands to guild %s", self.guild_id)

    async def on_ready(self) -> None:
        guild = self.get_guild(self.guild_id)
        log.info("on_ready: guild=%s filesize_limit=%s", guild and guild.name, guild and guild.filesize_limit)

    async def on_resumed(self) -> None:
        log.info("resumed")


def add_commands(bot: SelftestBot) -> None:
    @bot.tree.command(name="ping", description="Exercise defer, edits, uploads with nonce, follow-ups")
    @app_commands.describe(text="Some text", image="An optional image")
    async def ping(interaction: discord.Interaction, text: str, image: discord.Attachment | None = None) -> None:
        await interaction.response.defer(thinking=True)
        guild = bot.get_guild(bot.guild_id)
        assert guild is not None and interaction.guild is not None and interaction.channel is not None
        info = f"text={text} guild_limit={interaction.guild.filesize_limit} ia_limit={interaction.filesize_limit}"
        if image is not None:
            info += f" image={len(await image.read())}"
        channel = interaction.channel
        assert isinstance(channel, discord.TextChannel)
        msg = await channel.send(f"progress 0 {info}", view=AgainView())
        edits = int(os.environ.get("SELFTEST_EDITS", "8"))
        for i in range(1, edits + 1):
            await msg.edit(content=f"progress {i}")
        nonce = f"ping-{interaction.id}"[:25]
        ids = []
        for _ in range(2):  # the same delivery twice, as a resumed job would
            sent = await channel.send("result", file=discord.File(io.BytesIO(b"x" * 1024), "result.bin"), nonce=nonce)
            ids.append(sent.id)
        await interaction.followup.send(f"done {ids[0]} {ids[1]} {info}")

    @bot.tree.command(name="hello", description="Answer at once")
    async def hello(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("hi", ephemeral=True)

    @bot.tree.command(name="form", description="Open a modal")
    async def form(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(NameModal())

    @bot.tree.command(name="hold", description="Defer, wait, then follow up")
    async def hold(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await asyncio.sleep(float(os.environ.get("SELFTEST_HOLD", "1.0")))
        try:
            await interaction.followup.send("late")
        except discord.HTTPException as exc:
            assert interaction.channel is not None
            await interaction.channel.send(f"followup failed {describe_error(exc)}")  # type: ignore[union-attr]

    @bot.tree.command(name="slow", description="Defer too late")
    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(float(os.environ.get("SELFTEST_SLOW", "0.5")))
        try:
            await interaction.response.defer()
        except discord.HTTPException as exc:
            assert interaction.channel is not None
            await interaction.channel.send(f"defer failed {describe_error(exc)}")  # type: ignore[union-attr]

    @bot.tree.command(name="upload", description="Upload a file of the given size")
    async def upload(interaction: discord.Interaction, size: int) -> None:
        await interaction.response.defer()
        assert interaction.channel is not None
        try:
            await interaction.channel.send(file=discord.File(io.BytesIO(b"y" * size), "blob.bin"))  # type: ignore[union-attr]
            result = "upload ok"
        except discord.HTTPException as exc:
            result = f"upload failed {describe_error(exc)}"
        await interaction.followup.send(result)


async def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    point_at_fake(os.environ["DISCORD_API_BASE_URL"], os.environ["DISCORD_GATEWAY_URL"])
    bot = SelftestBot(int(os.environ["SELFTEST_GUILD_ID"]))
    add_commands(bot)
    try:
        async with bot:
            await bot.start(os.environ["DISCORD_TOKEN"])
    except discord.LoginFailure as exc:
        log.error("login failed: %s", exc)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
