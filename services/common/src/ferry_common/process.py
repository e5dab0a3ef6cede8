"""Start a Ferry service as a child process, wait until it serves, stop it cleanly.

One implementation for everything that runs real service processes: ``ferry up``,
the demo, benchmarks and end-to-end tests.

    with spawn_and_wait("registry", env={"FERRY_STATE_DIR": "/tmp/state"}) as registry:
        client = RegistryClient(registry.address)
        ...
    # left the block: SIGTERM (graceful drain), waited for and reaped

A stopped child is always *reaped* (``Popen.wait``): an unreaped child stays a zombie,
and a zombie still answers ``kill(pid, 0)``, which made pollers wait for processes
that had long exited.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ferry_common.client import channel_credentials
from ferry_common.settings import SettingsError, load_settings

__all__ = [
    "ServiceProcess",
    "SpawnError",
    "closed_address",
    "dial_address",
    "executable",
    "free_port",
    "health_status",
    "pid_alive",
    "spawn",
    "spawn_and_wait",
    "stop_all",
    "wait_port",
]

DOWN = "DOWN"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not: it exited and only waits to be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(pid, 0)
    return stat.rpartition(")")[2].split()[0] != "Z"


class SpawnError(RuntimeError):
    """A service process exited early or did not report SERVING in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# Sockets held by closed_address() for the life of this process.
_CLOSED: list[socket.socket] = []


def closed_address(host: str = "127.0.0.1") -> str:
    """``host:port`` where connections are refused for the life of this process.

    ``free_port`` is only free *now*: under pytest-xdist another worker's server can take the port
    a moment later, and a test that meant "nothing listens there" then talks to a stranger (CI saw
    train answered UNIMPLEMENTED by some other service). This socket is bound and never listens, so
    connecting is refused, and it stays bound without SO_REUSEPORT, so no gRPC server (which binds
    with SO_REUSEPORT) can take the port either.
    """
    sock = socket.socket()
    sock.bind((host, 0))
    _CLOSED.append(sock)
    return f"{host}:{sock.getsockname()[1]}"


def wait_port(
    port: int, *, host: str = "127.0.0.1", process: subprocess.Popen[bytes] | None = None, timeout: float = 30.0
) -> None:
    """Block until something accepts TCP connections on ``host:port`` (a helper server such as moto).

    Raises:
        SpawnError: ``process`` exited first, or ``timeout`` passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise SpawnError(f"{process.args!r} exited with code {process.returncode} before listening on {port}")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SpawnError(f"nothing listens on {host}:{port} after {timeout:g}s") from None
            time.sleep(0.05)


def executable(service: str) -> pathlib.Path:
    """The ``ferry-<service>`` console script installed beside the running interpreter."""
    return pathlib.Path(sys.executable).parent / f"ferry-{service}"


def dial_address(address: str) -> str:
    """Where a client reaches ``address``: a wildcard listen address is dialled on loopback."""
    host, _, port = address.rpartition(":")
    return f"127.0.0.1:{port}" if host in {"0.0.0.0", "[::]", ""} else address


def _health_channel(address: str, environ: Mapping[str, str] | None) -> grpc.Channel:
    credentials: grpc.ChannelCredentials | None = None
    if environ is not None and environ.get("FERRY_TLS_CA_FILE"):
        with contextlib.suppress(SettingsError, OSError):
            credentials = channel_credentials(load_settings("registry", environ))
    target = dial_address(address)
    if credentials is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, credentials)


def health_status(
    address: str, timeout: float = 1.0, *, service: str = "", environ: Mapping[str, str] | None = None
) -> str:
    """``SERVING``, ``NOT_SERVING``, ``SERVICE_UNKNOWN``, or ``DOWN`` when nothing answers.

    Args:
        address: ``host:port`` of the server.
        timeout: deadline of the check.
        service: a full gRPC service name, or empty for the whole server.
        environ: variables whose ``FERRY_TLS_CA_FILE`` (if any) verifies a TLS server.
    """
    with _health_channel(address, environ) as channel:
        return _check(health_pb2_grpc.HealthStub(channel), timeout, service)


def _check(stub: health_pb2_grpc.HealthStub, timeout: float, service: str = "") -> str:
    try:
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout, wait_for_ready=True)
    except grpc.RpcError:
        return DOWN
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


class ServiceProcess:
    """A ``ferry-<service>`` child process; a context manager that stops it on exit.

    Attributes:
        service: ``registry``, ``ingest``...
        address: the address it listens on (``FERRY_<SERVICE>_ADDRESS``).
        process: the child.
        log_path: where its stdout and stderr go (``None``: discarded).
    """

    def __init__(
        self,
        service: str,
        address: str,
        process: subprocess.Popen[bytes],
        log_path: pathlib.Path | None,
        environ: Mapping[str, str],
    ) -> None:
        self.service = service
        self.address = address
        self.process = process
        self.log_path = log_path
        self._environ = environ

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once it exited (and was reaped), else ``None``."""
        return self.process.poll()

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of its log (empty when it has none)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def health(self, timeout: float = 1.0, *, service: str = "") -> str:
        """Its health status (see :func:`health_status`)."""
        return health_status(self.address, timeout, service=service, environ=self._environ)

    def wait_serving(self, timeout: float = 60.0) -> ServiceProcess:
        """Block until the health service reports SERVING.

        Raises:
            SpawnError: it exited first (its log tail is in the message), or
                ``timeout`` passed; a process that never served is stopped.
        """
        deadline = time.monotonic() + timeout
        with _health_channel(self.address, self._environ) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if self.process.poll() is not None:
                    raise SpawnError(
                        f"ferry-{self.service} exited with code {self.process.returncode} before serving"
                        + (f"; last log lines:\n{self.log_tail(8)}" if self.log_path else "")
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                # wait_for_ready: the check returns as soon as the port accepts.
                if _check(stub, min(0.5, left)) == "SERVING":
                    return self
                if not self.running():
                    continue
                time.sleep(0.05)
        self.stop()
        where = f" (log: {self.log_path})" if self.log_path else ""
        raise SpawnError(f"ferry-{self.service} did not report SERVING on {self.address} within {timeout:g}s{where}")

    def terminate(self) -> None:
        """Send SIGTERM (a graceful drain) without waiting."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def kill(self) -> int:
        """SIGKILL it (and its process group when it leads one) and reap it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(self.process.pid) == self.process.pid:
                    os.killpg(self.process.pid, signal.SIGKILL)
                else:
                    self.process.kill()
        return self.process.wait()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait up to ``timeout`` for the drain, then SIGKILL; always reaped.

        Returns:
            The exit code (negative: the signal that ended it).
        """
        self.terminate()
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ServiceProcess(ferry-{self.service}, pid={self.pid}, address={self.address!r})"


def spawn(
    service: str,
    *,
    env: Mapping[str, str] | None = None,
    address: str | None = None,
    log_path: pathlib.Path | str | None = None,
    cwd: pathlib.Path | str | None = None,
    inherit_environment: bool = True,
    new_session: bool = False,
) -> ServiceProcess:
    """Start ``ferry-<service>`` without waiting for it (see :func:`spawn_and_wait`)."""
    environ: dict[str, str] = {**(os.environ if inherit_environment else {}), **(env or {})}
    key = f"FERRY_{service.upper()}_ADDRESS"
    if address is not None:
        environ[key] = address
    elif not environ.get(key):
        environ[key] = f"127.0.0.1:{free_port()}"
    log = pathlib.Path(log_path) if log_path is not None else None
    with contextlib.ExitStack() as files:
        output: int | object = subprocess.DEVNULL
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            output = files.enter_context(log.open("ab"))
        process = subprocess.Popen(
            [str(executable(service))],
            env=environ,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,  # type: ignore[arg-type]
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
    return ServiceProcess(service, environ[key], process, log, environ)


def spawn_and_wait(
    service: str,
    *,
    env: Mapping[str, str] | None = None,
    address: str | None = None,
    log_path: pathlib.Path | str | None = None,
    cwd: pathlib.Path | str | None = None,
    timeout: float = 60.0,
    inherit_environment: bool = True,
    new_session: bool = False,
) -> ServiceProcess:
    """Start ``ferry-<service>`` (the console script beside ``sys.executable``) and wait for SERVING.

    Args:
        service: ``registry``, ``ingest``, ``train``, ``serve`` or ``monitor``.
        env: variables for the child, over the current environment.
        address: where it listens; default ``FERRY_<SERVICE>_ADDRESS`` from ``env``,
            else a free loopback port.
        log_path: a file that receives its stdout and stderr (appended); ``None`` discards them.
        cwd: its working directory.
        timeout: seconds to wait for SERVING.
        inherit_environment: start from ``os.environ`` (``False``: ``env`` only).
        new_session: detach it from this terminal's signals (``ferry up``).

    Returns:
        The running process; stop it with :meth:`ServiceProcess.stop` or a ``with`` block.

    Raises:
        SpawnError: it exited before serving, or did not serve within ``timeout``.
    """
    process = spawn(
        service,
        env=env,
        address=address,
        log_path=log_path,
        cwd=cwd,
        inherit_environment=inherit_environment,
        new_session=new_session,
    )
    return process.wait_serving(timeout)


def stop_all(processes: Iterable[ServiceProcess], timeout: float = 30.0) -> dict[str, int]:
    """Stop several services at once: SIGTERM to all, then wait (one shared deadline), SIGKILL the rest.

    Returns:
        Each service's exit code.
    """
    chosen = list(processes)
    for process in chosen:
        process.terminate()
    deadline = time.monotonic() + timeout
    codes: dict[str, int] = {}
    for process in chosen:
        try:
            codes[process.service] = process.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            codes[process.service] = process.kill()
    return codes
