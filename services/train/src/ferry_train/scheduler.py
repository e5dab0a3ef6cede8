"""Runs queued jobs on this machine, each in its own worker process.

Up to ``max_concurrent`` jobs run at once, oldest first. For each claimed job the
scheduler starts ``python -m ferry_train.worker --job trainingJobs/<id>`` in its own
process group (DDP ranks included), its output going to a log file under the state
directory, and reaps it: the worker records success or its error itself; a worker that
exits otherwise ends the job FAILED with its last log lines, and one killed by a signal
(OOM killer, ``kill -9``) is queued again to resume from its last checkpoint, up to
``max_attempts`` starts. Cancelling a running job sends SIGTERM to the worker's group,
then SIGKILL after the grace period.

One scheduler per database: at start it re-queues the jobs a dead service left RUNNING,
after killing the workers that service left behind (each runs in its own session, so it
outlives a service killed with ``kill -9``; its pid is kept next to its log).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ferry_common.database import DatabaseRunner
from ferry_common.errors import FailedPrecondition
from ferry_common.logs import get_logger
from ferry_common.process import pid_alive
from ferry_common.settings import Settings
from ferry_train.config import TrainConfig
from ferry_train.store.base import CANCELLED, CANCELLING, FAILED, QUEUED, RUNNING, Job, TrainStore

__all__ = ["WORKER_LOG_VARIABLE", "Scheduler", "worker_command", "worker_environment"]

_log = get_logger("ferry.train.scheduler")
_TAIL_LINES = 20
_PID_FILE = "worker.pid"
_ORPHAN_WAIT_SECONDS = 10.0
# Tells a worker where its output goes, so that a failure it records carries its last lines.
WORKER_LOG_VARIABLE = "FERRY_TRAIN_WORKER_LOG"


def worker_command(job_id: str) -> list[str]:
    """The command that runs one job (the same one a PyTorchJob pod runs)."""
    return [sys.executable, "-m", "ferry_train.worker", "--job", f"trainingJobs/{job_id}"]


def worker_environment(settings: Settings, config: TrainConfig, base: Mapping[str, str]) -> dict[str, str]:
    """The service's environment, plus what makes the worker see the same state as the service."""
    env = dict(base)
    env.update(settings.extra)
    env["FERRY_STATE_DIR"] = str(settings.state_dir)
    env["FERRY_TRAIN_DATABASE_URL"] = config.database_url
    env["FERRY_OBJECT_STORE_URL"] = settings.object_store_url
    for name, address in settings.addresses.items():
        env[f"FERRY_{name.upper()}_ADDRESS"] = address
    return env


@dataclass
class _Worker:
    job_id: str
    attempt: int
    process: subprocess.Popen[bytes]
    log_path: pathlib.Path
    terminated_at: float | None = None

    def tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-_TAIL_LINES:])

    def signal(self, number: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, number)


class Scheduler:
    """Claims queued jobs and supervises their worker processes (event loop only).

    Args:
        store: the jobs database.
        runner: runs blocking store calls off the event loop.
        max_concurrent: workers at once; 0 runs nothing on this machine.
        log_dir: where each attempt's output goes (``<job>/attempt-<n>.log``).
        environment: the workers' environment (:func:`worker_environment`).
        poll_seconds: how often the queue and the workers are looked at.
        cancel_grace_seconds: SIGTERM to SIGKILL delay.
        max_attempts: starts after which a worker killed by a signal fails the job.
        command: the worker command of a job (:func:`worker_command`).
    """

    def __init__(
        self,
        store: TrainStore,
        runner: DatabaseRunner,
        *,
        max_concurrent: int,
        log_dir: pathlib.Path,
        environment: Mapping[str, str],
        poll_seconds: float = 0.5,
        cancel_grace_seconds: float = 5.0,
        max_attempts: int = 3,
        command: Callable[[str], list[str]] = worker_command,
    ) -> None:
        self._command = command
        self._store = store
        self._runner = runner
        self._max = max_concurrent
        self._log_dir = log_dir
        self._env = dict(environment)
        self._poll = poll_seconds
        self._grace = cancel_grace_seconds
        self._max_attempts = max_attempts
        self._workers: dict[str, _Worker] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Look at the queue now (a job was queued or asked to stop)."""
        self._wake.set()

    async def start(self) -> None:
        """Re-queue what a dead service left running, then start supervising (``max_concurrent`` 0: nothing)."""
        if self._max == 0:
            return
        for job in await self._runner.read(self._store.active):
            await self._recover(job)
        self._task = asyncio.create_task(self._loop(), name="ferry-train-scheduler")

    async def stop(self) -> None:
        """Stop supervising; running workers are stopped and their jobs queued again to resume later."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for worker in list(self._workers.values()):
            worker.signal(signal.SIGTERM)
        deadline = time.monotonic() + self._grace
        for worker in list(self._workers.values()):
            try:
                await asyncio.to_thread(worker.process.wait, max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.signal(signal.SIGKILL)
                await asyncio.to_thread(worker.process.wait)
            await self._settle(worker, requeue_message="train service stopped; resuming from the last checkpoint")
        self._workers.clear()

    async def _recover(self, job: Job) -> None:
        with contextlib.suppress(FailedPrecondition):
            if job.state == RUNNING:
                # Else the old worker would train on next to the new one and report its epochs.
                await asyncio.to_thread(self._kill_orphan, job.job_id)
                await self._runner.write(
                    self._store.set_state,
                    job.job_id,
                    QUEUED,
                    message="the train service restarted; resuming from the last checkpoint",
                    expected=frozenset({RUNNING}),
                )
            elif job.state == CANCELLING:
                await self._runner.write(
                    self._store.set_state, job.job_id, CANCELLED, message="cancelled", expected=frozenset({CANCELLING})
                )

    async def _loop(self) -> None:
        while True:
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A database outage must not end supervision: try again next tick.
                _log.exception("scheduler tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()

    async def _tick(self) -> None:
        for worker in list(self._workers.values()):
            if worker.process.poll() is not None:
                del self._workers[worker.job_id]
                await self._settle(worker)
        for job in await self._runner.read(self._store.active):
            worker_ = self._workers.get(job.job_id)
            if job.state == CANCELLING and worker_ is not None:
                now = time.monotonic()
                if worker_.terminated_at is None:
                    worker_.terminated_at = now
                    worker_.signal(signal.SIGTERM)
                elif now - worker_.terminated_at > self._grace:
                    worker_.signal(signal.SIGKILL)
        free = self._max - len(self._workers)
        if free <= 0:
            return
        for job in await self._runner.read(self._store.next_queued, free):
            claimed = await self._runner.write(self._store.claim, job.job_id)
            if claimed is not None:
                self._workers[claimed.job_id] = await asyncio.to_thread(self._spawn, claimed)

    def _spawn(self, job: Job) -> _Worker:
        log_path = self._log_dir / job.job_id / f"attempt-{job.attempt}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                self._command(job.job_id),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self._env, WORKER_LOG_VARIABLE: str(log_path)},
                start_new_session=True,
            )
        (log_path.parent / _PID_FILE).write_text(str(process.pid))
        _log.info("worker started", job=job.job_id, attempt=job.attempt, pid=process.pid, log=str(log_path))
        return _Worker(job.job_id, job.attempt, process, log_path)

    def _kill_orphan(self, job_id: str) -> None:
        """SIGKILL the process group of a worker a dead service left running for ``job_id``."""
        pid_file = self._log_dir / job_id / _PID_FILE
        try:
            pid = int(pid_file.read_text())
            # The pid may have been reused since (a reboot): kill only this job's worker.
            command = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if b"ferry_train.worker" not in command or f"trainingJobs/{job_id}".encode() not in command:
            return
        _log.warning("killing the worker a dead service left running", job=job_id, pid=pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + _ORPHAN_WAIT_SECONDS
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    async def _settle(self, worker: _Worker, requeue_message: str | None = None) -> None:
        """Record how a reaped worker ended, unless it recorded that itself."""
        code = worker.process.returncode
        job = await self._runner.read(self._store.get, worker.job_id)
        _log.info("worker exited", job=worker.job_id, code=code, state=job.state)
        with contextlib.suppress(FailedPrecondition):
            if job.state == CANCELLING:
                await self._runner.write(
                    self._store.set_state, job.job_id, CANCELLED, message="cancelled", expected=frozenset({CANCELLING})
                )
            elif job.state != RUNNING:
                return
            elif requeue_message is not None or (code is not None and code < 0 and job.attempt < self._max_attempts):
                message = (
                    requeue_message or f"worker killed by signal {-(code or 0)}; resuming from the last checkpoint"
                )
                await self._runner.write(
                    self._store.set_state, job.job_id, QUEUED, message=message, expected=frozenset({RUNNING})
                )
            else:
                error = f"worker exited with code {code} without a result\n{worker.tail()}".strip()
                await self._runner.write(
                    self._store.set_state,
                    job.job_id,
                    FAILED,
                    message=f"worker exited with code {code}",
                    error=error,
                    expected=frozenset({RUNNING}),
                )
