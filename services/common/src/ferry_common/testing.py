"""Pytest helpers: run a real service in-process on port 0 with the real interceptors.

The server runs on its own event loop in a background thread, so tests use the
ordinary synchronous generated stubs, exactly as a user's client would.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import pathlib
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import grpc

from ferry_common.server import Build, RunningServer, start_server
from ferry_common.settings import Settings, load_settings

__all__ = ["ServiceThread", "eventually", "test_settings"]


def test_settings(service: str, state_dir: pathlib.Path, env: Mapping[str, str] | None = None) -> Settings:
    """Settings for a test: state under ``state_dir``, no trace export unless asked."""
    base = {"FERRY_STATE_DIR": str(state_dir), "OTEL_TRACES_EXPORTER": "none"}
    return load_settings(service, {**base, **(env or {})})


test_settings.__test__ = False  # type: ignore[attr-defined]  # not a test, despite the name


class ServiceThread:
    """A service served from a background thread; use as a context manager."""

    def __init__(self, settings: Settings, build: Build, address: str = "127.0.0.1:0") -> None:
        self.settings = settings
        self._build = build
        self._address = address
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"ferry-{settings.service}", daemon=True)
        self._running: RunningServer | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        assert self._port is not None, "service not started"
        return self._port

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def start(self) -> ServiceThread:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            start_server(self.settings, self._build, address=self._address), self._loop
        )
        self._running = future.result(timeout=60)
        self._port = self._running.port
        return self

    def stop(self, grace: float = 5.0) -> None:
        if self._running is not None:
            asyncio.run_coroutine_threadsafe(self._running.stop(grace), self._loop).result(timeout=grace + 30)
            self._running = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def begin_stop(self, grace: float) -> concurrent.futures.Future[None]:
        """Begin a drain without waiting for it (to test graceful shutdown)."""
        assert self._running is not None
        running, self._running = self._running, None
        return asyncio.run_coroutine_threadsafe(running.stop(grace), self._loop)

    def channel(self, credentials: grpc.ChannelCredentials | None = None, **options: str) -> grpc.Channel:
        opts = list(options.items())
        if credentials is None:
            return grpc.insecure_channel(self.target, options=opts)
        return grpc.secure_channel(self.target, credentials, options=opts)

    def __enter__(self) -> ServiceThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def eventually(
    check: Callable[[], Any],
    what: str,
    timeout: float = 60,
    *,
    interval: float = 0.1,
    retry_on: tuple[type[BaseException], ...] = (),
) -> Any:
    """Call ``check`` until it returns something truthy (returned), for up to ``timeout`` seconds.

    ``retry_on``: exceptions that count as "not yet" (a service still restarting); any
    other propagates. Raises AssertionError naming ``what`` and the last answer.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except retry_on as error:
            last = error
        time.sleep(interval)
    raise AssertionError(f"{what}: last answer {last!r}")
