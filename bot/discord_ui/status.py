"""How a job looks in its channel status message: one embed plus a Cancel button."""

from __future__ import annotations

import discord

from bot.discord_ui.links import shown
from bot.jobs.describe import HEADLINES, cost_line, lineage_line, provider_line, settings_line
from bot.jobs.model import Job, State

BAR_CELLS = 20
_COLOURS = {
    State.SUCCEEDED: discord.Colour.green(),
    State.FAILED: discord.Colour.red(),
    State.CANCELLED: discord.Colour.light_grey(),
}


def progress_bar(percent: float) -> str:
    filled = round(BAR_CELLS * max(0.0, min(percent, 100.0)) / 100)
    return "█" * filled + "░" * (BAR_CELLS - filled)


def short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def elapsed(job: Job) -> str:
    """Running jobs show Discord's live relative timestamp (it ticks in every client without a
    single edit, so no edit budget is spent on a clock); finished ones show the total."""
    if job.finished_at is None:
        return f"started <t:{int(job.created_at)}:R>"
    seconds = max(0, int(job.finished_at - job.created_at))
    return f"{seconds // 60}:{seconds % 60:02d}"


def state_line(job: Job) -> str:
    headline = HEADLINES[job.state]
    if job.state is State.QUEUED and job.queue_position:
        return f"{headline} — position {job.queue_position} in line"
    if job.state is State.RUNNING:
        if job.queue_position and job.progress is None:
            return f"⏳ In the provider's queue — position {job.queue_position}"
        if job.progress is not None:
            return f"{headline}\n`{progress_bar(job.progress)}` {job.progress:.0f}%"
        return f"{headline} (the provider gives no progress figure)"
    if job.state in (State.FAILED, State.CANCELLED) and job.error_message:
        return f"{headline}: {job.error_message}"
    return headline


PRIVATE_NOTE = "🔒 Private request: the prompt and the video go to the requester by direct message."


def prompt_text(job: Job) -> str:
    """The prompt as shown in a channel: hidden for a private job."""
    if job.private:
        return PRIVATE_NOTE
    return short(discord.utils.escape_markdown(job.prompt), 1500)


def status_embed(job: Job, *, balance_left: int | None = None) -> discord.Embed:
    """The status message body. Mentions inside embeds never ping, so the requester is named safely.

    ``balance_left`` (the requester's credits once this job settled) is shown when given: the
    notifier reads it once, for the final render."""
    embed = discord.Embed(
        title=f"Video #{job.id}",
        description=prompt_text(job),
        colour=_COLOURS.get(job.state, discord.Colour.blurple()),
    )
    embed.add_field(name="Settings", value=settings_line(job), inline=False)
    embed.add_field(name="Provider", value=provider_line(job), inline=True)
    if (lineage := lineage_line(job)) is not None:
        embed.add_field(name="Made from", value=lineage, inline=False)
    embed.add_field(name="Requested by", value=f"<@{job.user_id}>", inline=True)
    embed.add_field(name="Cost", value=cost_line(job), inline=True)
    if balance_left is not None:
        embed.add_field(name="Balance left", value=f"{balance_left} credits", inline=True)
    embed.add_field(name="Time", value=elapsed(job), inline=True)
    embed.add_field(name="Status", value=short(state_line(job), 1000), inline=False)
    if job.state is State.SUCCEEDED and job.result_url:
        embed.add_field(name="Video", value="deleted" if job.result_deleted_at else shown(job.result_url), inline=False)
    if job.delivery_note:
        embed.set_footer(text=short(job.delivery_note, 300))
    return embed


def render_key(job: Job) -> tuple[object, ...]:
    """What makes two renders different; progress-only differences are the ones that get throttled."""
    return (job.state, job.queue_position, job.error_message, job.result_url, job.delivery_note)
