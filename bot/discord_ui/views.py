"""The persistent Cancel button. Its custom_id carries the job id, so it works after a restart and
long after the interaction token has expired: nothing about it lives in memory."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import discord

from bot.errors import BotError
from bot.jobs.model import Job

if TYPE_CHECKING:
    from bot.client import SoraBot

log = logging.getLogger(__name__)


class CancelButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"sora:cancel:(?P<job_id>[0-9]+)"):
    def __init__(self, job_id: int) -> None:
        super().__init__(
            discord.ui.Button(label="Cancel", style=discord.ButtonStyle.danger, custom_id=f"sora:cancel:{job_id}")
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> CancelButton:
        return cls(int(match["job_id"]))

    async def callback(self, interaction: discord.Interaction[SoraBot]) -> None:  # type: ignore[override]
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            pipeline = interaction.client.require_pipeline()
            job = await pipeline.repo.get_job(self.job_id)
            if job is None:
                raise BotError("no such job", user_message="That job no longer exists.")
            if not may_manage(interaction, job):
                raise BotError(
                    "not the requester",
                    user_message="Only the person who asked for this video (or a moderator) can cancel it.",
                )
            cancelled = await pipeline.service.cancel(self.job_id)
            await interaction.followup.send(
                f"Cancelled video #{cancelled.id}; {cancelled.cost} credits were refunded.", ephemeral=True
            )
        except BotError as exc:
            await interaction.followup.send(exc.user_message, ephemeral=True)


def may_manage(interaction: discord.Interaction[Any], job: Job, *, channel_id: str | None = None) -> bool:
    """The requester, or a member with Manage Messages where the job lives: the click must come from
    the job's own server (and ``channel_id``, when given), because the permissions an interaction
    carries are those of the server and channel it was clicked in, whatever its custom id names."""
    if str(interaction.user.id) == job.user_id:
        return True
    if job.guild_id is None or interaction.guild_id is None or str(interaction.guild_id) != job.guild_id:
        return False
    if channel_id is not None and str(interaction.channel_id) != channel_id:
        return False
    permissions = interaction.permissions
    return bool(permissions and permissions.manage_messages)


def job_view(job: Job) -> discord.ui.View | None:
    """The buttons under a status message; none once the job is over."""
    if job.state.terminal:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job.id))
    return view
