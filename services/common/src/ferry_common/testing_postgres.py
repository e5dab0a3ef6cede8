"""A private PostgreSQL server for tests that stop and start it (outages, recovery).

The shared server ``.ci/run`` starts serves every other test at once, so a test that
takes the database away needs its own: ``initdb`` into a temporary directory and
``pg_ctl`` on a free loopback port, trust authentication. As root (CI), the cluster
runs as the ``postgres`` user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType

from ferry_common.process import free_port

__all__ = ["PrivatePostgres", "postgres_bin"]


def postgres_bin() -> pathlib.Path | None:
    """The directory of Debian's PostgreSQL server binaries (``initdb``, ``pg_ctl``), if installed."""
    for candidate in sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    return pathlib.Path(found).parent if found else None


class PrivatePostgres:
    """``with PrivatePostgres() as pg: pg.url`` (SQLAlchemy URL); ``pg.stop()`` / ``pg.start()`` in between."""

    def __init__(self) -> None:
        binaries = postgres_bin()
        if binaries is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self._bin = binaries
        self._root = pathlib.Path(tempfile.mkdtemp(prefix="ferry-pg-"))
        self._data = self._root / "data"
        self.port = free_port()
        self._user: str | None = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self._root, entry.pw_uid, entry.pw_gid)
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self._bin / args[0]), *args[1:]]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self._root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self._data), "-o", options, "-l", str(self._root / "log"), "-w", "start")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"private PostgreSQL did not listen on {self.port}")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self._data), "-m", "immediate", "-w", "stop")

    def __enter__(self) -> PrivatePostgres:
        self._run("initdb", "-D", str(self._data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self._root, ignore_errors=True)
