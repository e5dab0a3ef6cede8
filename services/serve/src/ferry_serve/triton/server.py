"""The Triton that serve talks to: the embedded ``tritonserver`` process, or an external one.

:class:`EmbeddedTriton` runs the binary from the ``nvidia-pytriton`` wheel directly (not
PyTriton's ``Triton()`` wrapper, which hides the repository API and adds latency) in explicit
model-control mode on free loopback ports, and supervises it: when it dies it is restarted
with backoff on the same ports and ``on_restart`` is awaited, so the caller reloads its models
(explicit mode starts with nothing loaded). :class:`ExternalTriton` (``FERRY_SERVE_TRITON_URL``)
starts nothing; it waits for the server to be live and calls ``on_restart`` when it answers
again after being unreachable.

Both are used the same way::

    triton = EmbeddedTriton(state_dir, repository, log_path=state_dir / "logs/triton.log")
    triton.on_restart = reload_everything      # async () -> None
    await triton.start()
    control = TritonControl(triton.grpc_url)
    ...
    await triton.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO, Protocol

import tritonclient.grpc.aio as triton_grpc

from ferry_common.errors import Unavailable
from ferry_common.logs import get_logger
from ferry_common.process import free_port
from ferry_serve.triton.locate import TritonInstallation, locate_triton, prepare_backends, triton_environment
from ferry_serve.triton.repository import remove_staging

__all__ = ["EmbeddedTriton", "ExternalTriton", "OnRestart", "TritonServer", "TritonStartError"]

OnRestart = Callable[[], Awaitable[None]]

_log = get_logger(__name__)
_SHM = Path("/dev/shm")


class TritonStartError(Unavailable):
    """``tritonserver`` exited before it was ready, or was not ready in time."""


class TritonServer(Protocol):
    """What the gateway needs of a Triton, embedded or external."""

    on_restart: OnRestart | None

    @property
    def grpc_url(self) -> str:
        """``host:port`` of Triton's gRPC endpoint."""
        ...

    @property
    def restarts(self) -> int:
        """How many times it came back (and ``on_restart`` was called)."""
        ...

    async def start(self) -> None:
        """Returns once Triton is ready."""
        ...

    async def stop(self) -> None:
        """Stops supervising (and, when embedded, stops the process)."""
        ...


async def _server_ready(client: triton_grpc.InferenceServerClient, timeout: float) -> bool:
    try:
        return bool(await client.is_server_ready(client_timeout=timeout))
    except Exception:  # any failure to answer means "not ready yet"
        return False


async def _server_live(client: triton_grpc.InferenceServerClient, timeout: float) -> bool:
    try:
        return bool(await client.is_server_live(client_timeout=timeout))
    except Exception:
        return False


async def _call_on_restart(callback: OnRestart | None, what: str) -> None:
    if callback is None:
        return
    try:
        await callback()
    except Exception:
        # The supervisor must outlive a failing reload; the caller's own logs say more.
        _log.exception("triton on_restart callback failed", triton=what)


class EmbeddedTriton:
    """The bundled ``tritonserver`` as a supervised child process.

    Args:
        state_dir: where the backends directory is assembled (``<state_dir>/backends``).
        repository: the model repository (created if missing).
        log_path: Triton's stdout and stderr (appended); ``None`` discards them.
        on_restart: awaited after each automatic restart, once Triton is ready again.
        installation: the wheel's paths (default: :func:`locate_triton`).
        ready_timeout: seconds to wait for readiness at each start.
        stop_grace: seconds ``stop`` waits after SIGTERM before SIGKILL.
        restart_backoff: (first, longest) delay in seconds between restart attempts; the
            delay doubles while Triton keeps dying within a minute of starting.
        extra_args: more ``tritonserver`` arguments (``--log-verbose=1``...).
    """

    def __init__(
        self,
        state_dir: Path,
        repository: Path,
        *,
        log_path: Path | None = None,
        on_restart: OnRestart | None = None,
        installation: TritonInstallation | None = None,
        ready_timeout: float = 60.0,
        stop_grace: float = 15.0,
        restart_backoff: tuple[float, float] = (0.2, 30.0),
        extra_args: Sequence[str] = (),
    ) -> None:
        self.state_dir = state_dir
        self.repository = repository
        self.log_path = log_path
        self.on_restart = on_restart
        self._installation = installation
        self._ready_timeout = ready_timeout
        self._stop_grace = stop_grace
        self._backoff = restart_backoff
        self._extra_args = tuple(extra_args)
        # One prefix per instance: after a crash its stubs' shared-memory regions can be
        # found and deleted without touching another Triton's.
        self._shm_prefix = f"ferry_triton_{os.getpid()}_{uuid.uuid4().hex[:8]}_"
        self._ports: tuple[int, int, int] | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._started_at = 0.0
        self._log_offset = 0
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._restarts = 0

    @property
    def grpc_url(self) -> str:
        """``127.0.0.1:<port>`` of the gRPC endpoint; stable across restarts."""
        if self._ports is None:
            raise RuntimeError("EmbeddedTriton is not started")
        return f"127.0.0.1:{self._ports[1]}"

    @property
    def http_url(self) -> str:
        """``127.0.0.1:<port>`` of the HTTP endpoint."""
        if self._ports is None:
            raise RuntimeError("EmbeddedTriton is not started")
        return f"127.0.0.1:{self._ports[0]}"

    @property
    def metrics_url(self) -> str:
        """``http://127.0.0.1:<port>/metrics`` (Prometheus)."""
        if self._ports is None:
            raise RuntimeError("EmbeddedTriton is not started")
        return f"http://127.0.0.1:{self._ports[2]}/metrics"

    @property
    def pid(self) -> int | None:
        """The running ``tritonserver``'s process id."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    @property
    def restarts(self) -> int:
        return self._restarts

    async def start(self) -> None:
        """Starts ``tritonserver``, waits until it is ready, and begins supervising it.

        Raises:
            FailedPrecondition: the wheel is missing (see :func:`locate_triton`).
            TritonStartError: it exited early or was not ready within ``ready_timeout``
                (the message carries the end of its log).
        """
        if self._supervisor is not None:
            raise RuntimeError("EmbeddedTriton is already started")
        installation = self._installation
        if installation is None:
            installation = await asyncio.to_thread(locate_triton)
            self._installation = installation
        backends = await asyncio.to_thread(prepare_backends, installation, self.state_dir)
        self.repository.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(remove_staging, self.repository)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._ports = (free_port(), free_port(), free_port())
        self._stopping.clear()
        await self._launch(installation, backends)
        self._supervisor = asyncio.create_task(self._supervise(installation, backends), name="triton-supervisor")

    def _command(self, installation: TritonInstallation, backends: Path) -> list[str]:
        assert self._ports is not None
        http, grpc, metrics = self._ports
        return [
            str(installation.binary),
            f"--model-repository={self.repository}",
            "--model-control-mode=explicit",
            f"--backend-directory={backends}",
            f"--cache-directory={installation.caches}",
            "--http-address=127.0.0.1",
            f"--http-port={http}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={grpc}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={metrics}",
            "--allow-gpu-metrics=false",
            # Strict readiness turns ServerReady false for good once any model failed to load
            # (even after unloading it); Ferry tracks each model's readiness itself.
            "--strict-readiness=false",
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            *self._extra_args,
        ]

    async def _launch(self, installation: TritonInstallation, backends: Path) -> None:
        """Spawns one ``tritonserver`` and waits for readiness; on failure nothing is left running."""
        log: IO[bytes] | None = None
        try:
            if self.log_path is not None:
                log = self.log_path.open("ab")
                self._log_offset = log.tell()
            started = time.monotonic()
            # Its own process group: the python-backend stubs it forks share it, so one
            # killpg reaches them all even when tritonserver itself died first.
            process = await asyncio.create_subprocess_exec(
                *self._command(installation, backends),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log if log is not None else asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.STDOUT,
                env=triton_environment(installation),
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
            )
        finally:
            if log is not None:
                log.close()
        self._process = process
        self._started_at = started
        try:
            await self._wait_ready(process)
        except BaseException:
            await self._kill_group(process)
            raise
        _log.info("triton ready", pid=process.pid, grpc=self.grpc_url, seconds=round(time.monotonic() - started, 3))

    async def _wait_ready(self, process: asyncio.subprocess.Process) -> None:
        deadline = time.monotonic() + self._ready_timeout
        client = triton_grpc.InferenceServerClient(self.grpc_url)
        try:
            while True:
                if process.returncode is not None:
                    raise TritonStartError(
                        f"tritonserver exited with code {process.returncode} before it was ready{self._log_hint()}"
                    )
                if await _server_ready(client, 0.5):
                    return
                if time.monotonic() > deadline:
                    raise TritonStartError(
                        f"tritonserver was not ready on {self.grpc_url} within {self._ready_timeout:g}s"
                        f"{self._log_hint()}"
                    )
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(process.wait(), 0.02)
        finally:
            await client.close()

    def _log_hint(self) -> str:
        """The end of what this launch logged, without the usage text Triton prints after a bad option."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            text = log.read().decode(errors="replace")
        text = text.split("\nUsage: tritonserver", 1)[0]
        lines = [line for line in text.splitlines() if line.strip()][-8:]
        return f"; last lines of {self.log_path}:\n" + "\n".join(lines)

    async def _kill_group(self, process: asyncio.subprocess.Process) -> None:
        """SIGKILLs tritonserver and every stub of its group, reaps it, deletes its shm regions."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        # Stubs whose parent died may still hold the group: the group id outlives its leader.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        self._remove_shm()

    def _remove_shm(self) -> None:
        if not _SHM.is_dir():
            return
        for region in _SHM.glob(f"{self._shm_prefix}*"):
            with contextlib.suppress(OSError):
                region.unlink()

    async def _supervise(self, installation: TritonInstallation, backends: Path) -> None:
        delay = self._backoff[0]
        while not self._stopping.is_set():
            process = self._process
            assert process is not None
            await process.wait()
            if self._stopping.is_set():
                return
            uptime = time.monotonic() - self._started_at
            _log.warning(
                "triton exited unexpectedly", pid=process.pid, code=process.returncode, uptime=round(uptime, 1)
            )
            await self._kill_group(process)  # its orphaned stubs, and their shm
            if uptime > 60.0:
                delay = self._backoff[0]
            while True:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if self._stopping.is_set():
                    return
                try:
                    await self._launch(installation, backends)
                    break
                except TritonStartError as error:
                    _log.warning("triton restart failed", error=error.message, retry_in=delay)
                    delay = min(delay * 2, self._backoff[1])
            delay = min(delay * 2, self._backoff[1])
            self._restarts += 1
            await _call_on_restart(self.on_restart, self.grpc_url)

    async def stop(self) -> None:
        """SIGTERM, wait up to ``stop_grace`` s for a clean exit, then SIGKILL; reaps everything.

        No ``tritonserver`` or stub process is left afterwards. Safe to call twice.
        """
        self._stopping.set()
        supervisor, self._supervisor = self._supervisor, None
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self._stop_grace)
            except TimeoutError:
                _log.warning("triton did not stop in time; killing it", pid=process.pid, grace=self._stop_grace)
        if process is not None:
            await self._kill_group(process)
        if supervisor is not None:
            # It returns by itself once the process is gone and _stopping is set; a
            # restart it was in the middle of has been killed with the group above.
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
            if self._process is not None and self._process is not process:
                await self._kill_group(self._process)

    async def __aenter__(self) -> EmbeddedTriton:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class ExternalTriton:
    """A Triton run by someone else (``FERRY_SERVE_TRITON_URL``): watched, not managed.

    Liveness, not readiness, is watched: a Triton with strict readiness (its default) stays
    not-ready for good once any model failed to load.

    Args:
        url: ``host:port`` of its gRPC endpoint.
        on_restart: awaited when it answers again after having been unreachable (a restarted
            Triton in explicit mode has lost the models loaded into it).
        ready_timeout: seconds :meth:`start` waits for it to be live.
        poll_interval: seconds between liveness checks. A restart that completes entirely
            between two checks is not noticed.
    """

    def __init__(
        self,
        url: str,
        *,
        on_restart: OnRestart | None = None,
        ready_timeout: float = 60.0,
        poll_interval: float = 1.0,
    ) -> None:
        self._url = url
        self.on_restart = on_restart
        self._ready_timeout = ready_timeout
        self._poll_interval = poll_interval
        self._client: triton_grpc.InferenceServerClient | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._restarts = 0

    @property
    def grpc_url(self) -> str:
        return self._url

    @property
    def restarts(self) -> int:
        return self._restarts

    async def start(self) -> None:
        """Waits until the server is live, then watches it.

        Raises:
            Unavailable: not live within ``ready_timeout``.
        """
        if self._monitor is not None:
            raise RuntimeError("ExternalTriton is already started")
        client = triton_grpc.InferenceServerClient(self._url)
        deadline = time.monotonic() + self._ready_timeout
        while not await _server_live(client, 1.0):
            if time.monotonic() > deadline:
                await client.close()
                raise Unavailable(f"Triton at {self._url} is not live after {self._ready_timeout:g}s")
            await asyncio.sleep(min(0.2, self._poll_interval))
        self._client = client
        self._monitor = asyncio.create_task(self._watch(client), name="triton-watch")

    async def _watch(self, client: triton_grpc.InferenceServerClient) -> None:
        reachable = True
        while True:
            await asyncio.sleep(self._poll_interval)
            live = await _server_live(client, max(0.5, self._poll_interval))
            if live and not reachable:
                _log.warning("triton is back after being unreachable", url=self._url)
                self._restarts += 1
                await _call_on_restart(self.on_restart, self._url)
            elif not live and reachable:
                _log.warning("triton is unreachable", url=self._url)
            reachable = live

    async def stop(self) -> None:
        """Stops watching (the server itself keeps running). Safe to call twice."""
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> ExternalTriton:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` making the child get SIGKILL when serve's process goes away.

    Serve stops Triton itself on every orderly exit; this covers the others (``kill -9``,
    an OOM kill, a crash), which used to leave ``tritonserver`` running with the port,
    GPU memory and shared-memory regions of a serve that no longer exists. The kernel
    sends the signal when the forking thread ends: serve forks from its event loop's
    thread, which lives as long as the process. Triton's python-backend stubs watch their
    parent and exit with it.
    """
    # libc is loaded here, in serve: after fork only the call itself runs (dlopen in the
    # child of a threaded process could wait on a lock another thread held at fork).
    libc_name = ctypes.util.find_library("c")
    prctl = ctypes.CDLL(libc_name, use_errno=True).prctl if libc_name is not None else None

    def set_death_signal() -> None:
        if prctl is None:
            return  # no libc prctl: serve's own stop is all there is
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # serve died between fork and prctl
            os._exit(1)

    return set_death_signal
