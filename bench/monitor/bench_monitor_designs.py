"""Monitor OTLP ingest, design 2 against design 1: accept into a write-ahead log, aggregate behind.

An experiment for issue 11 (bench-only code; the product receiver is unchanged):

- **bare**: ``bench_monitor``'s bare receiver (grpc.aio, upb decode, drop), the floor.
- **design 1**: the real ``ferry-monitor`` (``spawn_and_wait``, SQLite): decodes every span
  in Python on the request path, commits the latency deltas, then answers.
- **design 2**: a receiver process whose ``TraceService/Export`` is a generic handler taking
  the raw request bytes: it parses them with upb (validation only, as the bare receiver
  does; ``--no-validate`` skips it), appends them to a segmented log (``design2_wal``) and
  answers once a group fsync covers them. Behind it, ``--aggregators`` processes (one per
  log partition; the receiver deals requests round-robin) read the log from their committed
  offset, decode with the product's ``ferry_monitor.otlp.decode_batch``, and commit the
  latency deltas (the product's ``SqlLatencyStore.add``) and the new log offset in one
  SQLite transaction; then they keep the spans in a ``TraceStore`` and delete log segments
  they are past. A restarted aggregator resumes from its committed offset. When a
  partition's backlog (durable minus committed bytes) reaches ``--cap-mib``, Export answers
  UNAVAILABLE (retryable for OTLP exporters); the load generator then backs off and retries.

Per design-2 run it reports the *accepted* rate (Exports answered OK / s), the rate
*aggregated during* the load, and the *sustained* rate: spans aggregated from the start
until the aggregators have caught up with everything accepted, divided by that time.
Every run checks that exactly the accepted spans were aggregated; the end checks the spans
counted in SQL. ``--restart-check`` kills an aggregator with SIGKILL in the middle of a load
and starts a new one, then checks the SQL count again (nothing lost, nothing twice).

Rounds alternate the order of the three (bare, design 1, design 2 / design 2, design 1,
bare) because the machine is shared; each run records the 1-minute load average and the
CPU seconds the servers used.

    .venv/bin/python bench/monitor/bench_monitor_designs.py [--seconds 10] [--rounds 2] [--cap-mib 256]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import itertools
import multiprocessing
import os
import pathlib
import random
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import sqlalchemy as sa
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from sqlalchemy import event
from sqlalchemy.orm import Session

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from bench_monitor import TARGET_RATIO, TARGET_SPANS_PER_SECOND, _serve_bare, drive, make_request
from design2_wal import GroupSync, LogReader, LogWriter

from ferry_common.process import free_port, wait_port
from ferry_monitor.domain import BucketDelta, SeriesKey
from ferry_monitor.otlp import decode_batch
from ferry_monitor.sketches import SketchCache
from ferry_monitor.store import SqlLatencyStore, open_database
from ferry_monitor.traces import TraceStore
from ferry_sdk import spawn_and_wait

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
RETENTION_SECONDS = 86_400  # monitor's default
TRACE_STORE_BYTES = 64 * 1024 * 1024  # monitor's default
MAX_SPANS_PER_TRACE = 10_000  # monitor's default
_OFFSETS = sa.table("bench_wal_offsets", sa.column("log_partition"), sa.column("log_offset"))
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# multiprocessing Array("q", n, lock=False): one 64-bit slot per partition, one writer each.
Shared = ctypes.Array[ctypes.c_longlong]
Deltas = dict[tuple[int, SeriesKey], BucketDelta]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process so far (``/proc/<pid>/stat``)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


# ---------------------------------------------------------------- design 2: the receiver


def _serve_design2(
    port: int, root: str, partitions: int, cap_bytes: int, validate: bool, durable: Shared, committed: Shared
) -> None:
    async def main() -> None:
        writers = [LogWriter(pathlib.Path(root) / f"p{p}") for p in range(partitions)]

        def publisher(p: int) -> Any:
            def publish(offset: int) -> None:
                durable[p] = offset

            return publish

        syncs = [GroupSync(writer, publisher(p)) for p, writer in enumerate(writers)]
        turn = itertools.cycle(range(partitions))

        async def export(raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            p = next(turn)
            backlog = durable[p] - committed[p]
            if cap_bytes and backlog >= cap_bytes:  # before the parse: a refusal should cost little
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    f"monitor is behind: {backlog} bytes of spans wait to be aggregated (cap {cap_bytes}); retry",
                )
            if validate:
                try:
                    trace_service_pb2.ExportTraceServiceRequest.FromString(raw)
                except DecodeError as error:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT, f"request: not an OTLP trace export ({error})"
                    )
            end = writers[p].append(raw)
            await syncs[p].wait(end)
            return b""  # an empty ExportTraceServiceResponse: every span taken

        handler = grpc.method_handlers_generic_handler(
            TRACE_SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(export)}
        )
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


# ---------------------------------------------------------------- design 2: the aggregator


def _merge_into(total: Deltas, deltas: Deltas) -> None:
    for slot, delta in deltas.items():
        mine = total.get(slot)
        if mine is None:
            total[slot] = delta
        else:
            mine.absorb(delta)


def _aggregate(
    partition: int,
    directory: str,
    db_url: str,
    max_bytes: int,
    durable: Shared,
    committed: Shared,
    aggregated: Shared,
) -> None:
    """Decode the partition's log from the committed offset; commit deltas and offset together."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    database = open_database(db_url, threads=1)
    store = SqlLatencyStore(database, SketchCache())
    traces = TraceStore(TRACE_STORE_BYTES, MAX_SPANS_PER_TRACE)
    pending: list[int] = []

    @event.listens_for(database.writes, "before_commit")
    def _with_offset(session: Session) -> None:
        # In the same transaction as the deltas: a restart never counts a record twice or never.
        for offset in pending:
            session.execute(
                sa.text(
                    "INSERT INTO bench_wal_offsets (log_partition, log_offset) VALUES (:p, :o) "
                    "ON CONFLICT (log_partition) DO UPDATE SET log_offset = excluded.log_offset"
                ),
                {"p": partition, "o": offset},
            )

    with database.reads.begin() as session:
        found = session.execute(sa.select(_OFFSETS.c.log_offset).where(_OFFSETS.c.log_partition == partition)).scalar()
    position = int(found or 0)
    committed[partition] = position
    reader = LogReader(pathlib.Path(directory))
    while True:
        until = durable[partition]
        if until <= position:
            time.sleep(0.002)
            continue
        records = reader.read(position, until, max_bytes)
        total: Deltas = {}
        kept = []
        accepted = 0
        now_ns = time.time_ns()
        for payload, _ in records:
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(payload)
            batch = decode_batch(request, now_ns=now_ns, retention_seconds=RETENTION_SECONDS)
            _merge_into(total, batch.deltas)
            kept.append(batch.spans)
            accepted += batch.accepted
        new_position = records[-1][1]
        pending[:] = [new_position]
        if total:
            store.add(total)
        else:
            with database.writes.begin():
                pass  # the hook writes the offset
        pending.clear()
        for spans in kept:
            traces.add(spans)
        position = new_position
        committed[partition] = position
        aggregated[partition] += accepted
        reader.delete_before(position)


# ---------------------------------------------------------------- load with retries


async def drive_retrying(
    target: str, payloads: list[bytes], batch: int, inflight: int, seconds: float
) -> tuple[int, float, int]:
    """Like ``bench_monitor.drive``, retrying UNAVAILABLE with a short backoff: (spans acked, seconds, refusals)."""
    sent = 0
    refused = 0
    async with grpc.aio.insecure_channel(
        target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        call = channel.unary_unary(EXPORT, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        started = time.perf_counter()
        deadline = started + seconds

        async def sender(index: int) -> None:
            nonlocal sent, refused
            i = index
            backoff = 0.005
            while time.perf_counter() < deadline:
                try:
                    answer = await call(payloads[i % len(payloads)], timeout=60)
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    refused += 1
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 0.2)
                    continue
                backoff = 0.005
                response = trace_service_pb2.ExportTraceServiceResponse.FromString(answer)
                if response.partial_success.rejected_spans:
                    raise RuntimeError(response.partial_success.error_message)
                sent += batch
                i += inflight

        await asyncio.gather(*(sender(i) for i in range(inflight)))
        return sent, time.perf_counter() - started, refused


# ---------------------------------------------------------------- design 2, wired


@dataclass
class Design2:
    root: pathlib.Path
    partitions: int
    cap_bytes: int
    validate: bool
    max_bytes: int
    port: int = field(default_factory=free_port)
    durable: Shared = field(init=False)
    committed: Shared = field(init=False)
    aggregated: Shared = field(init=False)
    receiver: Any = None
    aggregators: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._context = context
        self.durable = context.Array("q", self.partitions, lock=False)
        self.committed = context.Array("q", self.partitions, lock=False)
        self.aggregated = context.Array("q", self.partitions, lock=False)
        self.db_url = f"sqlite:///{self.root / 'design2.db'}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        database = open_database(self.db_url, threads=1)  # migrate once, before the aggregators open it
        with database.writes.begin() as session:
            session.execute(
                sa.text(
                    "CREATE TABLE IF NOT EXISTS bench_wal_offsets "
                    "(log_partition INTEGER PRIMARY KEY, log_offset INTEGER NOT NULL)"
                )
            )
        database.close()
        # The receiver first: it opens (and repairs) the logs and publishes their durable ends.
        self.receiver = self._context.Process(
            target=_serve_design2,
            args=(
                self.port,
                str(self.root / "log"),
                self.partitions,
                self.cap_bytes,
                self.validate,
                self.durable,
                self.committed,
            ),
            daemon=True,
        )
        self.receiver.start()
        wait_port(self.port, timeout=60)
        self.aggregators = [self.start_aggregator(p) for p in range(self.partitions)]

    def start_aggregator(self, partition: int) -> Any:
        process = self._context.Process(
            target=_aggregate,
            args=(
                partition,
                str(self.root / "log" / f"p{partition}"),
                self.db_url,
                self.max_bytes,
                self.durable,
                self.committed,
                self.aggregated,
            ),
            daemon=True,
        )
        process.start()
        return process

    def caught_up(self) -> bool:
        return all(self.committed[p] >= self.durable[p] for p in range(self.partitions))

    def total_aggregated(self) -> int:
        return sum(self.aggregated[p] for p in range(self.partitions))

    def pids(self) -> list[int]:
        return [self.receiver.pid, *(a.pid for a in self.aggregators)]

    def stop(self) -> None:
        for process in [*self.aggregators, self.receiver]:
            if process is not None and process.is_alive():
                process.terminate()
                process.join(10)

    def counted_in_sql(self) -> int:
        with contextlib.closing(sqlite3.connect(self.root / "design2.db")) as connection:
            return int(connection.execute("SELECT COALESCE(SUM(count), 0) FROM latency_buckets").fetchone()[0])


# ---------------------------------------------------------------- runs


@dataclass
class Run:
    design: str
    round: int
    spans_per_second: float
    load: float
    cpu: dict[str, float]
    extra: dict[str, float] = field(default_factory=dict)


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    found = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            found[name] = cpu_seconds(pid)
    return found


@contextlib.contextmanager
def measured(pids: dict[str, int], into: dict[str, float]) -> Iterator[None]:
    """CPU seconds each of ``pids`` used inside the block (and ``wall``: its seconds)."""
    before, started = _cpu(pids), time.perf_counter()
    yield
    after, elapsed = _cpu(pids), time.perf_counter() - started
    for name in after:
        into[name] = after[name] - before.get(name, 0.0)
    into["wall"] = elapsed


def _per_second(cpu: dict[str, float]) -> dict[str, float]:
    return {name: value / cpu["wall"] for name, value in cpu.items() if name != "wall"}


def run_simple(design: str, target: str, pid: int, payloads: list[bytes], args: argparse.Namespace, round_: int) -> Run:
    """The bare receiver or design 1: ``bench_monitor.drive`` for ``--seconds``."""
    cpu: dict[str, float] = {}
    with measured({"server": pid, "client": os.getpid()}, cpu):
        spans, seconds = asyncio.run(drive(target, payloads, args.batch, args.inflight, args.seconds, sys.maxsize))
    efficiency = spans / cpu["server"] if cpu.get("server") else 0.0
    return Run(design, round_, spans / seconds, os.getloadavg()[0], _per_second(cpu), {"per_cpu_s": efficiency})


def run_design2(design2: Design2, payloads: list[bytes], args: argparse.Namespace, round_: int) -> Run:
    pids = {"receiver": design2.receiver.pid, **{f"aggregator{i}": a.pid for i, a in enumerate(design2.aggregators)}}
    pids["client"] = os.getpid()
    while not design2.caught_up():
        time.sleep(0.05)
    start_count = design2.total_aggregated()
    started = time.perf_counter()
    loaded: dict[str, float] = {}
    if args.pause_aggregators:
        for process in design2.aggregators:
            os.kill(process.pid, signal.SIGSTOP)
    with measured(pids, loaded):
        acked, seconds, refused = asyncio.run(
            drive_retrying(design2.address, payloads, args.batch, args.inflight, args.seconds)
        )
    during = design2.total_aggregated() - start_count
    if args.pause_aggregators:
        for process in design2.aggregators:
            os.kill(process.pid, signal.SIGCONT)
    load = os.getloadavg()[0]
    behind: dict[str, float] = {}
    with measured(pids, behind):
        while not design2.caught_up():
            time.sleep(0.01)
    caught = time.perf_counter() - started
    total = design2.total_aggregated() - start_count
    if total != acked:
        print(f"  !! design 2 round {round_}: {acked} spans acknowledged but {total} aggregated", flush=True)
    aggregator_cpu = sum(v for k, v in loaded.items() if k.startswith("aggregator"))
    aggregator_cpu += sum(v for k, v in behind.items() if k.startswith("aggregator"))
    return Run(
        "design 2",
        round_,
        acked / seconds,
        load,
        _per_second(loaded),
        {
            "aggregated_during": during / seconds,
            "sustained": total / caught,
            "catch_up_s": caught - seconds,
            "refused": refused,
            "acked": acked,
            "per_cpu_s": acked / loaded["receiver"] if loaded.get("receiver") else 0.0,
            "aggregator_per_cpu_s": total / aggregator_cpu if aggregator_cpu else 0.0,
            "aggregator_cpu_behind": sum(v for k, v in _per_second(behind).items() if k.startswith("aggregator"))
            if behind["wall"] > 0.5
            else float("nan"),
        },
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each throughput run")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of bare, design 1, design 2 (order alternates)")
    parser.add_argument("--batch", type=int, default=512, help="spans per Export (the SDK's default batch)")
    parser.add_argument("--inflight", type=int, default=8, help="Export calls in flight")
    parser.add_argument("--aggregators", type=int, default=1, help="design 2: log partitions, one aggregator each")
    parser.add_argument("--cap-mib", type=float, default=256, help="design 2: backlog per partition (0 = none)")
    parser.add_argument("--read-mib", type=float, default=8, help="design 2: log bytes per aggregator commit")
    parser.add_argument("--no-validate", action="store_true", help="design 2: append without a upb parse")
    parser.add_argument(
        "--pause-aggregators",
        action="store_true",
        help="design 2: SIGSTOP the aggregators during the load (the accept path alone; use with --cap-mib 0)",
    )
    parser.add_argument("--skip-design1", action="store_true", help="leave out the real ferry-monitor")
    parser.add_argument("--restart-check", action="store_true", help="design 2: SIGKILL an aggregator mid-load")
    args = parser.parse_args()
    # A SIGTERM unwinds like an exception: the monitor and the daemon children are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    rng = random.Random(5)
    now = time.time_ns()
    payloads = [make_request(args.batch, now - rng.randrange(0, 60) * 1_000_000_000, rng) for _ in range(64)]

    context = multiprocessing.get_context("spawn")
    bare_port = free_port()
    bare = context.Process(target=_serve_bare, args=(bare_port,), daemon=True)
    bare.start()
    assert bare.pid is not None
    bare_pid = bare.pid
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="ferry-bench-designs-") as state:
        design2 = Design2(
            pathlib.Path(state) / "design2",
            args.aggregators,
            int(args.cap_mib * 1024 * 1024),
            not args.no_validate,
            int(args.read_mib * 1024 * 1024),
        )
        design2.start()
        env = {"FERRY_STATE_DIR": state, "OTEL_TRACES_EXPORTER": "none", "FERRY_LOG_LEVEL": "warning"}
        with contextlib.ExitStack() as stack:
            monitor = None
            if not args.skip_design1:
                monitor = stack.enter_context(
                    spawn_and_wait("monitor", env=env, cwd=state, log_path=pathlib.Path(state) / "monitor.log")
                )
            wait_port(bare_port, timeout=30)
            for round_ in range(args.rounds):
                order = ["bare", "design 1", "design 2"]
                if round_ % 2:
                    order.reverse()
                for design in order:
                    if design == "bare":
                        runs.append(run_simple("bare", f"127.0.0.1:{bare_port}", bare_pid, payloads, args, round_))
                    elif design == "design 1":
                        if monitor is None:
                            continue
                        runs.append(run_simple("design 1", monitor.address, monitor.pid, payloads, args, round_))
                    else:
                        runs.append(run_design2(design2, payloads, args, round_))
                    print(_line(runs[-1]), flush=True)
            restart_note = ""
            if args.restart_check:
                restart_note = restart_check(design2, payloads, args)
            acked_total = sum(int(r.extra["acked"]) for r in runs if r.design == "design 2")
            acked_total += int(getattr(args, "restart_acked", 0))
            in_sql = design2.counted_in_sql()
        design2.stop()
    bare.terminate()
    bare.join(10)
    print_summary(runs, args, acked_total, in_sql, restart_note)
    return 0 if acked_total == in_sql else 1


def restart_check(design2: Design2, payloads: list[bytes], args: argparse.Namespace) -> str:
    """Load design 2; halfway, SIGKILL aggregator 0 and start a new one; then wait until caught up."""

    async def load_and_kill() -> tuple[int, float, int]:
        async def killer() -> None:
            await asyncio.sleep(args.seconds / 2)
            victim = design2.aggregators[0]
            os.kill(victim.pid, signal.SIGKILL)
            victim.join(10)
            design2.aggregators[0] = design2.start_aggregator(0)

        kill = asyncio.create_task(killer())
        result = await drive_retrying(design2.address, payloads, args.batch, args.inflight, args.seconds)
        await kill
        return result

    acked, seconds, refused = asyncio.run(load_and_kill())
    while not design2.caught_up():
        time.sleep(0.05)
    args.restart_acked = acked
    note = (
        f"restart check: {acked:,} spans acknowledged in {seconds:.1f} s ({refused} refusals), aggregator 0 "
        "killed with SIGKILL halfway and restarted from its committed offset"
    )
    print(note, flush=True)
    return note


def _line(run: Run) -> str:
    cpu = ", ".join(f"{name} {value:.2f}" for name, value in run.cpu.items())
    e = run.extra
    extra = f", {e['per_cpu_s']:,.0f} per server CPU-s"
    if run.design == "design 2":
        extra = (
            f" accepted ({e['per_cpu_s']:,.0f} per receiver CPU-s), aggregated during {e['aggregated_during']:,.0f}/s, "
            f"sustained {e['sustained']:,.0f}/s (caught up {e['catch_up_s']:.1f} s after the load; "
            f"{e['aggregator_per_cpu_s']:,.0f} per aggregator CPU-s; aggregators had "
            f"{e['aggregator_cpu_behind']:.2f} CPU/s while catching up), {int(e['refused'])} refusals"
        )
    head = f"round {run.round} {run.design}: {run.spans_per_second:,.0f} spans/s"
    return f"{head}{extra}; load {run.load:.2f}; CPU/s under load: {cpu}"


def print_summary(runs: list[Run], args: argparse.Namespace, acked_total: int, in_sql: int, note: str) -> None:
    print(
        f"\nmonitor OTLP ingest designs: batch {args.batch} spans, {args.inflight} in flight, {args.seconds:g} s "
        f"per run, {args.rounds} rounds, {os.cpu_count()} CPUs; design 2: {args.aggregators} aggregator(s), "
        f"cap {args.cap_mib:g} MiB, validate {'no' if args.no_validate else 'yes'}"
        f"{', aggregators paused during the load' if args.pause_aggregators else ''}\n"
    )
    rows = [("workload", "spans/s per round", "mean", "ratio to bare (same round)", "load avg")]

    def series(design: str, key: str | None = None) -> list[float]:
        chosen = [r for r in runs if r.design == design]
        return [r.spans_per_second if key is None else r.extra[key] for r in chosen]

    bare = series("bare")
    loads = {d: [r.load for r in runs if r.design == d] for d in ("bare", "design 1", "design 2")}
    for label, design, key in (
        ("bare receiver (decode, drop)", "bare", None),
        ("design 1: ferry-monitor (committed)", "design 1", None),
        ("design 2: accepted (fsynced to the log)", "design 2", None),
        ("design 2: aggregated during the load", "design 2", "aggregated_during"),
        ("design 2: sustained (until caught up)", "design 2", "sustained"),
    ):
        values = series(design, key)
        if not values:
            continue
        ratios = [v / b for v, b in zip(values, bare, strict=False)]
        rows.append(
            (
                label,
                " / ".join(f"{v:,.0f}" for v in values),
                f"{sum(values) / len(values):,.0f}",
                " / ".join(f"{r:.2f}" for r in ratios),
                " / ".join(f"{x:.1f}" for x in loads[design]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    sustained = series("design 2", "sustained")
    ratios = [s / b for s, b in zip(sustained, bare, strict=False)]
    if ratios:
        ok = min(ratios) >= TARGET_RATIO and min(sustained) >= TARGET_SPANS_PER_SECOND
        print(
            f"\ndesign 2 sustained >= {TARGET_RATIO} of bare and >= {TARGET_SPANS_PER_SECOND:,}/s: "
            f"{'met' if ok else 'MISSED'} (worst ratio {min(ratios):.2f})"
        )
    print("\nspans per CPU-second of the server process(es) (independent of how busy the machine is):")
    for label, design, key in (
        ("bare receiver", "bare", "per_cpu_s"),
        ("design 1: ferry-monitor", "design 1", "per_cpu_s"),
        ("design 2: receiver (accept into the log)", "design 2", "per_cpu_s"),
        ("design 2: aggregator(s) (decode, commit)", "design 2", "aggregator_per_cpu_s"),
    ):
        values = [r.extra[key] for r in runs if r.design == design]
        if values:
            print(f"  {label:42} " + " / ".join(f"{v:,.0f}" for v in values))
    print("\nper run:")
    for run in runs:
        print("  " + _line(run))
    if note:
        print(note)
    print(
        f"design 2 spans acknowledged {acked_total:,}, counted in SQL {in_sql:,}: "
        f"{'equal' if acked_total == in_sql else 'DIFFERENT'}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
