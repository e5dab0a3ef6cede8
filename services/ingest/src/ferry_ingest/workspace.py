"""Per-process scratch space for spools and Parquet files, swept after crashes.

Each process works in ``<tmp_dir>/<pid>-<random>/``; at start, directories of
processes that no longer run (a ``kill -9`` mid-upload) are removed.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import uuid
from collections.abc import Iterator

from ferry_common.process import pid_alive

__all__ = ["Workspace"]


class Workspace:
    """Scratch directories of this process under ``root``."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.directory = root / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def open(self) -> None:
        """Create this process's directory and remove those of dead processes."""
        self.root.mkdir(parents=True, exist_ok=True)
        for entry in self.root.iterdir():
            pid, _, _ = entry.name.partition("-")
            if entry.is_dir() and pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)
        self.directory.mkdir()

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    @contextlib.contextmanager
    def job(self) -> Iterator[pathlib.Path]:
        """A fresh directory for one request, removed afterwards."""
        path = self.directory / uuid.uuid4().hex
        path.mkdir()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
