"""A throwaway PostgreSQL server for tests: initdb in a temp dir, pg_ctl on a free loopback port.

Runs as the ``postgres`` user when we are root (initdb refuses root), else as ourselves. The data dir
also holds the server's unix socket, so servers started by several xdist workers never collide.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Durability off: a test cluster is thrown away, and fsync dominates its run time.
FAST = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"


def find_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian layout), or the one holding initdb on PATH."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name.split(".")[0]))
    for candidate in reversed(dirs):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


@dataclass(frozen=True)
class PgServer:
    port: int
    data_dir: Path

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], as_postgres: bool) -> None:
    prefix = ["runuser", "-u", "postgres", "--"] if as_postgres else []
    subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=120)


def start_server(bin_dir: Path, server: PgServer) -> None:
    """``pg_ctl start`` on the server's port and data dir (again, after ``stop_server``)."""
    options = f"-p {server.port} -k {server.data_dir} -c listen_addresses=127.0.0.1 {FAST}"
    start = [str(bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-o", options, "-l", str(server.data_dir / "log")]
    _run([*start, "-w", "start"], os.geteuid() == 0)


def stop_server(bin_dir: Path, server: PgServer, mode: str = "fast") -> None:
    """``pg_ctl stop``: ``fast`` ends every session ("terminating connection due to administrator
    command") and refuses new ones, as a routine restart of a hosted server does."""
    _run([str(bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-m", mode, "-w", "stop"], os.geteuid() == 0)


@contextlib.contextmanager
def running_server(bin_dir: Path) -> Iterator[PgServer]:
    """Start a fresh cluster; stop it and delete its files afterwards."""
    as_postgres = os.geteuid() == 0
    data_dir = Path(tempfile.mkdtemp(prefix="sora-pg-"))
    try:
        if as_postgres:
            shutil.chown(data_dir, "postgres", "postgres")
        initdb = [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        _run(initdb, as_postgres)
        for attempt in range(5):  # another process may grab the free port before the server does
            port = _free_port()
            try:
                start_server(bin_dir, PgServer(port, data_dir))
                break
            except subprocess.CalledProcessError:
                if attempt == 4:
                    raise
        log.info("PostgreSQL test server on port %s in %s", port, data_dir)
        try:
            yield PgServer(port, data_dir)
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):  # a test may have left it stopped
                _run([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "stop"], as_postgres)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
