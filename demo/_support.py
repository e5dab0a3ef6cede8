"""What ``demo/lifecycle.py`` needs besides the walk itself: step timings, the data, tables.

- :class:`StepClock` times each step of the walk (wall time) and writes them as JSON for
  ``bench/lifecycle`` (``--timings PATH``).
- :func:`wine_frame` and :func:`shifted` build the dataset (scikit-learn's bundled wine
  data, no download) and the drifted traffic.
- :func:`triton_predict` calls serve with nothing of Ferry: ``tritonclient.grpc`` alone,
  as any KServe v2 / Triton client would, with a W3C ``traceparent`` so that the trace can
  be found in monitor afterwards; :func:`create_traced_deployment` does the same for
  serve's ``CreateDeployment`` through the generated stub on ``ServeClient.channel``.
- :func:`poll` waits for what monitor sees a moment after the calls (spans, samples).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table

from ferry.monitor.v1 import monitor_pb2
from ferry.registry.v1 import registry_pb2
from ferry.serve.v1 import serve_pb2, serve_pb2_grpc
from ferry_sdk import RegistryClient, ServeClient, errors
from ferry_sdk.monitor import MonitorClient

__all__ = [
    "StepClock",
    "TritonAnswer",
    "concat",
    "create_traced_deployment",
    "current_version",
    "drift_method_name",
    "find_trace",
    "latency_table",
    "poll",
    "score_downloaded",
    "shifted",
    "trace_table",
    "triton_predict",
    "wine_frame",
]


@dataclass
class StepClock:
    """Wall time of each step, in order; printed at the end and written as JSON on request."""

    console: Console
    steps: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @contextlib.contextmanager
    def step(self, key: str, title: str) -> Iterator[None]:
        self.console.rule(f"[bold cyan]{title}")
        begun = time.perf_counter()
        ok = False
        try:
            yield
            ok = True
        finally:
            seconds = time.perf_counter() - begun
            self.steps.append({"step": key, "title": title, "seconds": round(seconds, 3), "ok": ok})
            self.console.print(f"[dim]  ({key}: {seconds:.1f}s)[/dim]")

    def total(self) -> float:
        return time.perf_counter() - self.started

    def summary(self) -> Table:
        table = Table("step", "what", "wall time", title="wall time of each step")
        table.columns[1].no_wrap = True
        table.columns[1].overflow = "ellipsis"
        for entry in self.steps:
            mark = "" if entry["ok"] else "  [red](failed)[/red]"
            table.add_row(entry["step"], entry["title"], f"{entry['seconds']:.1f}s{mark}")
        table.add_row("", "[bold]total[/bold]", f"[bold]{self.total():.1f}s[/bold]")
        return table

    def write(self, path: pathlib.Path, *, exit_code: int) -> None:
        data = {"steps": self.steps, "total_seconds": round(self.total(), 3), "exit_code": exit_code}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")


def wine_frame() -> Any:
    """scikit-learn's wine data (178 rows, 13 measurements, 3 cultivars) with a categorical colour band.

    Tabular data usually has a categorical column: the trained graph one-hot encodes it, serving
    sends it as a BYTES tensor, and monitor tests it with chi-squared.
    """
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    frame.insert(frame.columns.get_loc("color_intensity") + 1, "colour_band", colour_band(frame["color_intensity"]))
    return frame


def colour_band(intensity: Any) -> Any:
    import pandas as pd

    return pd.cut(intensity, [0.0, 3.0, 6.0, float("inf")], labels=["pale", "medium", "deep"]).astype(str)


def shifted(rows: Any) -> Any:
    """The same rows as a new harvest might bring them: more alcohol, deeper colour (and its band), less acid."""
    frame = rows.copy()
    frame["alcohol"] = frame["alcohol"] + 1.5
    frame["color_intensity"] = frame["color_intensity"] * 1.8
    frame["colour_band"] = colour_band(frame["color_intensity"])
    frame["malic_acid"] = frame["malic_acid"] * 0.5
    return frame


@dataclass(frozen=True)
class TritonAnswer:
    labels: list[str]
    model_version: str
    request_id: str
    trace_id: str


def triton_predict(address: str, deployment: str, rows: Any) -> TritonAnswer:
    """One ``ModelInfer`` through plain ``tritonclient.grpc`` (serve is a Triton endpoint), traced.

    The request carries a W3C ``traceparent`` with a fresh trace id: serve's spans join that
    trace, so monitor's ``GetTrace`` can show what the call did.
    """
    import numpy as np
    import tritonclient.grpc as triton

    trace_id = os.urandom(16).hex()
    traceparent = f"00-{trace_id}-{os.urandom(8).hex()}-01"
    client = triton.InferenceServerClient(url=address)
    try:
        metadata = client.get_model_metadata(deployment)
        inputs = []
        for spec in metadata.inputs:
            column = rows[spec.name]
            if spec.datatype == "BYTES":
                array = column.astype(str).to_numpy(dtype=object).reshape(-1, 1)
            else:
                array = column.to_numpy(dtype=np.float32).reshape(-1, 1)
            tensor = triton.InferInput(spec.name, list(array.shape), spec.datatype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        result = client.infer(
            deployment,
            inputs,
            outputs=[triton.InferRequestedOutput("label")],
            headers={"traceparent": traceparent},
        )
        response = result.get_response()
        values = result.as_numpy("label").ravel()
        labels = [value.decode() if isinstance(value, bytes) else str(value) for value in values]
        return TritonAnswer(labels, response.model_version, response.id, trace_id)
    finally:
        client.close()


def latency_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    """Count, errors and percentiles (ms) of ``(label, LatencySummary)`` rows."""
    table = Table("spans of", "count", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms", title=title)
    for label, summary in rows:
        table.add_row(
            label,
            str(summary.count),
            str(summary.error_count),
            f"{summary.p50_ms:.2f}",
            f"{summary.p90_ms:.2f}",
            f"{summary.p99_ms:.2f}",
            f"{summary.max_ms:.2f}",
        )
    return table


def trace_table(trace: Any) -> Table:
    """The spans of a trace, indented under their parents, with durations."""
    spans = list(trace.spans)
    by_id = {span.span_id: span for span in spans}

    def depth(span: Any) -> int:
        level, seen = 0, set()
        while span.parent_span_id in by_id and span.span_id not in seen:
            seen.add(span.span_id)
            span = by_id[span.parent_span_id]
            level += 1
        return level

    origin = min((span.start_time.ToNanoseconds() for span in spans), default=0)
    table = Table("service", "span", "starts at ms", "ms", title=f"trace {trace.trace_id}")
    for span in spans:
        start, end = span.start_time.ToNanoseconds(), span.end_time.ToNanoseconds()
        kind = span.attributes.get("ferry.route", "")
        method = span.name.rsplit(".", 1)[-1] if span.name.startswith("/") else span.name  # /pkg.Service/Method
        name = "  " * depth(span) + method + (f" [{kind}]" if kind else "")
        table.add_row(span.service, name, f"{(start - origin) / 1e6:.2f}", f"{(end - start) / 1e6:.2f}")
    return table


def create_traced_deployment(serve: ServeClient, deployment_id: str, model: str) -> str:
    """CreateDeployment with a W3C ``traceparent`` (any gRPC client can send one); returns the trace id.

    Serve's spans and those of the registry calls it makes (alias, version, artifact) join
    the caller's trace, so monitor can show the whole deployment as one trace.
    """
    trace_id = os.urandom(16).hex()
    request = serve_pb2.CreateDeploymentRequest(
        deployment_id=deployment_id,
        deployment=serve_pb2.Deployment(
            model=f"models/{model}", primary=serve_pb2.TrafficTarget(alias="production"), sample_rate=1.0
        ),
    )
    metadata = [("traceparent", f"00-{trace_id}-{os.urandom(8).hex()}-01")]
    try:
        serve_pb2_grpc.ServeServiceStub(serve.channel).CreateDeployment(request, metadata=metadata, timeout=300)
    except grpc.RpcError as error:
        raise errors.from_rpc_error(error) from error
    return trace_id


def concat(first: Any, second: Any) -> Any:
    import pandas as pd

    return pd.concat([first, second], ignore_index=True)


def drift_method_name(method: int) -> str:
    return monitor_pb2.DriftMethod.Name(method).removeprefix("DRIFT_METHOD_")


def poll(read: Any, done: Any, timeout: float, retry_on: tuple[type[Exception], ...] = ()) -> Any:
    """``read()`` until ``done(value)`` or the timeout (monitor sees spans and samples a moment after the calls).

    ``retry_on``: errors that mean "not there yet" (raised again once the time is up).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = read()
        except retry_on:
            if time.monotonic() > deadline:
                raise
        else:
            if done(value) or time.monotonic() > deadline:
                return value
        time.sleep(0.5)


def find_trace(monitor: MonitorClient, trace_id: str) -> Any:
    try:
        return monitor.get_trace(trace_id)
    except errors.NotFound:
        return None


def score_downloaded(registry: RegistryClient, version: registry_pb2.ModelVersion, test: Any) -> float:
    """Fetch an artifact back through the registry (sha256 checked) and run it as serving would."""
    import numpy as np
    import onnxruntime

    artifact = registry.download_model_version(version.name)
    session = onnxruntime.InferenceSession(artifact, providers=["CPUExecutionProvider"])
    inputs = {
        spec.name: test[spec.name].to_numpy(dtype=np.float32 if spec.datatype == "FP32" else object).reshape(-1, 1)
        for spec in version.signature.inputs  # one tensor per raw column: FP32, or BYTES for strings
    }
    (labels,) = session.run(["label"], inputs)  # class names, as the training job saw them
    return float((np.asarray(labels).ravel().astype(str) == test["target"].astype(str).to_numpy()).mean())


def current_version(registry: RegistryClient, alias: str) -> int:
    try:
        return int(registry.get_alias(alias).version)
    except errors.NotFound:
        return 0
