"""Answering an interaction whether or not it was already acknowledged."""

from __future__ import annotations

import logging
from typing import Any

import discord

log = logging.getLogger(__name__)


async def reply(interaction: discord.Interaction[Any], text: str) -> None:
    """A private answer: the response when none was sent yet, else a follow-up. A refused answer is
    logged, not raised (the member may have dismissed the interaction)."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException as exc:
        log.info("could not answer interaction %s: %s", interaction.id, exc.status)
