"""/jobs: the requester's recent videos (or, for server managers, the server's), paged.

Previous/Next are persistent buttons whose custom_id carries the scope, the viewer and the page
(``sora:jobs:me:<user id>:<page>``), so paging works after a restart; each click re-reads the database.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import SoraBot
from bot.discord_ui.links import shown
from bot.discord_ui.status import short
from bot.errors import BotError
from bot.jobs.model import Job, State

log = logging.getLogger(__name__)

PAGE_SIZE = 10
_ICONS = {
    "queued": "⏳",
    "submitting": "📨",
    "running": "🎬",
    "downloading": "⬇️",
    "delivering": "📤",
    "succeeded": "✅",
    "failed": "❌",
    "cancelled": "🚫",
}
_KIND_WORDS = {"retry": "retry of", "remix": "remix of", "continue": "continues"}
SCOPES = ("me", "server")


def describe(job: Job, *, show_requester: bool = False) -> str:
    """One line: state, cost, prompt, and a link to the video (or, while it runs, to its status message)."""
    where = ""
    if job.result_message_id and job.result_deleted_at:
        where = " — video deleted"
    elif job.state is State.SUCCEEDED and job.result_url and job.result_channel_id:
        where = f" — video: {shown(job.result_url)}"
    elif job.guild_id and job.channel_id and job.status_message_id:
        where = f" — [status](https://discord.com/channels/{job.guild_id}/{job.channel_id}/{job.status_message_id})"
    progress = f" {job.progress:.0f}%" if job.state == "running" and job.progress is not None else ""
    if job.private and show_requester:
        prompt = "🔒 private"  # another member's private prompt stays private, even to moderators here
    else:
        prompt = discord.utils.escape_markdown(short(job.prompt, 60))
    lineage = f" ({_KIND_WORDS[job.kind]} #{job.source_job_id})" if job.kind in _KIND_WORDS else ""
    who = f" · <@{job.user_id}>" if show_requester else ""
    return (
        f"{_ICONS.get(job.state, '•')} **#{job.id}** {job.state}{progress} · {job.model} · {job.cost} cr{who}"
        f" · {prompt}{lineage}{where}"
    )


class JobsPageButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"sora:jobs:(?P<scope>me|server):(?P<user_id>[0-9]+):(?P<page>[0-9]+)",
):
    def __init__(self, scope: str, user_id: int, page: int, *, label: str = "Page", disabled: bool = False) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=f"sora:jobs:{scope}:{user_id}:{page}",
                disabled=disabled,
            )
        )
        self.scope, self.user_id, self.page = scope, user_id, page

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> JobsPageButton:
        return cls(match["scope"], int(match["user_id"]), int(match["page"]))

    async def callback(self, interaction: discord.Interaction[SoraBot]) -> None:  # type: ignore[override]
        if interaction.user.id != self.user_id:
            await interaction.response.send_message("These buttons belong to someone else's /jobs.", ephemeral=True)
            return
        try:
            embed, view = await jobs_page(interaction, self.scope, max(1, self.page))
        except BotError as exc:
            await interaction.response.send_message(exc.user_message, ephemeral=True)
            return
        await interaction.response.edit_message(embed=embed, view=view)


async def jobs_page(
    interaction: discord.Interaction[SoraBot], scope: str, page: int
) -> tuple[discord.Embed, discord.ui.View | None]:
    """The embed and the paging buttons for one page. BotError when not allowed or not ready."""
    repo = interaction.client.require_pipeline().repo
    viewer = interaction.user.id
    if scope == "server":
        if interaction.guild_id is None:
            raise BotError("server scope outside a server", user_message="scope:server works inside a server.")
        permissions = interaction.permissions
        if not (permissions and permissions.manage_guild):
            raise BotError(
                "not a server manager", user_message="Only members with Manage Server can see the server's jobs."
            )
        guild_id = str(interaction.guild_id)
        total = await repo.count_guild_jobs(guild_id)
        jobs = await repo.guild_jobs(guild_id, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        title, empty = "This server's recent videos", "No videos have been made on this server yet."
    else:
        total = await repo.count_jobs(str(viewer))
        jobs = await repo.recent_jobs(str(viewer), limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        title, empty = "Your recent videos", "You have no videos yet — try /sora."
    pages = max(1, math.ceil(total / PAGE_SIZE))
    if not jobs:
        text = empty if total == 0 else f"There is no page {page}; there are {pages}."
        return discord.Embed(title=title, description=text), None
    embed = discord.Embed(
        title=title, description="\n".join(describe(j, show_requester=scope == "server") for j in jobs)
    )
    embed.set_footer(text=f"Page {page} of {pages} · {total} videos")
    if pages == 1:
        return embed, None
    view = discord.ui.View(timeout=None)
    view.add_item(JobsPageButton(scope, viewer, page - 1, label="◀ Previous", disabled=page <= 1))
    view.add_item(JobsPageButton(scope, viewer, page + 1, label="Next ▶", disabled=page >= pages))
    return embed, view


class JobsCog(commands.Cog):
    def __init__(self, bot: SoraBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(JobsPageButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(JobsPageButton)

    @app_commands.command(name="jobs", description="Your recent videos")
    @app_commands.describe(
        page="Page of results (10 per page)",
        scope="Your videos, or (with Manage Server) everyone's on this server",
    )
    @app_commands.choices(
        scope=[app_commands.Choice(name="mine", value="me"), app_commands.Choice(name="this server", value="server")]
    )
    async def jobs(
        self,
        interaction: discord.Interaction[SoraBot],
        page: app_commands.Range[int, 1, 1000] = 1,
        scope: str = "me",
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            embed, view = await jobs_page(interaction, scope if scope in SCOPES else "me", page)
        except BotError as exc:
            await interaction.followup.send(exc.user_message, ephemeral=True)
            return
        if view is None:
            await interaction.followup.send(embed=embed, ephemeral=True)
        else:
            await interaction.followup.send(embed=embed, view=view, ephemeral=True)


async def setup(bot: SoraBot) -> None:
    await bot.add_cog(JobsCog(bot))
