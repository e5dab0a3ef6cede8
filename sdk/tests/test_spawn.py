"""spawn_and_wait starts a real service and waits for SERVING; stopping reaps it; the
whole local stack (``ferry_sdk.stack``) stops in well under 15 s."""

from __future__ import annotations

import os
import pathlib
import signal
import time

import pytest

from ferry_sdk import SpawnError, free_port, spawn_and_wait, stack
from ferry_sdk.spawn import health_status

ENV = {"OTEL_TRACES_EXPORTER": "none", "FERRY_SHUTDOWN_GRACE_SECONDS": "5"}


def reaped(pid: int) -> bool:
    """Whether ``pid`` is gone from the process table (not even a zombie)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return not pathlib.Path(f"/proc/{pid}").exists()
    return False


def test_spawn_and_wait_serves_and_stop_drains_and_reaps(tmp_path: pathlib.Path) -> None:
    process = spawn_and_wait("registry", env={**ENV, "FERRY_STATE_DIR": str(tmp_path)}, log_path=tmp_path / "r.log")
    assert process.health() == "SERVING"
    assert process.address.startswith("127.0.0.1:")
    started = time.monotonic()
    assert process.stop() == 0  # SIGTERM: a clean drain
    assert time.monotonic() - started < 10
    assert reaped(process.pid)
    assert health_status(process.address, timeout=0.5) == "DOWN"
    assert '"event": "stopped"' in (tmp_path / "r.log").read_text()


def test_stop_kills_what_does_not_drain_in_time(tmp_path: pathlib.Path) -> None:
    process = spawn_and_wait("registry", env={**ENV, "FERRY_STATE_DIR": str(tmp_path)})
    assert process.stop(timeout=0) == -signal.SIGKILL
    assert reaped(process.pid)


def test_a_service_that_exits_early_fails_fast_with_its_log(tmp_path: pathlib.Path) -> None:
    env = {
        **ENV,
        "FERRY_STATE_DIR": str(tmp_path),
        "FERRY_REGISTRY_DATABASE_URL": "postgresql+psycopg://nobody:pw@127.0.0.1:1/none",
    }
    started = time.monotonic()
    with pytest.raises(SpawnError, match=r"ferry-registry exited with code 2 before serving") as raised:
        spawn_and_wait("registry", env=env, log_path=tmp_path / "r.log", timeout=60)
    assert time.monotonic() - started < 30
    assert "FERRY_REGISTRY_DATABASE_URL" in str(raised.value)  # the log tail says why


def test_free_port_is_free() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


@pytest.mark.slow
def test_the_stack_of_five_services_starts_and_stops_in_under_15_seconds(tmp_path: pathlib.Path) -> None:
    environ = {**os.environ, **ENV, "FERRY_STATE_DIR": str(tmp_path)}
    environ.update({f"FERRY_{name.upper()}_ADDRESS": f"127.0.0.1:{free_port()}" for name in stack.SERVICES})
    try:
        started = stack.start_all(stack.SERVICES, environ)
        assert [s.health for s in started] == ["SERVING"] * 5
        pids = [s.pid for s in started]
        assert all(pid is not None for pid in pids)
        assert [s.pid for s in stack.status(environ)] == pids

        stopping = time.monotonic()
        stopped = stack.stop_many(stack.SERVICES, environ)
        elapsed = time.monotonic() - stopping
    finally:
        stack.stop_many(stack.SERVICES, environ, timeout=5)
    assert stopped == dict.fromkeys(stack.SERVICES, True)
    assert elapsed < 15, f"stopping the stack took {elapsed:.1f}s"
    assert all(reaped(pid) for pid in pids if pid is not None)
    assert [s.health for s in stack.status(environ)] == ["DOWN"] * 5
    assert not list((tmp_path / "run").iterdir())
