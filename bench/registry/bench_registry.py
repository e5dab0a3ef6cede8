"""Registry throughput and latency: ResolveAlias, SetAlias, CreateModelVersion.

Starts ``ferry-registry`` as a real subprocess (``ferry_sdk.spawn_and_wait``; SQLite,
and PostgreSQL when a URL is given or the default local server answers), drives it
from client threads that each own a ``ferry_sdk.RegistryClient`` (one channel each),
and prints a table. The ``ratio`` column compares each workload's throughput with the
gRPC health ``Check`` on the same server, through the same client channel, at the same
concurrency, measured in the same run: the floor of the transport.

    .venv/bin/python bench/registry/bench_registry.py [--quick] [--postgres-url URL] [--no-postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from grpc_health.v1 import health_pb2, health_pb2_grpc

from ferry.registry.v1 import registry_pb2 as pb
from ferry_sdk import RegistryClient, SpawnError, spawn_and_wait

DEFAULT_POSTGRES = "postgresql://ferry:ferry@127.0.0.1:5432/postgres"
PROD = "models/bench/aliases/production"
SHA = "ab" * 32
# (backend, workload, concurrency) -> (min throughput/s, max p99 ms or None)
TARGETS: dict[tuple[str, str, int], tuple[float, float | None]] = {
    ("sqlite", "ResolveAlias", 8): (2000.0, 5.0),
    ("sqlite", "SetAlias", 8): (300.0, None),
}


@dataclass
class Result:
    backend: str
    workload: str
    concurrency: int
    calls: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.calls / self.seconds

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def registry_process(state_dir: pathlib.Path, database_url: str | None) -> Iterator[str]:
    env = {"FERRY_STATE_DIR": str(state_dir), "OTEL_TRACES_EXPORTER": "none", "FERRY_LOG_LEVEL": "warning"}
    if database_url:
        env["FERRY_REGISTRY_DATABASE_URL"] = database_url
    try:
        process = spawn_and_wait("registry", env=env, log_path=state_dir / "registry.log")
    except SpawnError as error:
        raise SystemExit(str(error)) from None
    with process:
        yield process.address


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A throwaway database on the server ``admin_url`` points at."""
    import psycopg

    name = f"ferry_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_reachable(admin_url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(admin_url, connect_timeout=2):
            return True
    except Exception:
        return False


def prepare(target: str, versions: int) -> None:
    with RegistryClient(target) as registry:
        registry.create_model("bench")
        for _ in range(versions):
            create_version(registry)
        registry.set_alias(PROD, 1)


def create_version(registry: RegistryClient) -> None:
    registry.create_model_version(
        "bench",
        pb.Artifact(uri="s3://bench/model.onnx", sha256=SHA, size_bytes=1, format=pb.ARTIFACT_FORMAT_ONNX),
        metrics={"auc": 0.9},
        params={"seed": "1"},
        timeout=10,
    )


Call = Callable[[], Any]


def workload_calls(name: str, registry: RegistryClient, worker: int) -> Call:
    """The call one client thread repeats."""
    if name == "health Check":
        health = health_pb2_grpc.HealthStub(registry.channel)
        request = health_pb2.HealthCheckRequest()
        return lambda: health.Check(request, timeout=10)
    if name == "ResolveAlias":
        return lambda: registry.resolve_alias(PROD, timeout=10)
    if name == "SetAlias":
        # Each thread moves its own alias between versions 1 and 2: every call is a
        # real change (an event and a revision), with no compare-and-set conflicts.
        alias = f"models/bench/aliases/t{worker}"
        state = {"next": 1}

        def set_alias() -> None:
            registry.set_alias(alias, state["next"], timeout=10)
            state["next"] = 3 - state["next"]

        return set_alias
    if name == "CreateModelVersion":
        return lambda: create_version(registry)
    raise ValueError(name)


def measure(target: str, backend: str, workload: str, concurrency: int, seconds: float) -> Result:
    warmup = min(0.5, seconds / 4)
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    counts = [0] * concurrency
    start_barrier = threading.Barrier(concurrency + 1)
    window: dict[str, float] = {}

    def client(worker: int) -> None:
        with RegistryClient(target) as registry:
            call = workload_calls(workload, registry, worker)
            call()  # connect before the clock starts
            start_barrier.wait()
            begin = window["begin"]
            end = window["end"]
            own = latencies[worker]
            while True:
                started = time.perf_counter()
                if started >= end:
                    return
                call()
                finished = time.perf_counter()
                if started >= begin:
                    own.append((finished - started) * 1000)
                    counts[worker] += 1

    threads = [threading.Thread(target=client, args=(worker,), daemon=True) for worker in range(concurrency)]
    for thread in threads:
        thread.start()
    now = time.perf_counter()
    window["begin"] = now + warmup
    window["end"] = now + warmup + seconds
    start_barrier.wait()
    for thread in threads:
        thread.join()
    merged = [value for own in latencies for value in own]
    return Result(backend, workload, concurrency, sum(counts), seconds, merged)


def median_run(target: str, backend: str, workload: str, concurrency: int, seconds: float, repeat: int) -> Result:
    """The run with the median throughput of ``repeat`` (damps noise from other processes)."""
    runs = sorted(
        (measure(target, backend, workload, concurrency, seconds) for _ in range(repeat)), key=lambda r: r.throughput
    )
    return runs[len(runs) // 2]


def run_backend(backend: str, database_url: str | None, seconds: float, versions: int, repeat: int) -> list[Result]:
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="ferry-bench-") as state,
        registry_process(pathlib.Path(state), database_url) as target,
    ):
        prepare(target, versions)
        for concurrency in (1, 8):
            for workload in ("health Check", "ResolveAlias", "SetAlias", "CreateModelVersion"):
                result = median_run(target, backend, workload, concurrency, seconds, repeat)
                results.append(result)
                print(
                    f"  {backend:8} {workload:18} c={concurrency}: {result.throughput:8.0f}/s "
                    f"p50 {result.quantile(0.5):6.2f} ms  p99 {result.quantile(0.99):6.2f} ms",
                    file=sys.stderr,
                )
    return results


def verdict(result: Result) -> str:
    target = TARGETS.get((result.backend, result.workload, result.concurrency))
    if target is None:
        return ""
    rate, p99 = target
    text = f">= {rate:,.0f}/s" + (f", p99 <= {p99:g} ms" if p99 is not None else "")
    ok = result.throughput >= rate and (p99 is None or result.quantile(0.99) <= p99)
    return f"{text} {'PASS' if ok else 'FAIL'}"


def print_table(results: list[Result]) -> bool:
    baselines = {(r.backend, r.concurrency): r.throughput for r in results if r.workload == "health Check"}
    header = (
        f"| {'backend':8} | {'workload':18} | {'conc':>4} | {'calls/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} "
        f"| {'ratio':>6} | {'target':34} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:]))
    ok = True
    for r in results:
        ratio = r.throughput / baselines[(r.backend, r.concurrency)]
        check = verdict(r)
        ok = ok and not check.endswith("FAIL")
        print(
            f"| {r.backend:8} | {r.workload:18} | {r.concurrency:>4} | {r.throughput:>8,.0f} | "
            f"{r.quantile(0.5):>7.2f} | {r.quantile(0.99):>7.2f} | {ratio:>5.2f}x | {check:34} |"
        )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs (about 1 s per measurement)")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per run (default 3, quick 1)")
    parser.add_argument(
        "--postgres-url",
        default=None,
        help=f"admin DSN of a PostgreSQL server (default {DEFAULT_POSTGRES} if reachable)",
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--repeat", type=int, default=None, help="runs per row, median reported (default 3, quick 1)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    seconds = args.seconds or (1.0 if args.quick else 3.0)
    repeat = args.repeat or (1 if args.quick else 3)

    results = run_backend("sqlite", None, seconds, versions=4, repeat=repeat)
    admin = args.postgres_url or os.environ.get("FERRY_TEST_POSTGRES_DSN") or DEFAULT_POSTGRES
    if not args.no_postgres and (args.postgres_url or postgres_reachable(admin)):
        with postgres_database(admin.replace("postgresql+psycopg://", "postgresql://", 1)) as url:
            results += run_backend("postgres", url, seconds, versions=4, repeat=repeat)
    else:
        print("  (PostgreSQL skipped: not reachable; pass --postgres-url)", file=sys.stderr)

    print(
        f"\nferry-registry benchmark: {os.cpu_count()} CPUs, {seconds:g} s per run, median of {repeat} run(s) per row, "
        f"log level warning, load average {load_before:.2f} before / {os.getloadavg()[0]:.2f} after, "
        "client threads with one channel each; ratio = calls/s / health Check calls/s (same server, same concurrency)\n"
    )
    ok = print_table(results)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
