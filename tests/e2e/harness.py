"""Drive a real bot process against the fake Discord.

How a discord.py bot is pointed at the fake (the real bot must do exactly this, before ``login``):

    import discord, yarl
    discord.http.Route.BASE = settings.discord_api_base_url        # e.g. http://127.0.0.1:PORT/api/v10
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)

Why both, and why that is enough (discord.py 2.7.1):
- Every REST call builds its URL as ``Route.BASE + path`` when the Route is constructed (http.py), and
  interaction callbacks / follow-ups (webhook/async_.py) use the same Route class. Set it before the
  client makes its first request; it is a class attribute, so one assignment covers all clients.
- ``Client.connect`` opens the first websocket at ``DiscordWebSocket.DEFAULT_GATEWAY`` (no REST lookup
  for a non-sharded client), resumes at READY's ``resume_gateway_url`` (the fake sends its own URL) and
  falls back to ``DEFAULT_GATEWAY`` after an invalid session. ``AutoShardedClient`` instead asks
  ``GET /gateway/bot`` (through Route.BASE) and uses the returned ``url``: the fake returns its gateway URL.
- discord.py appends ``?v=10&encoding=json&compress=zlib-stream``; the fake honours zlib-stream.
- CDN downloads (``Attachment.read``) use the attachment's absolute ``url``, which the fake points at itself.

Use in tests::

    async with FakeDiscord() as fake, BotProcess.for_fake(fake, extra_env={...}) as bot:
        await bot.wait_ready(fake)
        ...

or a module-scoped fixture (see tests/e2e/test_fake_discord_selftest.py). The bot's stdout+stderr go to
``bot.log_path``; ``__aexit__`` prints its tail when the block fails, so pytest shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.fakes.discord import FakeDiscord

REPO_ROOT = Path(__file__).resolve().parents[2]
# Only these are inherited, so a developer's real tokens and API keys never reach a test bot.
PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "VIRTUAL_ENV", "TZ")


class BotProcess:
    """``python -m <module>`` in ``workdir`` (kept across restarts: the bot's database lives there)."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        module: str = "bot",
        args: Sequence[str] = (),
        workdir: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.module = module
        self.args = tuple(args)
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="e2e-bot-"))
        self.log_path = log_path or self.workdir / "bot.log"
        self.env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
        self.env.update(PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
        self.env.update(env)
        self.proc: asyncio.subprocess.Process | None = None
        self.fake: FakeDiscord | None = None  # set by for_fake: the default for start/wait_ready/restart
        self.starts = 0
        self._ready_baseline = 0
        self._sync_baseline = 0

    @classmethod
    def for_fake(
        cls,
        fake: FakeDiscord,
        *,
        module: str = "bot",
        extra_env: Mapping[str, str] | None = None,
        workdir: Path | None = None,
    ) -> BotProcess:
        """DISCORD_TOKEN / DISCORD_API_BASE_URL / DISCORD_GATEWAY_URL from the fake, plus ``extra_env``."""
        bot = cls({**fake.bot_env(), **(extra_env or {})}, module=module, workdir=workdir)
        bot.fake = fake
        return bot

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    async def start(self, fake: FakeDiscord | None = None) -> None:
        """Spawn the process. With ``fake``, ``wait_ready`` later waits for a READY newer than this start."""
        if self.running:
            raise RuntimeError("bot process already running")
        fake = fake or self.fake
        if fake is not None:
            self._ready_baseline, self._sync_baseline = fake.ready_count, fake.sync_count
        self.starts += 1
        with self.log_path.open("ab") as log_file:
            log_file.write(
                f"\n===== start #{self.starts}: python -m {' '.join((self.module, *self.args))} =====\n".encode()
            )
            log_file.flush()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self.module,
                *self.args,
                cwd=self.workdir,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
            )

    async def wait_ready(self, fake: FakeDiscord | None = None, timeout: float = 20.0, *, synced: bool = False) -> None:
        """Wait until the fake answered this process's IDENTIFY with READY (and, if ``synced``, a command sync)."""
        fake = fake or self.fake
        assert fake is not None, "pass the FakeDiscord (or build with BotProcess.for_fake)"

        def ready() -> bool:
            if not self.running:
                raise RuntimeError(f"bot exited with {self.returncode} before READY\n{self.log_tail()}")
            ok = fake.ready_count > self._ready_baseline
            return ok and (not synced or fake.sync_count > self._sync_baseline)

        try:
            await fake.wait_for(ready, timeout, what="the bot to connect")
        except TimeoutError:
            raise TimeoutError(f"bot not ready after {timeout}s\n{self.log_tail()}") from None

    async def wait_exit(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, like a crash or an OOM kill."""
        if self.running:
            assert self.proc is not None
            self.proc.kill()

    async def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then wait (SIGKILL after ``timeout``). Returns the exit code."""
        if self.proc is None:
            return None
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode

    async def restart(self, fake: FakeDiscord | None = None, *, hard: bool = False) -> None:
        """Stop (SIGKILL if ``hard``, else SIGTERM), start again in the same workdir, wait for READY."""
        if hard:
            self.kill()
            if self.proc is not None:
                await self.proc.wait()
        else:
            await self.terminate()
        fake = fake or self.fake
        await self.start(fake)
        if fake is not None:
            await self.wait_ready(fake)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"----- {self.log_path} (last {len(tail)} lines) -----\n" + "\n".join(tail)

    async def __aenter__(self) -> BotProcess:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(ProcessLookupError):
            await self.terminate()
        if exc_type is not None:
            print(self.log_tail())  # captured by pytest, shown with the failure
