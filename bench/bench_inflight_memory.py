"""Benchmark: resident memory per in-flight job, with 1,000 jobs running at once on a fake relay.

One process holds the real pipeline (``bot.pipeline.open_pipeline``: SQLite, the relay client, the
runner with MAX_RUNNING_JOBS=1000) and a no-op notifier; the fake relay runs in a separate process
(``python -m tests.fakes.relay_server``) so its memory is not counted. After a warm-up batch, RSS is
read, 1,000 jobs are submitted through JobService and RSS is read again once every one of them is
``running`` (submitted, being polled). Prints markdown table rows.
Run: ``python -m bench.bench_inflight_memory [--jobs 1000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bot.config import Secret, Settings
from bot.domain import VideoRequest
from bot.jobs.model import Job, State
from bot.jobs.notifier import Delivery
from bot.jobs.service import NewJob
from bot.pipeline import Pipeline, open_pipeline

TARGET_KIB = 200
WARMUP = 50


class NoopNotifier:
    async def job_changed(self, job: Job) -> None:
        return None

    async def deliver(self, job: Job, video: Path) -> Delivery:
        return Delivery()


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


async def submit_and_wait(pipeline: Pipeline, count: int, tag: str) -> float:
    """Submit ``count`` jobs (one user each); return seconds until all are running."""
    started = time.perf_counter()
    for n in range(count):
        request = VideoRequest(f"{tag} clip {n}", 4)
        await pipeline.service.submit(NewJob(request, user_id=f"{tag}-{n}", guild_id="bench"))
    while len(await pipeline.repo.jobs_in([State.QUEUED, State.SUBMITTING])):
        await asyncio.sleep(0.2)
    return time.perf_counter() - started


async def measure(base_url: str, api_key: str, jobs: int, folder: Path) -> tuple[int, int, float]:
    settings = Settings(
        provider="relay",
        relay_api_key=Secret(api_key),
        relay_base_url=base_url,
        database_url=f"sqlite:///{folder / 'bench.db'}",
        data_dir=folder,
        max_running_jobs=jobs + WARMUP,
        max_running_jobs_per_user=1,
        typical_job_seconds=3600.0,
        daily_credits=10**9,
    )
    async with aiohttp.ClientSession() as session, open_pipeline(settings, session, NoopNotifier()) as pipeline:
        await submit_and_wait(pipeline, WARMUP, "warm")  # imports, pools and caches settle first
        gc.collect()
        await asyncio.sleep(1.0)
        before = rss_kib()
        took = await submit_and_wait(pipeline, jobs, "load")
        running = len(await pipeline.repo.jobs_in([State.RUNNING]))
        assert running == jobs + WARMUP, running
        gc.collect()
        await asyncio.sleep(6.0)  # every new job has had its first poll (5 s after submit) by now
        after = rss_kib()
    return before, after, took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    relay = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.relay_server", "--port", "0", "--run-seconds", "36000"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert relay.stdout is not None
        _, base_url, api_key = relay.stdout.readline().split()
        with tempfile.TemporaryDirectory(prefix="bench-inflight-") as tmp:
            before, after, took = asyncio.run(measure(base_url, api_key, args.jobs, Path(tmp)))
    finally:
        relay.terminate()
        relay.wait(10)
    per_job = (after - before) / args.jobs
    print("| in-flight jobs | RSS before | RSS with all running | per job | target | submit+start time |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {args.jobs} | {before / 1024:.1f} MiB | {after / 1024:.1f} MiB | {per_job:.1f} KiB | "
        f"≤ {TARGET_KIB} KiB ({'met' if per_job <= TARGET_KIB else 'MISSED'}) | {took:.1f} s |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
