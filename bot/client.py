"""The discord.py bot: owns the shared HTTP session, the job pipeline and the cogs."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from bot.config import Settings
from bot.discord_ui.coalescer import EditCoalescer
from bot.discord_ui.notifier import DiscordNotifier
from bot.discord_ui.starter import JobStarter
from bot.discord_ui.views import CancelButton
from bot.errors import BotError, NotReady
from bot.jobs.notifier import GuildRouter
from bot.jobs.store import GuildSettingsStore
from bot.metrics import DiscordRateLimitCounter, Metrics
from bot.moderation.policy import Defaults
from bot.pipeline import Pipeline, open_pipeline
from bot.playground import app as playground
from bot.playground.hub import JobHub
from bot.playground.members import GUILD_ID as PLAYGROUND_GUILD
from bot.playground.notifier import PlaygroundNotifier
from bot.web.server import WebServer

log = logging.getLogger(__name__)

EXTENSIONS = ("cogs.sora", "cogs.jobs", "cogs.admin", "cogs.credits", "cogs.creative")


class SoraBot(commands.Bot):
    def __init__(self, settings: Settings) -> None:
        sharding: dict[str, object] = {}
        if settings.shard_count is not None:
            sharding = {"shard_count": settings.shard_count, "shard_ids": settings.shard_ids}
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents(guilds=True),
            # Nothing the bot sends may ping anyone unless a message opts in explicitly.
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            **sharding,  # type: ignore[arg-type]
        )
        self.settings = settings
        self.pipeline: Pipeline | None = None
        self.metrics = Metrics()
        self.web: WebServer | None = None
        self.guild_settings: GuildSettingsStore | None = None
        self.policy_defaults = Defaults(
            cooldown_seconds=settings.cooldown_seconds,
            max_jobs_per_user=settings.max_pending_jobs_per_user,
            daily_allowance=settings.daily_credits,
        )
        self.coalescer = EditCoalescer()
        self.playground_hub = JobHub()
        """Live updates of playground jobs to its open pages (none unless PLAYGROUND=1 serves them)."""
        self.starter = JobStarter(self)
        self._stack = contextlib.AsyncExitStack()
        self._runner_task: asyncio.Task[None] | None = None

    def require_pipeline(self) -> Pipeline:
        if self.pipeline is None:
            raise NotReady("pipeline not started")
        return self.pipeline

    def require_guild_settings(self) -> GuildSettingsStore:
        if self.guild_settings is None:
            raise NotReady("guild settings not loaded")
        return self.guild_settings

    async def setup_hook(self) -> None:
        session = await self._stack.enter_async_context(aiohttp.ClientSession())
        discord_notifier = DiscordNotifier(self, self.coalescer)
        # Playground jobs (PLAYGROUND=1, on this start or an earlier one) go to its folder and page, even
        # when it is not served now: never to Discord. Every other job goes to Discord.
        kept = PlaygroundNotifier(self.playground_hub, playground.videos_dir(self.settings))
        notifier = GuildRouter(discord_notifier, {PLAYGROUND_GUILD: kept})
        self.pipeline = await self._stack.enter_async_context(
            open_pipeline(self.settings, session, notifier, start_runner=False, metrics=self.metrics)
        )
        await self._start_service(self.pipeline)
        self.guild_settings = self.pipeline.guild_settings
        discord_notifier.guild_settings = self.guild_settings  # the audit channel of each server
        self.tree.on_error = self.on_app_command_error
        self.tree.interaction_check = self._interaction_allowed  # type: ignore[method-assign]
        self.add_dynamic_items(CancelButton)
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        if self.settings.sync_commands:
            await self._sync_commands()
        # Jobs resume once guilds are known (their upload limits decide how videos are posted).
        self._runner_task = asyncio.create_task(self._start_runner(), name="start-runner")

    async def _start_service(self, pipeline: Pipeline) -> None:
        """Count Discord 429s, and serve /healthz, /metrics and /callbacks when HTTP_PORT is set (and the
        playground page with PLAYGROUND=1, on 8080 when HTTP_PORT is not set)."""
        counter = DiscordRateLimitCounter(self.metrics)
        discord_logger = logging.getLogger("discord")
        discord_logger.addHandler(counter)
        self._stack.callback(discord_logger.removeHandler, counter)
        port = self.settings.http_port
        if self.settings.playground:
            port = port or playground.DEFAULT_PORT
        if port is None:
            return

        async def database_ok() -> bool:
            await pipeline.repo.ping()
            return True

        self.web = WebServer(
            host=self.settings.http_host,
            port=port,
            metrics=self.metrics,
            checks={"gateway": self._gateway_connected, "database": database_ok},
            callbacks=pipeline.callbacks,
            wake=pipeline.runner.wake,
            metrics_token=self.settings.metrics_token.get() or None,
        )
        if self.settings.playground:
            playground.build(self.settings, pipeline, self.playground_hub).install(self.web.app)
        await self.web.start()
        self._stack.push_async_callback(self.web.stop)
        if self.settings.playground:
            # Runs before web.stop: the pages' event streams end, so the server can stop.
            self._stack.callback(self.playground_hub.close)
            log.info("Playground: %s (PLAYGROUND=1: beside the Discord bot)", playground.address(self.web))

    async def _gateway_connected(self) -> bool:
        # ``ws`` stays the last socket while discord.py reconnects: it must be ready AND still open.
        return self.is_ready() and not self.is_closed() and self.ws is not None and self.ws.open

    async def _start_runner(self) -> None:
        await self.wait_until_ready()
        assert self.pipeline is not None  # noqa: S101 - set in setup_hook
        await self.pipeline.runner.start()
        log.info("job runner started with providers %s", ", ".join(self.pipeline.providers))

    async def _sync_commands(self) -> None:
        guild_id = self.settings.discord_guild_id
        if guild_id:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
        else:
            synced = await self.tree.sync()
        log.info("synced %d commands %s", len(synced), f"to guild {guild_id}" if guild_id else "globally")

    async def on_ready(self) -> None:
        log.info("connected as %s (%s) to %d guilds", self.user, getattr(self.user, "id", "?"), len(self.guilds))
        for guild in list(self.guilds):
            await self._leave_if_not_allowed(guild)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._leave_if_not_allowed(guild)

    def guild_allowed(self, guild_id: int) -> bool:
        """ALLOWED_GUILD_IDS: empty = every server; else only those (the operator pays for each video)."""
        allowed = self.settings.allowed_guild_ids
        return not allowed or guild_id in allowed

    async def _leave_if_not_allowed(self, guild: discord.Guild) -> None:
        if self.guild_allowed(guild.id):
            return
        log.warning("leaving guild %s (%s): not in ALLOWED_GUILD_IDS", guild.id, guild.name)
        try:
            await guild.leave()
        except discord.HTTPException as exc:
            # Still ignored: every request from it is refused (JobStarter, interaction_check).
            log.warning("could not leave guild %s: %s %s", guild.id, exc.status, exc.text)

    async def _interaction_allowed(self, interaction: discord.Interaction[SoraBot]) -> bool:
        """Commands from a server outside ALLOWED_GUILD_IDS are answered with a refusal and not run."""
        if interaction.guild_id is None or self.guild_allowed(interaction.guild_id):
            return True
        name = getattr(interaction.command, "name", "?")
        log.info("ignored /%s from guild %s (not in ALLOWED_GUILD_IDS)", name, interaction.guild_id)
        return False

    async def on_app_command_error(
        self, interaction: discord.Interaction[SoraBot], error: app_commands.AppCommandError
    ) -> None:
        """The one place an unexpected command error becomes a polite reply."""
        original = getattr(error, "original", error)
        if isinstance(original, BotError):
            message = original.user_message
        elif isinstance(error, app_commands.CheckFailure):
            message = "You are not allowed to use this command here."
        else:
            log.error("command %s failed", interaction.command and interaction.command.name, exc_info=original)
            message = "Something went wrong on our side. Nothing was charged; please try again."
        with contextlib.suppress(discord.HTTPException):
            if interaction.response.is_done():
                await interaction.followup.send(message, ephemeral=True)
            else:
                await interaction.response.send_message(message, ephemeral=True)

    async def close(self) -> None:
        if self._runner_task is not None:
            self._runner_task.cancel()
        await self.coalescer.aclose()
        await self._stack.aclose()
        await super().close()


class ShardedSoraBot(SoraBot, commands.AutoShardedBot):
    """``SHARD_COUNT`` (and optionally ``SHARD_IDS``) set: this process connects those shards only, and
    Discord sends it the events of their guilds. Jobs and credits are shared with the other processes
    through the database (job leases: bot/jobs/runner.py)."""

    async def _gateway_connected(self) -> bool:
        # One socket per shard; ``ws`` is unused here.
        shards = self.shards.values()
        return self.is_ready() and not self.is_closed() and bool(shards) and not any(s.is_closed() for s in shards)


def make_bot(settings: Settings) -> SoraBot:
    """The bot for these settings: sharded on discord.py's AutoShardedBot when SHARD_COUNT is set."""
    return ShardedSoraBot(settings) if settings.shard_count is not None else SoraBot(settings)
