"""Run video decoding in a child process with a wall-clock limit, a CPU limit and a memory limit.

A provider's result is untrusted input to FFmpeg: a hostile file could make a decoder spin or
allocate without end. In a child process that costs the child only: the parent kills it on timeout
or when the job is cancelled, and ``RLIMIT_AS``/``RLIMIT_CPU`` (set by the child on itself, before
it opens the file) stop it from growing or spinning. The child gets a bare environment, so no API
key is within its reach.

Parent side: :func:`run_in_child`. Child side: ``python -m bot.media.sandbox`` reads one JSON request
on stdin and writes one JSON answer on stdout; only the operations in ``_OPERATIONS`` exist.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.errors import MediaError

log = logging.getLogger(__name__)

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
_NOT_A_VIDEO = "That file is not a playable video."


@dataclass(frozen=True)
class ChildLimits:
    seconds: float = 60.0
    """Wall-clock limit; the CPU limit is derived from it (decoders use several threads)."""
    memory_bytes: int = 1024 * 1024 * 1024
    """Address-space limit of the child (Python and FFmpeg included)."""


class ChildFailed(MediaError):
    """The child was killed (time, memory) or crashed: the file is treated as unusable."""


class ChildRefused(MediaError):
    """The child's operation raised a MediaError; ``kind`` is its class name (callers map their own)."""

    def __init__(self, user_message: str, detail: str, kind: str) -> None:
        super().__init__(user_message, detail)
        self.kind = kind


async def run_in_child(operation: str, args: dict[str, Any], limits: ChildLimits) -> Any:
    """Run one ``_OPERATIONS`` entry in a fresh child; its JSON result, or its MediaError raised here.

    Cancelling the caller kills the child at once."""
    request = json.dumps({"op": operation, "args": args, "memory_bytes": limits.memory_bytes, "cpu": limits.seconds})
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(_PACKAGE_ROOT),
        "MALLOC_ARENA_MAX": "2",  # glibc reserves 64 MiB of address space per arena otherwise
        "LANG": "C.UTF-8",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.media.sandbox",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(request.encode()), timeout=limits.seconds)
    except TimeoutError:
        raise ChildFailed(_NOT_A_VIDEO, f"{operation}: no answer within {limits.seconds:.0f}s; child killed") from None
    finally:
        if proc.returncode is None:  # timed out or cancelled: never leave the child running
            proc.kill()
            await proc.wait()
    try:
        answer = json.loads(out or b"null")
    except ValueError:
        answer = None
    if isinstance(answer, dict):
        _replay_logs(answer.get("logs"))
    if not isinstance(answer, dict):
        tail = err.decode(errors="replace")[-500:].strip()
        raise ChildFailed(_NOT_A_VIDEO, f"{operation}: child exited {proc.returncode} without an answer: {tail}")
    if "error" in answer:
        error = answer["error"]
        message = str(error.get("user_message") or _NOT_A_VIDEO)
        raise ChildRefused(message, f"{operation}: {error.get('detail')}", str(error.get("kind")))
    return answer.get("result")


def _replay_logs(records: Any) -> None:
    """The child's log lines, logged here under their own logger names (the child has no handlers)."""
    for record in records if isinstance(records, list) else []:
        try:
            level, name, message = record
            logging.getLogger(str(name)).log(int(level), "%s", message)
        except (TypeError, ValueError):
            continue


# --- child side --------------------------------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[int, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelno, record.name, record.getMessage()[:2000]))


def _limit_self(memory_bytes: int, cpu_seconds: float) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    cpu = max(1, int(cpu_seconds * 2))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _child() -> int:
    request = json.loads(sys.stdin.read())
    _limit_self(int(request["memory_bytes"]), float(request["cpu"]))
    collect = _Collect()
    logging.getLogger("bot").addHandler(collect)
    logging.getLogger("bot").setLevel(logging.INFO)
    from bot.media import video  # after the limits: nothing of FFmpeg runs unlimited

    operations: dict[str, Callable[..., Any]] = {
        "probe": video.probe_payload,
        "shrink": video.shrink_payload,
        "last_frame": video.last_frame_payload,
    }
    try:
        result = operations[request["op"]](**request["args"])
    except MediaError as exc:
        kind = type(exc).__name__
        answer: dict[str, Any] = {"error": {"user_message": exc.user_message, "detail": exc.detail, "kind": kind}}
    except MemoryError:
        answer = {"error": {"user_message": _NOT_A_VIDEO, "detail": "out of memory (limit reached)"}}
    else:
        answer = {"result": result}
    answer["logs"] = collect.records
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(_child())
