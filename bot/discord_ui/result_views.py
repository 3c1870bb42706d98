"""The buttons under a posted video: Retry, Remix, Continue and Delete.

Each custom_id carries the action and the source job id (``sora:retry:42``), and everything else is
read from the database when the button is pressed, so the buttons keep working after a restart and
long after the interaction token that made the video has expired. The work itself lives in
``cogs/creative.py`` (looked up by cog name at click time, so this module stays free of cog imports).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Protocol

import discord

from bot.jobs.model import Job

if TYPE_CHECKING:
    from bot.client import SoraBot

log = logging.getLogger(__name__)

CREATIVE_COG = "CreativeCog"
# action -> (label, emoji, style)
ACTIONS: dict[str, tuple[str, str, discord.ButtonStyle]] = {
    "retry": ("Retry", "🔁", discord.ButtonStyle.primary),
    "remix": ("Remix", "🎛️", discord.ButtonStyle.secondary),
    "continue": ("Continue", "⏭️", discord.ButtonStyle.secondary),
    "delete": ("Delete", "🗑️", discord.ButtonStyle.danger),
}


class ResultActions(Protocol):
    """What the creative cog offers the buttons."""

    async def on_result_button(self, interaction: discord.Interaction[SoraBot], action: str, job_id: int) -> None: ...


def custom_id(action: str, job_id: int) -> str:
    return f"sora:{action}:{job_id}"


class ResultButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"sora:(?P<action>retry|remix|continue|delete):(?P<job_id>[0-9]+)",
):
    def __init__(self, action: str, job_id: int) -> None:
        label, emoji, style = ACTIONS[action]
        super().__init__(discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=custom_id(action, job_id)))
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ResultButton:
        return cls(match["action"], int(match["job_id"]))

    async def callback(self, interaction: discord.Interaction[SoraBot]) -> None:  # type: ignore[override]
        handler: ResultActions | None = interaction.client.get_cog(CREATIVE_COG)  # type: ignore[assignment]
        if handler is None:
            await interaction.response.send_message(
                "These buttons are not available right now. Please try again in a moment.", ephemeral=True
            )
            return
        await handler.on_result_button(interaction, self.action, self.job_id)


def result_view(job: Job, *, uploaded: bool = True) -> discord.ui.View:
    """The buttons under a posted video. Continue needs the video itself, so it is left off when only
    a link could be posted."""
    view = discord.ui.View(timeout=None)
    for action in ACTIONS:
        if action == "continue" and not uploaded:
            continue
        view.add_item(ResultButton(action, job.id))
    return view
