"""/jobs: the requester's recent videos, their state and where to find them."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import SoraBot
from bot.discord_ui.status import short
from bot.errors import BotError
from bot.jobs.model import Job

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


def describe(job: Job) -> str:
    where = ""
    if job.guild_id and job.channel_id:
        message_id = job.result_message_id or job.status_message_id
        if message_id:
            where = f" — [open](https://discord.com/channels/{job.guild_id}/{job.channel_id}/{message_id})"
    progress = f" {job.progress:.0f}%" if job.state == "running" and job.progress is not None else ""
    prompt = discord.utils.escape_markdown(short(job.prompt, 60))
    return f"{_ICONS.get(job.state, '•')} **#{job.id}** {job.state}{progress} · {job.cost} cr · {prompt}{where}"


class JobsCog(commands.Cog):
    def __init__(self, bot: SoraBot) -> None:
        self.bot = bot

    @app_commands.command(name="jobs", description="Your recent Sora videos")
    @app_commands.describe(page="Page of results (10 per page)")
    async def jobs(self, interaction: discord.Interaction[SoraBot], page: app_commands.Range[int, 1, 100] = 1) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            repo = self.bot.require_pipeline().repo
        except BotError as exc:
            await interaction.followup.send(exc.user_message, ephemeral=True)
            return
        jobs = await repo.recent_jobs(str(interaction.user.id), limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        if not jobs:
            text = "You have no videos yet — try /sora." if page == 1 else f"No videos on page {page}."
            await interaction.followup.send(text, ephemeral=True)
            return
        embed = discord.Embed(title="Your recent videos", description="\n".join(describe(j) for j in jobs))
        embed.set_footer(text=f"Page {page} · /jobs page:{page + 1} for older ones")
        await interaction.followup.send(embed=embed, ephemeral=True)


async def setup(bot: SoraBot) -> None:
    await bot.add_cog(JobsCog(bot))
