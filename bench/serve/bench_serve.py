"""Serve's data-plane overhead: tritonclient -> Triton directly against tritonclient -> serve -> Triton.

Starts ``ferry-registry`` and ``ferry-serve`` as real subprocesses (``ferry_sdk.spawn_and_wait``;
SQLite and the local object store in a temporary state directory; serve runs its embedded
Triton), registers a small classifier shaped like train's export (``ferry_serve.testing.
tiny_classifier``: an FP32 column and a BYTES column in, probabilities and a class name out)
and creates a deployment for it. Then, at concurrency 1 and 8, round by round and rotating
which path goes first, it drives batch-1 ``ModelInfer`` calls through three paths:

- ``direct`` (**baseline**): to the very Triton that serve started (its loopback gRPC address
  is read from serve's ``triton ready`` log line), model ``<deployment>.<version>``;
- ``serve``: to serve's port, model ``<deployment>`` (routing, signature check, the forward
  to Triton, sampling);
- ``floor`` (unless ``--no-floor``): a bare ``grpc.aio`` proxy run by this script in its
  own process (no interceptors, no routing, no checks: it renames the model and forwards),
  the least any ``grpc.aio`` gateway in Python costs, to tell serve's own work from the hop's.

Each client thread owns its own ``tritonclient.grpc.InferenceServerClient`` and keeps one
request outstanding (perf_analyzer's concurrency mode); throughput is the requests completed
in the measured window divided by its length (perf_analyzer's time windows). CPU time per
request of the gateway process and of Triton (``tritonserver`` and its stub) is read from
``/proc`` over the same window: steadier than req/s when other work shares the machine.

    .venv/bin/python bench/serve/bench_serve.py                  # 3 rounds of 3 s per path and concurrency
    .venv/bin/python bench/serve/bench_serve.py --quick          # 1 round of 1 s
    .venv/bin/python bench/serve/bench_serve.py --profile DIR    # also py-spy the serve process at concurrency 8
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import numpy as np
import tritonclient.grpc as grpcclient

from ferry.serve.v1 import serve_pb2 as pb
from ferry.serve.v1 import serve_pb2_grpc
from ferry_sdk import RegistryClient
from ferry_sdk.spawn import ServiceProcess, free_port, spawn_and_wait, stop_all
from ferry_serve.testing import TINY_SIGNATURE as SIGNATURE
from ferry_serve.testing import tiny_classifier

DEPLOYMENT = "bench"
X = np.array([[0.5]], dtype=np.float32)
COLOR = np.array([[b"red"]], dtype=np.object_)
PATHS = ("direct", "serve", "floor")
# Targets for the 2-CPU machine where client, gateway and Triton share the cores.
TARGET_RATIO_C8 = 0.6  # serve req/s / direct req/s at concurrency 8
TARGET_ADDED_P50_C1_MS = 1.0  # serve p50 - direct p50 at concurrency 1


@dataclass
class Run:
    path: str
    concurrency: int
    calls: int
    seconds: float
    latencies_ms: list[float]
    cpu_ms: dict[str, float]  # CPU time spent by "serve" and "triton" during the window

    def cpu_us_per_call(self, process: str) -> float:
        return 1000 * self.cpu_ms.get(process, 0.0) / max(self.calls, 1)

    @property
    def throughput(self) -> float:
        return self.calls / self.seconds

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Row:
    """Medians over rounds for one path at one concurrency."""

    path: str
    concurrency: int
    throughput: float
    p50: float
    p99: float
    serve_cpu_us: float
    triton_cpu_us: float


_TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def _cpu_ms(pid: int) -> float:
    """User + system CPU time of one process, in ms (0 once it is gone)."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * _TICK_MS


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


class CpuMeter:
    """CPU time of a gateway process and of serve's Triton (tritonserver and its backend stubs)."""

    def __init__(self, gateway_pid: int, serve_pid: int) -> None:
        self._gateway = gateway_pid
        self._serve = serve_pid

    def sample(self) -> dict[str, float]:
        return {"serve": _cpu_ms(self._gateway), "triton": sum(_cpu_ms(p) for p in _descendants(self._serve))}


def make_call(client: grpcclient.InferenceServerClient, model: str) -> Callable[[], grpcclient.InferResult]:
    inputs = [grpcclient.InferInput("x", [1, 1], "FP32"), grpcclient.InferInput("color", [1, 1], "BYTES")]
    inputs[0].set_data_from_numpy(X)
    inputs[1].set_data_from_numpy(COLOR)
    outputs = [grpcclient.InferRequestedOutput("probabilities"), grpcclient.InferRequestedOutput("label")]
    return lambda: client.infer(model, inputs, outputs=outputs, client_timeout=30)


def measure(url: str, model: str, path: str, concurrency: int, seconds: float, meter: CpuMeter | None = None) -> Run:
    warmup = min(0.5, seconds / 4)
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    counts = [0] * concurrency
    ready = threading.Barrier(concurrency + 1)
    window: dict[str, float] = {}
    errors: list[BaseException] = []

    def client(worker: int) -> None:
        try:
            with grpcclient.InferenceServerClient(url) as triton:
                call = make_call(triton, model)
                call()  # connect before the clock starts
                ready.wait()
                begin, end, own = window["begin"], window["end"], latencies[worker]
                while True:
                    started = time.perf_counter()
                    if started >= end:
                        return
                    call()
                    finished = time.perf_counter()
                    if started >= begin:
                        own.append((finished - started) * 1000)
                        counts[worker] += 1
        except BaseException as error:  # reported by the main thread
            errors.append(error)
            ready.abort()

    threads = [threading.Thread(target=client, args=(w,), daemon=True) for w in range(concurrency)]
    for thread in threads:
        thread.start()
    now = time.perf_counter()
    window["begin"], window["end"] = now + warmup, now + warmup + seconds
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait()
    cpu: dict[str, float] = {}
    if meter is not None:
        time.sleep(max(0.0, window["begin"] - time.perf_counter()))
        before = meter.sample()
        time.sleep(max(0.0, window["end"] - time.perf_counter()))
        cpu = {name: value - before[name] for name, value in meter.sample().items()}
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{path} c={concurrency}: {errors[0]!r}")
    return Run(path, concurrency, sum(counts), seconds, [v for own in latencies for v in own], cpu)


def floor_proxy(triton_url: str, triton_model: str, port: int) -> None:
    """The ``floor`` path: a bare grpc.aio proxy of ModelInfer (runs in its own process)."""
    import asyncio

    import grpc.aio
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    class Proxy(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
        def __init__(self) -> None:
            self.stub: service_pb2_grpc.GRPCInferenceServiceStub | None = None

        async def ModelInfer(self, request: service_pb2.ModelInferRequest, context: object) -> object:
            if self.stub is None:  # the channel belongs to the server's event loop
                self.stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.aio.insecure_channel(triton_url))
            request.model_name = triton_model
            return await self.stub.ModelInfer(request, timeout=30)

    async def serve() -> None:
        server = grpc.aio.server()
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Proxy(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


def start_floor(triton_url: str, triton_model: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [
        sys.executable,
        str(pathlib.Path(__file__).resolve()),
        "--floor-proxy",
        f"{triton_url},{triton_model},{port}",
    ]
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with grpcclient.InferenceServerClient(f"127.0.0.1:{port}") as client:
                make_call(client, "floor")()
            return process, f"127.0.0.1:{port}"
        except Exception:
            if process.poll() is not None:
                raise SystemExit("the floor proxy exited") from None
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the floor proxy did not answer within 30 s")


def triton_grpc_address(log: pathlib.Path) -> str:
    """The loopback gRPC address of serve's embedded Triton, from serve's ``triton ready`` line."""
    for line in log.read_text().splitlines():
        if '"triton ready"' in line:
            return str(json.loads(line)["grpc"])
    raise SystemExit(f"no 'triton ready' line in {log}: is serve running its embedded Triton at log level info?")


def start_stack(work: pathlib.Path) -> tuple[dict[str, ServiceProcess], str]:
    addresses = {name: f"127.0.0.1:{free_port()}" for name in ("registry", "serve", "monitor")}
    common = {f"FERRY_{name.upper()}_ADDRESS": address for name, address in addresses.items()}
    # Info (the default) is needed for the "triton ready" line; inference calls log at debug.
    common |= {"OTEL_TRACES_EXPORTER": "none", "FERRY_LOG_LEVEL": "info", "FERRY_LOG_FORMAT": "json"}
    started: dict[str, ServiceProcess] = {}
    try:
        for name in ("registry", "serve"):
            env = {**common, "FERRY_STATE_DIR": str(work / name)}
            started[name] = spawn_and_wait(name, env=env, log_path=work / f"{name}.log", timeout=120)
    except BaseException:
        stop_all(started.values())
        raise
    return started, triton_grpc_address(work / "serve.log")


def deploy(stack: dict[str, ServiceProcess], sample_rate: float | None) -> str:
    """Register the model and deploy it; returns the Triton model name of the served version."""
    with RegistryClient(stack["registry"].address) as registry:
        registry.create_model(DEPLOYMENT, description="serve benchmark")
        made = registry.upload_model_version(DEPLOYMENT, tiny_classifier(), format="onnx", signature=SIGNATURE)
        registry.set_alias(f"models/{DEPLOYMENT}/aliases/production", made.version)
    with grpc.insecure_channel(stack["serve"].address) as channel:
        deployments = serve_pb2_grpc.ServeServiceStub(channel)
        created = deployments.CreateDeployment(
            pb.CreateDeploymentRequest(deployment=pb.Deployment(model=f"models/{DEPLOYMENT}")), timeout=120
        )
        if created.state != pb.Deployment.STATE_READY:
            raise SystemExit(f"deployment not ready: {created.message}")
        if sample_rate is not None:
            from google.protobuf import field_mask_pb2

            deployments.UpdateDeployment(
                pb.UpdateDeploymentRequest(
                    deployment=pb.Deployment(name=created.name, etag=created.etag, sample_rate=sample_rate),
                    update_mask=field_mask_pb2.FieldMask(paths=["sample_rate"]),
                ),
                timeout=60,
            )
    return f"{DEPLOYMENT}.{made.version}"


def profile(serve: ServiceProcess, url: str, directory: pathlib.Path, seconds: float) -> None:
    """py-spy the serve process while 8 clients call it: a flame graph and a text summary."""
    py_spy = shutil.which("py-spy") or str(pathlib.Path(sys.executable).with_name("py-spy"))
    directory.mkdir(parents=True, exist_ok=True)
    raw = directory / "serve-c8.txt"
    commands = [
        [
            py_spy,
            "record",
            "--pid",
            str(serve.pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "200",
            "--nonblocking",
            "--format",
            fmt,
            "--output",
            str(out),
        ]
        for fmt, out in (("flamegraph", directory / "serve-c8.svg"), ("raw", raw))
    ]
    for command in commands:
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        measure(url, DEPLOYMENT, "serve", 8, seconds + 1.0)
        _, err = spy.communicate(timeout=60)
        if spy.returncode != 0:
            print(f"py-spy failed ({spy.returncode}): {err.strip()[-500:]}", file=sys.stderr)
            return
    summarize_profile(raw)


# Where serve's samples go, first match wins (substrings of py-spy's collapsed frames).
_BUCKETS = (
    ("sampling: batches to monitor (off the request path)", ("Sampler._run", "MonitorClient", "InterceptedUnaryUnary")),
    ("thread pool: sample decoding, database polls", ("_worker", "_WorkItem")),
    ("gateway: forward to Triton (grpc.aio client call)", ("Gateway._forward",)),
    ("gateway: route, check, span attributes, sample", ("Gateway.ModelInfer",)),
    ("CallInterceptor (errors, log line)", ("CallInterceptor",)),
    ("OpenTelemetry server interceptor (span)", ("OpenTelemetryAioServerInterceptor",)),
    ("grpc.aio client completions (UnaryUnaryCall)", ("UnaryUnaryCall", "_UnaryResponseMixin")),
    ("grpc.aio poller thread (native)", ("Thread.run",)),
    ("event loop waiting/polling (epoll)", ("EpollSelector.select",)),
    ("event loop: grpc server machinery and task switching", ("Handle._run", "_run_once")),
)


def summarize_profile(raw: pathlib.Path, top: int = 12) -> None:
    """Shares of serve's samples by part of the request path, and the busiest frames."""
    buckets: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        own[stack.split(";")[-1]] += count
        name = next((name for name, keys in _BUCKETS if any(key in stack for key in keys)), "other")
        buckets[name] += count
    print(f"\npy-spy of ferry-serve at concurrency 8 ({total} samples, {raw}):", file=sys.stderr)
    for name, count in buckets.most_common():
        print(f"  {100 * count / total:5.1f}%  {name}", file=sys.stderr)
    print("  busiest frames (self):", file=sys.stderr)
    for frame, count in own.most_common(top):
        print(f"  {100 * count / total:5.1f}%  {frame}", file=sys.stderr)


def median_rows(runs: list[Run]) -> list[Row]:
    groups: dict[tuple[str, int], list[Run]] = collections.defaultdict(list)
    for run in runs:
        groups[(run.path, run.concurrency)].append(run)
    return [
        Row(
            path,
            concurrency,
            statistics.median(r.throughput for r in group),
            statistics.median(r.quantile(0.5) for r in group),
            statistics.median(r.quantile(0.99) for r in group),
            statistics.median(r.cpu_us_per_call("serve") for r in group),
            statistics.median(r.cpu_us_per_call("triton") for r in group),
        )
        for (path, concurrency), group in groups.items()
    ]


def print_table(rows: list[Row]) -> bool:
    by = {(r.path, r.concurrency): r for r in rows}
    header = (
        f"| {'conc':>4} | {'path':6} | {'req/s':>7} | {'p50 ms':>6} | {'p99 ms':>6} | {'added p50':>9} "
        f"| {'added p99':>9} | {'x direct':>8} | {'gateway CPU us/req':>18} | {'Triton CPU us/req':>17} "
        f"| {'target':26} |"
    )
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    ok = True
    for concurrency in sorted({r.concurrency for r in rows}):
        direct = by[("direct", concurrency)]
        for path in PATHS:
            row = by.get((path, concurrency))
            if row is None:
                continue
            added50 = added99 = verdict = ""
            ratio = "base"
            gateway = "-"  # direct: no gateway on the path (serve's own process idles)
            if row is not direct:
                added50, added99 = f"{row.p50 - direct.p50:+.2f}", f"{row.p99 - direct.p99:+.2f}"
                ratio = f"{row.throughput / direct.throughput:.2f}x"
                gateway = f"{row.serve_cpu_us:,.0f}"
            if path == "serve" and concurrency == 8:
                passed = row.throughput / direct.throughput >= TARGET_RATIO_C8
                verdict = f"x direct >= {TARGET_RATIO_C8} {'PASS' if passed else 'MISS'}"
                ok &= passed
            if path == "serve" and concurrency == 1:
                passed = row.p50 - direct.p50 <= TARGET_ADDED_P50_C1_MS
                verdict = f"added p50 <= {TARGET_ADDED_P50_C1_MS:g} ms {'PASS' if passed else 'MISS'}"
                ok &= passed
            print(
                f"| {concurrency:>4} | {row.path:6} | {row.throughput:>7,.0f} | {row.p50:>6.2f} | {row.p99:>6.2f} "
                f"| {added50:>9} | {added99:>9} | {ratio:>8} | {gateway:>18} "
                f"| {row.triton_cpu_us:>17,.0f} | {verdict:26} |"
            )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds; medians reported (default 3)")
    parser.add_argument("--concurrency", default="1,8", help="client threads to measure (default 1,8)")
    parser.add_argument(
        "--sample-rate", type=float, default=None, help="set the deployment's sample_rate (default: its default, 1.0)"
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s")
    parser.add_argument("--profile", metavar="DIR", help="afterwards, py-spy serve at concurrency 8 into DIR")
    parser.add_argument("--keep", action="store_true", help="keep the state directory (logs)")
    parser.add_argument("--no-floor", action="store_true", help="skip the bare grpc.aio proxy path")
    parser.add_argument("--floor-proxy", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_proxy:
        url, model, port = args.floor_proxy.split(",")
        floor_proxy(url, model, int(port))
        return
    if args.quick:
        args.seconds, args.rounds = 1.0, 1
    levels = [int(c) for c in args.concurrency.split(",")]

    load_before = os.getloadavg()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-serve-"))
    stack, triton_url = start_stack(work)
    floor: subprocess.Popen[bytes] | None = None
    try:
        triton_model = deploy(stack, args.sample_rate)
        targets = {"direct": (triton_url, triton_model), "serve": (stack["serve"].address, DEPLOYMENT)}
        paths: tuple[str, ...] = PATHS[:2]
        if not args.no_floor:
            floor, floor_url = start_floor(triton_url, triton_model)
            targets["floor"] = (floor_url, "floor")
            paths = PATHS
        meter = CpuMeter(stack["serve"].pid, stack["serve"].pid)
        floor_meter = CpuMeter(floor.pid, stack["serve"].pid) if floor is not None else None
        runs: list[Run] = []
        for concurrency in levels:
            for round_index in range(args.rounds):
                # Rotate which path goes first, so that no path always follows the same one.
                shift = round_index % len(paths)
                for path in paths[shift:] + paths[:shift]:
                    url, model = targets[path]
                    run = measure(
                        url, model, path, concurrency, args.seconds, floor_meter if path == "floor" else meter
                    )
                    runs.append(run)
                    print(
                        f"  round {round_index + 1} c={concurrency} {path:6}: {run.throughput:7,.0f} req/s  "
                        f"p50 {run.quantile(0.5):6.2f} ms  p99 {run.quantile(0.99):6.2f} ms  CPU us/req "
                        f"gateway {run.cpu_us_per_call('serve'):5.0f} Triton {run.cpu_us_per_call('triton'):5.0f}",
                        file=sys.stderr,
                        flush=True,
                    )
        load_after = os.getloadavg()
        if args.profile:
            profile(stack["serve"], stack["serve"].address, pathlib.Path(args.profile), max(args.seconds, 5.0))
    finally:
        if floor is not None:
            floor.terminate()
            floor.wait(10)
        stop_all(stack.values())
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"state and logs kept in {work}", file=sys.stderr)

    print(
        f"\nferry-serve benchmark: {os.cpu_count()} CPUs, batch 1, {args.seconds:g} s per run, median of "
        f"{args.rounds} alternated round(s), load average {load_before[0]:.2f} before / {load_after[0]:.2f} after; "
        f"direct = serve's own embedded Triton ({triton_url}, model {triton_model}); "
        f"sample_rate {'default' if args.sample_rate is None else args.sample_rate}\n"
    )
    ok = print_table(median_rows(runs))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
