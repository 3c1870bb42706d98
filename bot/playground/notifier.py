"""The playground's Notifier: every job change goes to the open pages; a finished video is kept in
a local folder and served to the page (no upload, so no size limit and no shrinking)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from bot.jobs.model import Job
from bot.jobs.notifier import Delivery
from bot.playground.hub import JobHub


def video_path(videos_dir: Path, job_id: int) -> Path:
    return videos_dir / f"{job_id}.mp4"


def video_url(job_id: int) -> str:
    return f"/videos/{job_id}.mp4"


class PlaygroundNotifier:
    def __init__(self, hub: JobHub, videos_dir: Path) -> None:
        self.hub = hub
        self.videos_dir = videos_dir

    async def job_changed(self, job: Job) -> None:
        self.hub.publish(job)

    async def deliver(self, job: Job, video: Path) -> Delivery:
        # Copying again after a crash mid-delivery writes the same file: idempotent.
        await asyncio.to_thread(_copy, video, video_path(self.videos_dir, job.id))
        return Delivery(message_id=str(job.id), url=video_url(job.id))


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".part")
    shutil.copyfile(src, partial)
    partial.replace(dest)  # a page never sees half a file
