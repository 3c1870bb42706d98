"""Run a FakeRelay in its own process (benchmarks keep its memory out of the bot's).

``python -m tests.fakes.relay_server --port 0 --run-seconds 3600`` prints one line, ``RELAY <base url>
<api key>``, once it listens, then serves until stdin closes or it is terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from tests.fakes.relay import FakeRelay


async def serve(port: int, run_seconds: float, api_key: str) -> None:
    relay = FakeRelay(run_seconds=run_seconds, api_key=api_key)
    if port:
        await _start_on(relay, port)
    else:
        await relay.start()
    print(f"RELAY {relay.base_url} {relay.api_key}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The parent closing our stdin (or dying) ends us too.
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(1024) else None)
    try:
        await stop.wait()
    finally:
        await relay.stop()


async def _start_on(relay: FakeRelay, port: int) -> None:
    from aiohttp import web

    relay.port = port
    relay._runner = web.AppRunner(relay.app, access_log=None)
    await relay._runner.setup()
    await web.TCPSite(relay._runner, "127.0.0.1", port).start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--run-seconds", type=float, default=3600.0, help="how long each fake job takes")
    parser.add_argument("--api-key", default="bench-key")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.run_seconds, args.api_key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
