"""Benchmark: acknowledgement latency of a burst of ``/sora`` interactions from distinct users.

The real ``python -m bot`` process against the fake Discord (tests/e2e/world.py) and a fake relay
whose jobs never finish during the run. All interactions are dispatched at once; the fake records,
per interaction, the time from dispatch to the bot's callback (``callback_latency``) and we also
take the time to the answer that tells the user the job is queued (the first follow-up after a
deferral edits the "thinking" message, so it is timed when the fake sees it). Prints markdown
table rows. Run: ``python -m bench.bench_ack_latency [--burst 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from tests.e2e.world import world

TARGET_P99 = 0.5


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


async def run(burst: int) -> list[str]:
    env = {"DAILY_CREDITS": "1000000", "MAX_RUNNING_JOBS": "4", "COOLDOWN_SECONDS": "0"}
    async with world("relay", run_seconds=3600.0, env=env) as w:
        users = [w.discord.add_user(f"bench{i}") for i in range(burst)]
        await asyncio.sleep(3.0)  # the runner starts ~2 s after READY: measure the steady state
        started = time.monotonic()
        interactions = await asyncio.gather(
            *(
                w.discord.send_interaction(command="sora", options={"prompt": f"clip {i}", "duration": 4}, user_id=u.id)
                for i, u in enumerate(users)
            )
        )
        answered_at: dict[int, float] = {}

        def all_answered() -> bool:
            # Called on every change the fake sees: the first answer's time is taken to the request.
            for ia in interactions:
                if ia.id not in answered_at and ia.followups:
                    answered_at[ia.id] = time.monotonic() - ia.dispatched_at
            return len(answered_at) == len(interactions)

        await w.discord.wait_for(all_answered, 60, what="every follow-up")
        answered = list(answered_at.values())
        acks = [ia.callback_latency for ia in interactions if ia.callback_latency is not None]
        late = sum(1 for a in acks if a > 3.0)
        queued = sum(1 for ia in interactions if any("queued" in m.content for m in ia.messages))
        wall = time.monotonic() - started
    rows = [
        "| measure | n | p50 | p99 | max | target |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| acknowledgement (defer) | {len(acks)} | {statistics.median(acks) * 1000:.0f} ms | "
        f"{percentile(acks, 99) * 1000:.0f} ms | {max(acks) * 1000:.0f} ms | p99 < {TARGET_P99 * 1000:.0f} ms "
        f"({'met' if percentile(acks, 99) < TARGET_P99 else 'MISSED'}) |",
        f"| follow-up (job queued) | {len(answered)} | {statistics.median(answered) * 1000:.0f} ms | "
        f"{percentile(answered, 99) * 1000:.0f} ms | {max(answered) * 1000:.0f} ms | — |",
        "",
        f"{burst} interactions from {burst} users dispatched at once; {queued} queued, {late} acknowledged "
        f"after Discord's 3 s deadline; whole burst answered in {wall:.1f} s.",
    ]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", type=int, default=200)
    args = parser.parse_args()
    for row in asyncio.run(run(args.burst)):
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
