"""``make demo``: the Ferry lifecycle on a real public dataset, on embedded defaults.

Starts the five services as separate processes (SQLite files and a local object
store under ``.ferry/demo``), then, through the public gRPC contracts only (the
typed clients of ``ferry_sdk``):

1. ingest: uploads scikit-learn's bundled wine dataset (178 rows, 13 features, plus a
   categorical colour band) as a CSV, shows its profile, uploads it again (same
   version: content-addressed), and applies a recipe (rename + stratified
   train/validation/test split);
2. train: two training jobs through ``TrainService`` (``ferry_sdk.TrainClient``) on the
   train split, validated on the validation split, followed live epoch by epoch; each
   worker exports ONNX (the pre-processing inside the graph, one tensor per raw feature
   column) and registers a model version with its lineage, metrics and signature. The
   second job, one epoch at a small learning rate, plays the worse model. A second run
   of the demo gets the same jobs back (``request_id``) and replays their events;
3. registry: points ``production`` at the first version with compare-and-set, moves it
   to the worse one (a stale compare-and-set is refused with ABORTED), rolls back in
   one call, checks the restored version in onnxruntime on the test split, and prints
   the alias audit log;

then stops the stack gracefully (SIGTERM to all five at once; each is reaped).
4. serve: a deployment follows ``production``; predictions through serve's Triton
   protocol (``ServeClient.predict`` on a DataFrame); the alias moves and rolls back under
   it (zero-downtime swaps); a 20% canary;

Monitoring joins this walk when that service lands.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from ferry.registry.v1 import registry_pb2
from ferry.train.v1 import train_pb2
from ferry_sdk import IngestClient, RegistryClient, ServeClient, TrainClient, errors, stack

console = Console()
DATASET = "wine"
MODEL = "wine-cultivar"


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


def wine_csv() -> bytes:
    import pandas as pd
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    # A categorical column, as tabular data usually has one: the trained graph one-hot encodes
    # it, and serving sends it as a BYTES tensor.
    bands = pd.cut(frame["color_intensity"], [0.0, 3.0, 6.0, float("inf")], labels=["pale", "medium", "deep"])
    frame.insert(frame.columns.get_loc("color_intensity") + 1, "colour_band", bands.astype(str))
    data: bytes = frame.to_csv(index=False).encode()
    return data


def upload_dataset(ingest: IngestClient, data: bytes, request_id: str) -> Any:
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("uploading wine.csv", total=len(data))
        return ingest.upload_dataset(
            DATASET,
            data,
            format="csv",
            description="UCI wine recognition data (scikit-learn bundle)",
            labels={"source": "sklearn", "domain": "chemistry"},
            request_id=request_id,
            progress=lambda done, _total: progress.update(task, completed=done),
        )


def show_profile(ingest: IngestClient, name: str) -> None:
    profile = ingest.get_profile(name)
    table = Table("column", "type", "nulls", "min", "mean", "max", "p50", title=f"profile of {name}")
    for column in profile.columns:
        numeric = column.numeric
        median = next((q.value for q in numeric.quantiles if abs(q.quantile - 0.5) < 1e-9), float("nan"))
        table.add_row(
            column.name,
            column.type,
            str(column.null_count),
            f"{numeric.min:.3g}",
            f"{numeric.mean:.3g}",
            f"{numeric.max:.3g}",
            f"{median:.3g}",
        )
    console.print(table)


# Two configurations of the built-in MLP: a proper run, and a short one that plays the worse model.
JOBS: tuple[dict[str, Any], ...] = (
    {"job_id": "wine-mlp-30", "hidden_units": (32, 16), "max_epochs": 30, "learning_rate": 0.01},
    {"job_id": "wine-mlp-1", "hidden_units": (4,), "max_epochs": 1, "learning_rate": 1e-4},
)


def run_training_job(train: TrainClient, config: dict[str, Any], dataset_version: str) -> train_pb2.TrainingJob:
    """Create a job (idempotent: a second run of the demo gets the same job back) and follow it live."""
    started = time.perf_counter()
    job_id = f"{config['job_id']}-v{dataset_version.rsplit('/', 1)[-1]}"
    job = train.create_training_job(
        job_id,
        dataset_version=dataset_version,
        target="target",
        task="classification",
        hidden_units=config["hidden_units"],
        dropout=0.0,
        max_epochs=config["max_epochs"],
        batch_size=32,
        learning_rate=config["learning_rate"],
        seed=0,
        register_model=MODEL,
        code_revision="demo",
        request_id=f"demo-{job_id}",
    )
    if job.state in (train_pb2.TrainingJob.STATE_FAILED, train_pb2.TrainingJob.STATE_CANCELLED):
        job = train.resume_training_job(job.name)  # an earlier run of the demo stopped it: continue it
    state = train_pb2.TrainingJob.State.Name(job.state).removeprefix("STATE_")
    console.print(f"  {job.name}: {state}, {config['max_epochs']} epochs, hidden {list(config['hidden_units'])}")
    with Progress(
        TextColumn("  [progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[metrics]}"),
        console=console,
    ) as progress:
        label = f"{job_id} epochs"
        bar = progress.add_task(label, total=config["max_epochs"], metrics="")
        for event in train.watch_training_job(job.name):  # ends once the job is final
            if event.HasField("epoch"):
                metrics = "  ".join(f"{k} {v:.3f}" for k, v in sorted(event.epoch.metrics.items()))
                progress.update(bar, completed=event.epoch.epoch + 1, metrics=metrics)
                progress.console.print(f"    epoch {event.epoch.epoch:>2}  {metrics}")
            elif event.HasField("state_change"):
                change = event.state_change
                name = train_pb2.TrainingJob.State.Name(change.state).removeprefix("STATE_")
                progress.console.print(f"    [dim]{name}{': ' + change.message if change.message else ''}[/dim]")
    finished = train.wait_for(job.name, timeout=600)  # TrainingJobFailed (naming the job) if it failed
    console.print(
        f"[green]✓[/green] {job.name} -> {finished.model_version}: val_accuracy "
        f"{finished.metrics['val_accuracy']:.3f} ({time.perf_counter() - started:.1f}s)"
    )
    return finished


def lifecycle(ingest: IngestClient, registry: RegistryClient, train: TrainClient, serve: ServeClient) -> None:
    step("1. ingest: upload, profile, deduplicate, recipe")
    data = wine_csv()
    version = upload_dataset(ingest, data, request_id="demo-wine-upload")
    console.print(
        f"[green]✓[/green] {version.name}: {version.row_count} rows, {len(version.schema.fields)} columns, "
        f"sha256 {version.sha256[:12]}…, stored at {version.uri}"
    )
    show_profile(ingest, version.name)
    again = upload_dataset(ingest, data, request_id="demo-wine-upload-again")
    console.print(f"[green]✓[/green] same bytes uploaded again -> {again.name} (no duplicate version)")

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
    clean = ingest.transform_dataset(version.name, "wine-clean", recipe)
    splits = ", ".join(f"{s.name}={s.row_count}" for s in clean.splits)
    console.print(f"[green]✓[/green] {clean.name} from {clean.lineage.parent}: splits {splits}")

    step("2. train: two training jobs, followed live, registered on success")
    with contextlib.suppress(errors.AlreadyExists):  # a second run of the demo
        registry.create_model(MODEL, description="wine cultivar classifier", labels={"team": "demo"})
    versions = []
    for config in JOBS:
        finished = run_training_job(train, config, clean.name)
        registered = registry.get_model_version(finished.model_version)
        versions.append(registered.version)
        console.print(
            f"  {registered.name}: {registered.artifact.size_bytes} bytes ONNX, sha256 "
            f"{registered.artifact.sha256[:12]}…, lineage {registered.lineage.training_job} on "
            f"{registered.lineage.dataset_version} ({registered.lineage.split})"
        )
    step("3. registry: aliases with compare-and-set, rollback, audit")
    alias = f"models/{MODEL}/aliases/production"
    first, second = versions
    current = _current(registry, alias)
    registry.set_alias(alias, first, expected_version=current, reason="first release")
    console.print(f"[green]✓[/green] production -> v{first}")
    registry.set_alias(alias, second, expected_version=first, reason="retrained on a one-epoch schedule")
    console.print(f"[green]✓[/green] production -> v{second} (compare-and-set from v{first})")
    try:
        registry.set_alias(alias, first, expected_version=first, reason="stale writer")
    except errors.Aborted as exc:
        console.print(f"[yellow]![/yellow] a stale compare-and-set is refused: {exc}")
    rolled = registry.rollback_alias(alias, reason=f"v{second} validation accuracy regressed")
    console.print(f"[green]✓[/green] one-call rollback: production -> v{rolled.version}")
    resolved = registry.resolve_alias(alias)
    console.print(f"  ResolveAlias(production) = {resolved.name}, trained on {resolved.lineage.dataset_version}")
    test = ingest.read_dataset_frame(clean.name, split="test")
    accuracy = score_downloaded(registry, resolved, test)
    console.print(
        f"[green]✓[/green] DownloadModelVersion({resolved.name}) runs in onnxruntime: "
        f"test accuracy {accuracy:.3f} on the held-out split"
    )
    table = Table("revision", "alias", "kind", "from", "to", "actor", "reason", title="alias audit log")
    for event in registry.list_alias_events(MODEL):
        table.add_row(
            str(event.revision),
            event.alias.rsplit("/", 1)[-1],
            registry_pb2.AliasEventKind.Name(event.kind).removeprefix("ALIAS_EVENT_KIND_"),
            str(event.from_version or "-"),
            str(event.to_version or "-"),
            event.actor,
            event.reason,
        )
    console.print(table)
    serving(serve, registry, test, versions)


def serving(serve: ServeClient, registry: RegistryClient, test: Any, versions: list[int]) -> None:
    """Deploy the model behind Triton, predict through the gateway, and move the alias under it."""
    step("4. serve: a deployment follows production; Triton answers through the gateway")
    alias = f"models/{MODEL}/aliases/production"
    try:
        serve.get_deployment(MODEL)
    except errors.NotFound:
        started = time.perf_counter()
        serve.create_deployment(model=MODEL)  # follows the alias "production"
        console.print(
            f"[green]✓[/green] deployments/{MODEL} created ({time.perf_counter() - started:.1f}s to load and warm)"
        )
    deployment = serve.wait_ready(MODEL, timeout=180)
    console.print(f"  {deployment.message}")
    sample = test.sample(6, random_state=0)  # rows of every cultivar
    rows = sample.drop(columns=["target"])
    answered = serve.predict(MODEL, rows, classes=None)
    table = Table("row", "truth", "label (served)", title=f"predictions of version {answered.attrs['model_version']}")
    for index, (truth, label) in enumerate(zip(sample["target"], answered["label"], strict=True)):
        table.add_row(str(index), str(truth), str(label))
    console.print(table)
    console.print(f"  request id {answered.attrs['request_id']} (what monitor's feedback matches on)")
    first, second = versions
    current = int(registry.get_alias(alias).version)
    other = second if current == first else first
    registry.set_alias(alias, other, expected_version=current, reason="demo: swap under the gateway")
    started = time.perf_counter()
    while int(serve.predict(MODEL, rows.head(1)).attrs["model_version"]) != other:
        time.sleep(0.1)
    console.print(
        f"[green]✓[/green] production -> v{other}: serve loaded, warmed and switched to it in "
        f"{time.perf_counter() - started:.1f}s (zero-downtime swap)"
    )
    registry.rollback_alias(alias, reason="demo: back to the better model")
    while int(serve.predict(MODEL, rows.head(1)).attrs["model_version"]) != current:
        time.sleep(0.1)
    console.print(f"[green]✓[/green] rolled back: serve answers with v{current} again")
    serve.update_deployment(MODEL, canary=(other, 20))
    counts: dict[int, int] = {}
    for _ in range(200):
        version = int(serve.predict(MODEL, rows.head(1)).attrs["model_version"])
        counts[version] = counts.get(version, 0) + 1
    console.print(
        f"[green]✓[/green] canary v{other} at 20%: {counts.get(other, 0)} of 200 requests, "
        f"v{current}: {counts.get(current, 0)}"
    )
    serve.update_deployment(MODEL, canary=None)


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


def _current(registry: RegistryClient, alias: str) -> int:
    try:
        return int(registry.get_alias(alias).version)
    except errors.NotFound:
        return 0


def main() -> int:
    os.environ.setdefault("FERRY_STATE_DIR", os.path.abspath(".ferry/demo"))
    console.rule("[bold]Ferry demo")
    console.print(f"state directory: {stack.state_dir()}  (delete it to start from scratch)")
    try:
        step("0. start the stack: five services, five processes")
        with console.status("starting the five services..."):
            started = stack.start_all(stack.SERVICES)
        for result in started:
            console.print(
                f"[green]✓[/green] ferry-{result.service:<9} {result.address:<16} pid {result.pid:<7} {result.health}"
            )
        addresses = stack.addresses()
        with (
            IngestClient(addresses["ingest"]) as ingest,
            RegistryClient(addresses["registry"]) as registry,
            TrainClient(addresses["train"]) as train,
            ServeClient(addresses["serve"]) as serve,
        ):
            lifecycle(ingest, registry, train, serve)
    except stack.StackError as exc:
        console.print(f"[red]✗ {exc}[/red]")
        return 1
    except errors.FerryError as exc:
        console.print(f"[red]✗ {exc}[/red]  (logs: {stack.state_dir() / 'logs'})")
        return 1
    finally:
        stopping = time.monotonic()
        stack.stop_many(stack.SERVICES)
        console.print(f"stack stopped in {time.monotonic() - stopping:.1f}s (SIGTERM to all five, graceful drain)")
    console.rule("[bold green]done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
