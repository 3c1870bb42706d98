"""How a job reads to people, in plain text shared by every front end (Discord embeds, the playground
page). Pure: no markup of any front end here."""

from __future__ import annotations

from bot.domain import is_portrait
from bot.jobs.model import Job, State

HEADLINES = {
    State.QUEUED: "⏳ Queued",
    State.SUBMITTING: "📨 Sending to the video provider",
    State.RUNNING: "🎬 Generating",
    State.DOWNLOADING: "⬇️ Downloading the result",
    State.DELIVERING: "📤 Posting the video",
    State.SUCCEEDED: "✅ Done",
    State.FAILED: "❌ Failed",
    State.CANCELLED: "🚫 Cancelled",
}
KIND_WORDS = {"retry": "Retry of", "remix": "Remix of", "continue": "Continues"}


def settings_line(job: Job) -> str:
    shape = "portrait" if is_portrait(job.size) else "landscape"
    sound = "" if job.audio is None else (" · with sound" if job.audio else " · silent")
    return f"{job.model} · {job.seconds} s · {job.size} ({shape}){sound}"


def provider_line(job: Job) -> str:
    """Which provider makes the video, and the one it first went to when it had to move."""
    if job.failover_from:
        return f"{job.provider} ({job.failover_from} could not take it, so it moved)"
    return job.provider


def lineage_line(job: Job) -> str | None:
    """ "Retry of video #5" and the like; None for a plain /sora job."""
    word = KIND_WORDS.get(job.kind)
    return f"{word} video #{job.source_job_id}" if word and job.source_job_id else None


def cost_line(job: Job) -> str:
    """What the job costs: reserved while it runs, charged once done, refunded if it did not finish."""
    if job.state is State.SUCCEEDED:
        return f"{job.cost} credits charged"
    if job.state.terminal:
        return f"{job.cost} credits, refunded" if job.cost else "0 credits"
    return f"{job.cost} credits reserved"
