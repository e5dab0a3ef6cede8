"""The server under test, the example budget, and the test bodies every fuzzed service runs."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from ferry_common.fuzzing._calls import (
    Call,
    Outcome,
    ServerDown,
    VisibleState,
    calls,
    swept_calls,
)
from ferry_common.fuzzing._messages import (
    bad_page_tokens,
    simplest,
)
from ferry_common.process import ServiceProcess, SpawnError, spawn_and_wait

# ---------------------------------------------------------------------------- server


class ServerProcess:
    """A service run as its ``ferry-<service>`` process (:mod:`ferry_common.process`) on a free port.

    Out of the test's process, so that a crash (a segfault in a native library) is a
    failed check rather than the end of the test run, and restartable: its state stays
    on disk. Its JSON log goes to ``log``, where :meth:`errors_since` finds the
    exception behind an INTERNAL status.
    """

    def __init__(self, module: str, service: str, env: Mapping[str, str], log: pathlib.Path) -> None:
        self._module = module
        self._service = service
        self._env = dict(env)
        self._log = log
        self._process: ServiceProcess | None = None
        self.target = ""

    def start(self, timeout: float = 120.0) -> None:
        env = {**self._env, "FERRY_LOG_FORMAT": "json", "OTEL_TRACES_EXPORTER": "none"}
        try:
            self._process = spawn_and_wait(self._service, env=env, log_path=self._log, timeout=timeout)
        except SpawnError as error:
            raise RuntimeError(f"{self._module}: {error}; see {self._log}") from None
        self.target = self._process.address

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()  # the SIGTERM drain; reaped

    def restart(self) -> None:
        self.stop()
        self.start()

    def exit_status(self) -> str:
        """How the process ended (``killed by SIGSEGV``), or ``running``."""
        code = None if self._process is None else self._process.returncode
        if code is None:
            return "running"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with {code}"

    def log_mark(self) -> int:
        return self._log.stat().st_size if self._log.exists() else 0

    def errors_since(self, mark: int) -> list[str]:
        """The last line of each exception logged since ``mark`` (``OverflowError: ...``)."""
        with self._log.open("rb") as log:
            log.seek(mark)
            lines = log.read().decode(errors="replace").splitlines()
        found = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            exception = entry.get("exception") if isinstance(entry, dict) else None
            if isinstance(exception, str) and exception.strip():
                found.append(exception.strip().splitlines()[-1])
        return found


# ---------------------------------------------------------------------------- budget

_FUZZ_MARK = re.compile(r"(?<!not )\bfuzz\b")


def big_budget_requested(markexpr: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the big-budget (``@pytest.mark.fuzz``) tests should run: ``-m fuzz`` or ``FERRY_FUZZ=1``."""
    env = os.environ if environ is None else environ
    return env.get("FERRY_FUZZ", "") in ("1", "true", "yes") or bool(_FUZZ_MARK.search(markexpr or ""))


def fuzz_settings(*, big: bool, environ: Mapping[str, str] | None = None) -> settings:
    """Hypothesis settings: ``FERRY_FUZZ_EXAMPLES`` examples per test (30 by default,
    1000 for the big budget); the normal budget is derandomized and keeps no database."""
    env = os.environ if environ is None else environ
    budget = int(env.get("FERRY_FUZZ_EXAMPLES") or (1000 if big else 30))
    checks = [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
    ]
    # No explain phase: it replays each failure many times against a real server, and
    # its source inspection trips over the deep recursion some requests cause.
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
    if big:
        return settings(
            max_examples=budget, deadline=None, suppress_health_check=checks, phases=phases, print_blob=True
        )
    return settings(
        max_examples=budget, deadline=None, derandomize=True, database=None, suppress_health_check=checks, phases=phases
    )


# ----------------------------------------------------------------------- test bodies


class Checker(Protocol):
    """What a fuzzed service offers the shared tests: a check of one call."""

    def check(self, call: Call) -> None: ...


def assert_all_clean(checker: Checker, calls: Iterable[tuple[str, Call]]) -> None:
    """Check every labelled call and report all bad answers at once."""
    failures = []
    for label, call in calls:
        try:
            checker.check(call)
        except AssertionError as error:
            failures.append(f"{label}: {type(error).__name__}: {str(error)[:400]}")
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures)


def rpc_tests(
    calls: Mapping[str, SearchStrategy[Call]],
    methods: Iterable[str],
    extra: Mapping[str, Mapping[str, Sequence[tuple[str, Any]]]] | None = None,
) -> dict[str, Callable[..., None]]:
    """The tests every fuzzed service runs, for a module's namespace (``globals().update(...)``).

    They take the module's ``fuzzed`` fixture (a :class:`Checker` around the running server).
    """
    import pytest  # a test helper: pytest is there when these run

    names = sorted(calls)
    rpc = pytest.mark.parametrize("rpc", names)

    def test_every_rpc_has_a_strategy() -> None:
        assert set(calls) == set(methods)

    @rpc
    def test_every_field_with_classic_bad_values(fuzzed: Checker, rpc: str) -> None:
        """A sane request with each field in turn set to what breaks servers most often
        (trailing newline, 80 KB, ``٣`` or 10**30 for a number, integer limits, unknown enum)."""
        assert_all_clean(fuzzed, swept_calls(simplest(calls[rpc]), (extra or {}).get(rpc)))

    @rpc
    @fuzz_settings(big=False)
    @given(data=st.data())
    def test_malformed_requests_get_a_clean_status(fuzzed: Checker, rpc: str, data: st.DataObject) -> None:
        fuzzed.check(data.draw(calls[rpc], label=rpc))

    @pytest.mark.fuzz
    @rpc
    @fuzz_settings(big=True)
    @given(data=st.data())
    def test_malformed_requests_get_a_clean_status_big_budget(fuzzed: Checker, rpc: str, data: st.DataObject) -> None:
        fuzzed.check(data.draw(calls[rpc], label=rpc))

    @pytest.fixture(autouse=True)
    def _big_budget_only_when_asked(request: pytest.FixtureRequest) -> None:
        if request.node.get_closest_marker("fuzz") and not big_budget_requested(request.config.option.markexpr):
            pytest.skip("big fuzz budget: run with -m fuzz or FERRY_FUZZ=1")

    tests: list[Callable[..., None]] = [
        test_every_rpc_has_a_strategy,
        test_every_field_with_classic_bad_values,
        test_malformed_requests_get_a_clean_status,
        test_malformed_requests_get_a_clean_status_big_budget,
        _big_budget_only_when_asked,
    ]
    return {test.__name__: test for test in tests}


class FuzzedService:
    """A running service seeded for fuzzing: its channel, stub and liveness check.

    Subclasses give the stub class, ``probe`` (a cheap read that must succeed while the
    server lives), ``seed`` and the property (``check``).
    """

    stub_class: Any = None

    def __init__(self, server: ServerProcess, objects: pathlib.Path, read: Callable[[str], Any]) -> None:
        self.server = server
        self.objects = objects
        self.dirty = True
        self.visible = VisibleState(read)
        self.connect()

    def connect(self) -> None:
        self.channel = grpc.insecure_channel(self.server.target)
        self.stub = self.stub_class(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def probe(self) -> None:
        """A read that works whenever the server does (raises ``grpc.RpcError`` otherwise)."""
        raise NotImplementedError

    def seed(self) -> None:
        raise NotImplementedError

    def listing(self, method: str, request: Any, items: str) -> tuple[Any, ...]:
        """Every page of a List call, serialized (or the status when it fails)."""
        found: list[Any] = []
        while True:
            try:
                response = getattr(self.stub, method)(request, timeout=30)
            except grpc.RpcError as error:
                return (*found, error.code().name)
            found.extend(item.SerializeToString(deterministic=True) for item in getattr(response, items))
            if not response.next_page_token:
                return tuple(found)
            request.page_token = response.next_page_token

    def check_alive(self, after: Outcome) -> None:
        """Health check and a probe; when they fail, restart the server (its state is on disk)."""
        try:
            health = self.health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            self.probe()
            if health.status == health_pb2.HealthCheckResponse.SERVING:
                return
            problem = f"health {health.status}"
        except grpc.RpcError as error:
            problem = f"{error.code().name} {error.details()!r}"
        status = self.server.exit_status()
        self.close()
        self.server.restart()
        self.connect()
        self.dirty = True
        raise ServerDown(f"after {after}: {problem}; the server process: {status}")


def call_tables(
    requests: Mapping[str, Any], tokens: Mapping[str, Sequence[Any]]
) -> tuple[dict[str, SearchStrategy[Call]], dict[str, dict[str, Sequence[tuple[str, Any]]]]]:
    """A module's strategies per RPC, and the extra sweep values: page tokens the service never issued."""
    calls_by_rpc = {rpc: calls(rpc, request) for rpc, request in requests.items()}
    sweep_extra: dict[str, dict[str, Sequence[tuple[str, Any]]]] = {
        rpc: {"page_token": bad_page_tokens(*shape)} for rpc, shape in tokens.items()
    }
    return calls_by_rpc, sweep_extra


def parent_of(name: str) -> str:
    """``models/x`` of ``models/x/versions/3`` (or ``datasets/x`` of ``datasets/x/versions/3``)."""
    return name.rsplit("/", 2)[0]
