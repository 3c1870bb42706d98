"""Benchmark: peak memory of ``HttpClient.download`` is independent of the result's size.

A local aiohttp server (in the same process) streams a generated body of N MiB (one reused 64 KiB
block; the body never exists in memory), and ``HttpClient.download`` writes it to a temporary file.
The peak resident set size (``VmHWM`` in ``/proc/self/status``) is read before and after; the
kernel's peak counter is reset first where allowed (``/proc/self/clear_refs``). Each size runs in a
fresh interpreter so one measurement cannot hide behind another's peak. Target: at most +16 MiB.

Run: ``python -m bench.bench_download_memory`` (Linux). ``--out FILE`` appends the table to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from bot.providers.http import HttpClient

MIB = 1024 * 1024
BLOCK = bytes(range(256)) * 256  # 64 KiB
TARGET_MIB = 16.0


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not permitted."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def serve() -> tuple[web.AppRunner, str]:
    async def body(request: web.Request) -> web.StreamResponse:
        size = int(request.query["bytes"])
        response = web.StreamResponse(headers={"Content-Type": "video/mp4", "Content-Length": str(size)})
        await response.prepare(request)
        left = size
        while left > 0:
            chunk = BLOCK if left >= len(BLOCK) else BLOCK[:left]
            await response.write(chunk)
            left -= len(chunk)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/video.mp4", body)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def measure(size_mib: int) -> dict[str, float]:
    size = size_mib * MIB
    runner, base = await serve()
    try:
        async with aiohttp.ClientSession() as session:
            client = HttpClient(session, provider="bench", max_retries=0, base_url=base)
            with tempfile.TemporaryDirectory() as tmp:
                # Warm up with 1 MiB: first-request allocations are not what we measure. Kept small, so
                # memory that grew with the body could not be reused from the warm-up's freed arenas.
                await client.download(f"{base}/video.mp4?bytes={MIB}", Path(tmp) / "warm.mp4", max_bytes=MIB)
                Path(tmp, "warm.mp4").unlink()
                reset = reset_peak()
                before_hwm, before_rss = status_kib("VmHWM"), status_kib("VmRSS")
                started = time.perf_counter()
                dest = await client.download(f"{base}/video.mp4?bytes={size}", Path(tmp) / "video.mp4", max_bytes=size)
                seconds = time.perf_counter() - started
                written = dest.stat().st_size
                after_hwm = status_kib("VmHWM")
    finally:
        await runner.cleanup()
    if written != size:
        raise RuntimeError(f"wrote {written} bytes, expected {size}")
    baseline = before_rss if reset else before_hwm
    return {
        "size_mib": size_mib,
        "baseline_mib": baseline / 1024,
        "peak_mib": after_hwm / 1024,
        "increase_mib": max(0, after_hwm - baseline) / 1024,
        "seconds": seconds,
        "peak_reset": float(reset),
    }


def child(size_mib: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_download_memory", "--one", str(size_mib)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100], help="body sizes in MiB")
    parser.add_argument("--out", type=Path, help="append the table to this file too")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child mode: one size, JSON out
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(asyncio.run(measure(args.one))))
        return
    results = [child(size) for size in args.sizes]
    lines = [
        "Download memory (HttpClient.download, server in the same process, fresh interpreter per size).",
        "",
        "| body | RSS before (MiB) | peak RSS (MiB) | peak increase (MiB) | time (s) | MB/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['size_mib']:.0f} MiB | {r['baseline_mib']:.1f} | {r['peak_mib']:.1f} | {r['increase_mib']:.1f} | "
            f"{r['seconds']:.2f} | {r['size_mib'] * MIB / 1e6 / r['seconds']:.0f} |"
        )
    worst = max(r["increase_mib"] for r in results)
    verdict = "within" if worst <= TARGET_MIB else "OVER"
    lines += ["", f"Largest increase {worst:.1f} MiB: {verdict} the +{TARGET_MIB:.0f} MiB target."]
    if not all(r["peak_reset"] for r in results):
        lines.append("(Peak counter could not be reset: increases are measured against the warm-up peak.)")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        with args.out.open("a", encoding="utf-8") as out:
            out.write(table + "\n")


if __name__ == "__main__":
    main()
