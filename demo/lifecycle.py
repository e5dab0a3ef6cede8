"""``make demo``: the whole Ferry lifecycle on a real public dataset, on embedded defaults.

Starts the five services as separate processes (SQLite files, a local object store and
Triton's model repository under ``.ferry/demo``), then walks, through the public gRPC
contracts only (the typed clients of ``ferry_sdk``, and plain ``tritonclient`` once):

 1. ingest: scikit-learn's bundled wine data (178 rows, 13 measurements, a colour band)
    uploaded as a DataFrame, its profile, the same bytes again (no new version), a recipe
    (rename + stratified train/validation/test split);
 2. train: a job on two CPU devices (DDP over gloo), followed live epoch by epoch; its worker
    exports ONNX (pre-processing inside the graph) and registers a version with lineage;
 3. registry: ``production`` -> that version with compare-and-set (a stale writer refused),
    the artifact downloaded back and scored in onnxruntime;
 4. serve: a deployment that follows ``production``, loaded into the embedded Triton;
 5. predictions: ``ServeClient.predict`` on a DataFrame, and ``tritonclient.grpc`` alone;
 6. monitor: latency percentiles of every service's spans, and the trace of that call;
 7. a second training run (a smaller network, one epoch);
 8. a 20% canary of it; 9. promote (``production`` moves to it, the canary cleared);
10. rollback (one call; serve follows); 11. ground truth sent as feedback by request id,
    accuracy per version; 12. drift of shifted traffic against the training split;

then stops the stack (SIGTERM to all five; each drains and is reaped) and prints the wall
time of each step (``--timings PATH`` also writes them as JSON: ``bench/lifecycle``).

A second run on the same state directory gets the same dataset, jobs and versions back
(content addressing and ``request_id``) and walks the rest again.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import pathlib
import sys
import time
from collections import Counter
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _support import (
    StepClock,
    concat,
    create_traced_deployment,
    current_version,
    drift_method_name,
    find_trace,
    latency_table,
    poll,
    score_downloaded,
    shifted,
    trace_table,
    triton_predict,
    wine_frame,
)

from ferry.registry.v1 import registry_pb2
from ferry.train.v1 import train_pb2
from ferry_sdk import IngestClient, RegistryClient, ServeClient, TrainClient, errors, stack
from ferry_sdk.monitor import MonitorClient

console = Console()
DATASET = "wine"
MODEL = "wine-cultivar"
ALIAS = f"models/{MODEL}/aliases/production"
SHIFTED = ("alcohol", "malic_acid", "color_intensity", "colour_band")  # what _support.shifted changes

# Two configurations of the built-in MLP: a proper run on two CPU devices (DDP; train refuses
# more CPU devices than cores, so one on a one-core machine), and a short one on one device
# that plays the worse retrain.
_DDP = (os.cpu_count() or 1) >= 2
FIRST_JOB: dict[str, Any] = {
    "job_id": "wine-mlp-ddp" if _DDP else "wine-mlp",
    "hidden_units": (32, 16),
    "max_epochs": 15,
    "learning_rate": 0.01,
    "devices": 2 if _DDP else 1,
    "strategy": "ddp" if _DDP else "",
}
SECOND_JOB: dict[str, Any] = {
    "job_id": "wine-mlp-small",
    "hidden_units": (4,),
    "max_epochs": 1,
    "learning_rate": 1e-4,
    "devices": 1,
    "strategy": "",
}


class Clients:
    """The five typed clients, on the stack's addresses."""

    def __init__(self, addresses: dict[str, str]) -> None:
        self.addresses = addresses
        self._open = contextlib.ExitStack()
        self.ingest = self._open.enter_context(IngestClient(addresses["ingest"]))
        self.registry = self._open.enter_context(RegistryClient(addresses["registry"]))
        self.train = self._open.enter_context(TrainClient(addresses["train"]))
        self.serve = self._open.enter_context(ServeClient(addresses["serve"]))
        self.monitor = self._open.enter_context(MonitorClient(addresses["monitor"]))

    def close(self) -> None:
        self._open.close()


class Walk:
    """The lifecycle, step by step; what later steps need is kept on the instance."""

    def __init__(self, clients: Clients, clock: StepClock) -> None:
        self.c = clients
        self.clock = clock
        self.began = datetime.datetime.now(datetime.UTC)
        self.deploy_trace_id = ""
        self.truth: dict[str, Any] = {}  # request id -> true cultivar (feedback arrives later)
        self.served: Counter[int] = Counter()  # requests answered per version

    def run(self) -> None:
        with self.clock.step("ingest", "1. ingest: upload a DataFrame, profile, deduplicate, recipe with splits"):
            self.ingest()
        with self.clock.step("train", "2. train: two CPU devices (DDP), followed live, registered with lineage"):
            self.first = self.train_and_register(FIRST_JOB)
        with self.clock.step("alias", "3. registry: production -> the new version (compare-and-set)"):
            self.release()
        with self.clock.step("deploy", "4. serve: a deployment that follows production"):
            self.deploy()
        with self.clock.step("predict", "5. predictions through serve: the SDK (DataFrame) and plain tritonclient"):
            self.predict()
        with self.clock.step("monitor", "6. monitor: latency percentiles of every service, one trace"):
            self.latency_andfind_trace()
        with self.clock.step("retrain", "7. a second training run"):
            self.second = self.train_and_register(SECOND_JOB)
        with self.clock.step("canary", "8. canary: 20% of the traffic to the new version"):
            self.canary()
        with self.clock.step("promote", "9. promote: the canary becomes production"):
            self.promote()
        with self.clock.step("rollback", "10. rollback: one call, serve follows"):
            self.rollback()
        with self.clock.step("feedback", "11. feedback: ground truth by request id -> accuracy per version"):
            self.feedback()
        with self.clock.step("drift", "12. drift: shifted traffic against the training split's profile"):
            self.drift()

    # 1. ingest

    def ingest(self) -> None:
        frame = wine_frame()
        version = self.upload(frame, "demo-wine-upload")
        console.print(
            f"[green]✓[/green] {version.name}: {version.row_count} rows, {len(version.schema.fields)} columns, "
            f"sha256 {version.sha256[:12]}…, stored at {version.uri}"
        )
        self.show_profile(version.name)
        again = self.upload(frame, "demo-wine-upload-again")
        console.print(
            f"[green]✓[/green] the same rows uploaded again -> {again.name} (content-addressed: no new version)"
        )
        recipe = {
            "steps": [
                {"rename": {"columns": {"od280/od315_of_diluted_wines": "od280_od315"}}},
                {
                    "split": {
                        "fractions": [
                            {"name": "train", "fraction": 0.7},
                            {"name": "validation", "fraction": 0.15},
                            {"name": "test", "fraction": 0.15},
                        ],
                        "seed": 42,
                        "stratify_column": "target",
                    }
                },
            ]
        }
        self.clean = self.c.ingest.transform_dataset(version.name, "wine-clean", recipe)
        splits = ", ".join(f"{s.name}={s.row_count}" for s in self.clean.splits)
        console.print(f"[green]✓[/green] {self.clean.name} from {self.clean.lineage.parent}: splits {splits}")
        self.test = self.c.ingest.read_dataset_frame(self.clean.name, split="test")
        validation = self.c.ingest.read_dataset_frame(self.clean.name, split="validation")
        self.held_out = concat(self.test, validation)
        console.print(f"  read back as DataFrames: test {len(self.test)} rows, validation {len(validation)} rows")

    def upload(self, frame: Any, request_id: str) -> Any:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("uploading the wine DataFrame", total=None)
            return self.c.ingest.upload_dataset(
                DATASET,
                frame,
                format="csv",
                description="UCI wine recognition data (scikit-learn bundle)",
                labels={"source": "sklearn", "domain": "chemistry"},
                request_id=request_id,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )

    def show_profile(self, name: str) -> None:
        profile = self.c.ingest.get_profile(name)
        table = Table("column", "type", "nulls", "min", "mean", "max", "p50", title=f"profile of {name}")
        for column in profile.columns:
            numeric = column.numeric
            if column.HasField("numeric"):
                median = next((q.value for q in numeric.quantiles if abs(q.quantile - 0.5) < 1e-9), float("nan"))
                values = [f"{numeric.min:.3g}", f"{numeric.mean:.3g}", f"{numeric.max:.3g}", f"{median:.3g}"]
            else:
                top = ", ".join(f"{v.value}x{v.count}" for v in column.categorical.top_values[:3])
                values = ["", top, "", ""]
            table.add_row(column.name, column.type, str(column.null_count), *values)
        console.print(table)

    # 2 and 7. train

    def train_and_register(self, config: dict[str, Any]) -> int:
        with contextlib.suppress(errors.AlreadyExists):  # a second run of the demo
            self.c.registry.create_model(MODEL, description="wine cultivar classifier", labels={"team": "demo"})
        finished = self.run_job(config)
        registered = self.c.registry.get_model_version(finished.model_version)
        lineage = registered.lineage
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in sorted(registered.metrics.items()))
        console.print(
            f"[green]✓[/green] registered {registered.name}: {registered.artifact.size_bytes} bytes ONNX, sha256 "
            f"{registered.artifact.sha256[:12]}…\n"
            f"  lineage: job {lineage.training_job}, data {lineage.dataset_version} (split {lineage.split!r}), "
            f"code {lineage.code_revision!r}\n  metrics: {metrics}"
        )
        return int(registered.version)

    def run_job(self, config: dict[str, Any]) -> train_pb2.TrainingJob:
        """Create a job (idempotent: a second run of the demo gets the same job back) and follow it live."""
        train = self.c.train
        job_id = f"{config['job_id']}-v{self.clean.name.rsplit('/', 1)[-1]}"
        job = train.create_training_job(
            job_id,
            dataset_version=self.clean.name,
            target="target",
            task="classification",
            hidden_units=config["hidden_units"],
            dropout=0.0,
            max_epochs=config["max_epochs"],
            batch_size=32,
            learning_rate=config["learning_rate"],
            seed=0,
            accelerator="cpu",
            devices=config["devices"],
            strategy=config["strategy"],
            register_model=MODEL,
            code_revision="demo",
            request_id=f"demo-{job_id}",
        )
        if job.state in (train_pb2.TrainingJob.STATE_FAILED, train_pb2.TrainingJob.STATE_CANCELLED):
            job = train.resume_training_job(job.name)  # an earlier run of the demo stopped it: continue it
        state = train_pb2.TrainingJob.State.Name(job.state).removeprefix("STATE_")
        resources = job.resources
        where = f"{resources.devices} CPU device{'s' if resources.devices > 1 else ''}"
        if resources.devices > 1:
            where += f", strategy {resources.strategy}: one process per device, gradients averaged over gloo"
        console.print(
            f"  {job.name}: {state}, {config['max_epochs']} epochs, hidden {list(config['hidden_units'])}, {where}"
        )
        with Progress(
            TextColumn("  [progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=console,
        ) as progress:
            bar = progress.add_task(f"{job_id} epochs", total=config["max_epochs"], metrics="")
            for event in train.watch_training_job(job.name):  # ends once the job is final
                if event.HasField("epoch"):
                    metrics = "  ".join(f"{k} {v:.3f}" for k, v in sorted(event.epoch.metrics.items()))
                    progress.update(bar, completed=event.epoch.epoch + 1, metrics=metrics)
                    if event.epoch.epoch % 5 == 4 or event.epoch.epoch + 1 == config["max_epochs"]:
                        progress.console.print(f"    epoch {event.epoch.epoch:>2}  {metrics}")
                elif event.HasField("state_change"):
                    change = event.state_change
                    name = train_pb2.TrainingJob.State.Name(change.state).removeprefix("STATE_")
                    progress.console.print(f"    [dim]{name}{': ' + change.message if change.message else ''}[/dim]")
        finished = train.wait_for(job.name, timeout=600)  # TrainingJobFailed (naming the job) if it failed
        console.print(
            f"[green]✓[/green] {job.name} succeeded -> {finished.model_version}: "
            f"val_accuracy {finished.metrics['val_accuracy']:.3f}"
        )
        return finished

    # 3. registry

    def release(self) -> None:
        registry = self.c.registry
        current = current_version(registry, ALIAS)
        registry.set_alias(ALIAS, self.first, expected_version=current, reason="first release")
        console.print(f"[green]✓[/green] production -> v{self.first} (compare-and-set from {current or 'unset'})")
        stale = current if current != self.first else 0  # what a writer that read it earlier expects
        try:
            registry.set_alias(ALIAS, self.first, expected_version=stale, reason="stale writer")
        except errors.Aborted as exc:
            console.print(f"[yellow]![/yellow] a stale compare-and-set is refused: {exc}")
        resolved = registry.resolve_alias(ALIAS)
        accuracy = score_downloaded(registry, resolved, self.test)
        console.print(
            f"[green]✓[/green] ResolveAlias(production) = {resolved.name}; DownloadModelVersion runs in onnxruntime: "
            f"test accuracy {accuracy:.3f} on the held-out split"
        )

    # 4. serve

    def deploy(self) -> None:
        serve = self.c.serve
        try:
            existing = serve.get_deployment(MODEL)
            if existing.HasField("canary"):
                serve.update_deployment(MODEL, canary=None)  # left over by an interrupted run
            console.print(f"  deployments/{MODEL} exists (an earlier run): it follows production")
        except errors.NotFound:
            started = time.perf_counter()
            self.deploy_trace_id = create_traced_deployment(serve, MODEL, MODEL)
            console.print(
                f"[green]✓[/green] deployments/{MODEL} created: follows production, samples every request to monitor "
                f"({time.perf_counter() - started:.1f}s to fetch, load into Triton and warm)"
            )
        deployment = serve.wait_ready(MODEL, timeout=180)
        console.print(f"  state READY: {deployment.message}")

    # 5. predictions

    def predict(self) -> None:
        rows = self.test.sample(6, random_state=0)  # rows of every cultivar
        answered = self.c.serve.predict(MODEL, rows.drop(columns=["target"]))
        self.truth[answered.attrs["request_id"]] = rows["target"].tolist()
        version = int(answered.attrs["model_version"])
        self.served[version] += 1
        columns = [c for c in answered.columns if c.startswith("probability_")]
        title = f"ServeClient.predict(DataFrame): answered by version {version}"
        table = Table("truth", "label", *columns, title=title)
        for truth, (_, row) in zip(rows["target"], answered.iterrows(), strict=True):
            table.add_row(str(truth), str(row["label"]), *(f"{row[c]:.3f}" for c in columns))
        console.print(table)
        console.print(f"  request id {answered.attrs['request_id']} (what feedback is matched on)")
        plain = triton_predict(self.c.addresses["serve"], MODEL, rows)
        self.truth[plain.request_id] = rows["target"].tolist()
        self.served[int(plain.model_version)] += 1
        self.trace_id = plain.trace_id
        agree = sum(a == str(b) for a, b in zip(plain.labels, answered["label"], strict=True))
        console.print(
            f"[green]✓[/green] tritonclient.grpc.InferenceServerClient({self.c.addresses['serve']}).infer("
            f"model_name={MODEL!r}): labels {plain.labels}, version {plain.model_version}, "
            f"request id {plain.request_id} ({agree}/{len(rows)} agree with the SDK)"
        )
        for _, row in self.held_out.iterrows():  # some traffic for the percentiles
            self.send(row)
        console.print(f"  {len(self.held_out)} more requests, one row each (held-out rows)")

    def send(self, row: Any) -> int:
        """One single-row request through the SDK; its truth kept for feedback."""
        answered = self.c.serve.predict(MODEL, row.drop(labels=["target"]).to_frame().T)
        version = int(answered.attrs["model_version"])
        self.truth[answered.attrs["request_id"]] = int(row["target"])
        self.served[version] += 1
        return version

    # 6. monitor

    def latency_andfind_trace(self) -> None:
        monitor = self.c.monitor
        expected = sum(self.served.values())
        summary = poll(
            lambda: monitor.get_latency_summary(deployment=MODEL, start=self.began),
            lambda s: s.count >= expected,
            timeout=30,
        )
        rows = [(f"deployment {MODEL}", summary)]
        for service in stack.SERVICES:
            rows.append((f"ferry-{service}", monitor.get_latency_summary(service=f"ferry-{service}", start=self.began)))
        console.print(latency_table("latency since the demo began (monitor's DDSketch, ±0.5%)", rows))
        silent = [label for label, s in rows if s.count == 0]
        if silent:
            console.print(f"[yellow]![/yellow] no spans yet from: {', '.join(silent)}")
        else:
            console.print("[green]✓[/green] spans from every service reached monitor (OTLP, the services' default)")
        points = monitor.list_latency_series(deployment=MODEL, start=self.began)
        busy = [p.summary for p in points if p.summary.count]
        console.print(
            f"  ListLatencySeries: {len(points)} points of 10 s, {len(busy)} with requests "
            f"(peak p99 {max((s.p99_ms for s in busy), default=0.0):.2f} ms)"
        )
        if self.deploy_trace_id:
            trace = poll(
                lambda: find_trace(monitor, self.deploy_trace_id),
                lambda t: t is not None and {s.service for s in t.spans} >= {"ferry-serve", "ferry-registry"},
                timeout=30,
            )
            console.print(trace_table(trace))
            services = sorted({s.service for s in trace.spans})
            console.print(
                f"[green]✓[/green] GetTrace({self.deploy_trace_id}): CreateDeployment across {', '.join(services)} "
                f"({len(trace.spans)} spans)"
            )
        trace = poll(lambda: find_trace(monitor, self.trace_id), lambda t: t is not None and t.spans, timeout=30)
        console.print(trace_table(trace))
        console.print(f"[green]✓[/green] GetTrace({self.trace_id}): the tritonclient call, as serve recorded it")

    # 8-10. canary, promote, rollback

    def canary(self) -> None:
        self.c.serve.update_deployment(MODEL, canary=(self.second, 20))
        counts = self.traffic(200)
        console.print(
            f"[green]✓[/green] canary v{self.second} at 20%: {counts[self.second]} of 200 requests, "
            f"production v{self.first}: {counts[self.first]}"
        )
        by_route = poll(
            lambda: [
                (f"route {route}", self.c.monitor.get_latency_summary(deployment=MODEL, route=route, start=self.began))
                for route in ("primary", "canary")
            ],
            lambda rows: rows[1][1].count >= counts[self.second],
            timeout=30,
        )
        console.print(latency_table("latency per route (monitor)", by_route))

    def promote(self) -> None:
        registry, serve = self.c.registry, self.c.serve
        alias = registry.set_alias(
            ALIAS, self.second, expected_version=self.first, reason=f"promote canary v{self.second}"
        )
        console.print(
            f"[green]✓[/green] SetAlias(production, v{self.second}, expected_version={self.first}): "
            f"revision {alias.revision}"
        )
        started = time.perf_counter()
        self.wait_serving(self.second)
        serve.update_deployment(MODEL, canary=None)
        console.print(
            f"[green]✓[/green] serve loaded v{self.second} as the primary and switched in "
            f"{time.perf_counter() - started:.1f}s; canary removed (UpdateDeployment canary=None)"
        )
        counts = self.traffic(40)
        console.print(f"  40 requests: {dict(sorted(counts.items()))} (version: requests)")

    def rollback(self) -> None:
        registry = self.c.registry
        started = time.perf_counter()
        rolled = registry.rollback_alias(ALIAS, reason=f"v{self.second} answers look wrong")
        self.wait_serving(self.first)
        console.print(
            f"[green]✓[/green] RollbackAlias(production) -> v{rolled.version}; serve answers with "
            f"v{self.first} again after {time.perf_counter() - started:.1f}s (zero-downtime swap)"
        )
        table = Table("revision", "kind", "from", "to", "actor", "reason", title="alias audit log (production)")
        events = [e for e in registry.list_alias_events(MODEL) if e.alias == ALIAS]
        for event in events[-6:]:
            table.add_row(
                str(event.revision),
                registry_pb2.AliasEventKind.Name(event.kind).removeprefix("ALIAS_EVENT_KIND_"),
                str(event.from_version or "-"),
                str(event.to_version or "-"),
                event.actor,
                event.reason,
            )
        console.print(table)

    def traffic(self, requests: int) -> Counter[int]:
        counts: Counter[int] = Counter()
        for index in range(requests):
            counts[self.send(self.held_out.iloc[index % len(self.held_out)])] += 1
        return counts

    def wait_serving(self, version: int, timeout: float = 120) -> None:
        probe = self.held_out.head(1).drop(columns=["target"])
        deadline = time.monotonic() + timeout
        while int(self.c.serve.predict(MODEL, probe).attrs["model_version"]) != version:
            if time.monotonic() > deadline:
                raise errors.DeadlineExceeded(f"serve did not switch to version {version} within {timeout:.0f}s")
            time.sleep(0.1)

    # 11. feedback

    def feedback(self) -> None:
        monitor = self.c.monitor
        pending = dict(self.truth)
        matched = 0
        deadline = time.monotonic() + 30
        while pending:  # serve sends its samples off the request path, in batches
            response = monitor.record_feedback(pending)
            matched += int(response.accepted_count)
            unknown = set(response.unknown_request_ids)
            pending = {rid: truth for rid, truth in pending.items() if rid in unknown}
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        console.print(
            f"[green]✓[/green] RecordFeedback: ground truth for {len(self.truth)} requests "
            f"({matched} matched{f', {len(pending)} unknown' if pending else ''})"
        )
        title = "accuracy from feedback (monitor)"
        table = Table("version", "requests answered", "labeled rows", "accuracy", title=title)
        self.accuracy: dict[int, float] = {}
        for version in (self.first, self.second):
            report = monitor.get_performance(MODEL, version=version, start=self.began)
            self.accuracy[version] = report.accuracy
            table.add_row(f"v{version}", str(self.served[version]), str(report.labeled_count), f"{report.accuracy:.3f}")
        console.print(table)
        better = max(self.accuracy, key=lambda v: self.accuracy[v])
        console.print(f"  the ground truth agrees with the rollback: v{better} is the better model")

    # 12. drift

    def drift(self) -> None:
        monitor = self.c.monitor
        since = datetime.datetime.now(datetime.UTC)
        drifted = shifted(self.c.ingest.read_dataset_frame(self.clean.name))  # every row, as a new harvest
        for start in range(0, len(drifted), 20):
            self.c.serve.predict(MODEL, drifted.iloc[start : start + 20].drop(columns=["target"]))
        console.print(
            f"  sent {len(drifted)} rows of a shifted harvest: {', '.join(SHIFTED)} "
            "(alcohol +1.5, colour intensity x1.8 and so its band, malic acid x0.5)"
        )
        report = poll(
            lambda: monitor.get_drift_report(MODEL, version=self.first, start=since),
            lambda r: r.sample_count >= len(drifted),
            timeout=30,
            retry_on=(errors.FailedPrecondition,),  # no sample recorded yet in the window
        )
        table = Table("feature", "test", "statistic", "p-value", "threshold", "drifted", title="drift report")
        for feature in sorted(report.features, key=lambda f: (not f.drifted, f.feature)):
            method = drift_method_name(feature.method)
            table.add_row(
                feature.feature,
                method,
                f"{feature.statistic:.3f}",
                f"{feature.p_value:.3g}" if feature.p_value else "",
                f"{feature.threshold:.3g}",
                "[red]yes[/red]" if feature.drifted else "no",
            )
        console.print(table)
        names = [f.feature for f in report.features if f.drifted]
        console.print(
            f"[green]✓[/green] GetDriftReport({report.model_version}) over {report.sample_count} live samples vs "
            f"{report.reference_dataset_version} split {report.reference_split!r}: "
            f"{'drifted' if report.drifted else 'no drift'}"
        )
        caught = [name for name in SHIFTED if name in names]
        others = [name for name in names if name not in SHIFTED]
        console.print(
            f"  shifted features flagged: {len(caught)} of {len(SHIFTED)} ({', '.join(caught) or 'none'}); "
            f"other features flagged: {', '.join(others) or 'none'}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timings", type=pathlib.Path, help="also write each step's wall time here (JSON)")
    args = parser.parse_args(argv)
    os.environ.setdefault("FERRY_STATE_DIR", os.path.abspath(".ferry/demo"))
    clock = StepClock(console)
    console.rule("[bold]Ferry demo")
    console.print(f"state directory: {stack.state_dir()}  (delete it to start from scratch)")
    code = 1
    clients: Clients | None = None
    try:
        with clock.step("start", "0. start the stack: five services, five processes"):
            with console.status("starting the five services..."):
                # In waves (stack.WAVES): serve re-applies its deployments at start and train
                # checks data at Create, both through the registry and ingest.
                started = stack.start_all(timeout=120.0)
            for result in started:
                where = f"{result.address:<16} pid {result.pid:<7}"
                console.print(f"[green]✓[/green] ferry-{result.service:<9} {where} {result.health}")
        clients = Clients(stack.addresses())
        Walk(clients, clock).run()
        code = 0
    except stack.StackError as exc:
        console.print(f"[red]✗ {exc}[/red]")
    except errors.FerryError as exc:
        console.print(f"[red]✗ {exc}[/red]  (logs: {stack.state_dir() / 'logs'})")
    finally:
        if clients is not None:
            clients.close()
        with clock.step("stop", "13. stop the stack"):
            stack.stop_many(stack.SERVICES)
            console.print("[green]✓[/green] stack stopped (SIGTERM to all five, graceful drain, each reaped)")
    console.print(clock.summary())
    if args.timings is not None:
        clock.write(args.timings, exit_code=code)
    console.rule("[bold green]done" if code == 0 else "[bold red]failed")
    return code


if __name__ == "__main__":
    sys.exit(main())
