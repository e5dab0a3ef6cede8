"""``make demo``: the Ferry lifecycle on a real public dataset, on embedded defaults.

Starts the five services as separate processes (SQLite files and a local object
store under ``.ferry/demo``), then, through the public gRPC contracts only (the
typed clients of ``ferry_sdk``):

1. ingest: uploads scikit-learn's bundled wine dataset (178 rows, 13 features) as a
   CSV, shows its profile, uploads it again (same version: content-addressed), and
   applies a recipe (rename + stratified train/validation/test split);
2. a model trained elsewhere: reads the train split back from ingest, fits a small
   PyTorch softmax classifier with the scaling inside the graph, exports ONNX (one
   tensor per raw feature column) and uploads it to the registry with lineage;
3. registry: points ``production`` at it with compare-and-set, registers a second
   (worse) version, moves ``production`` to it (a stale compare-and-set is refused
   with ABORTED), rolls back in one call, checks the restored version in
   onnxruntime, and prints the alias audit log;

then stops the stack gracefully (SIGTERM to all five at once; each is reaped).
Training through ``train``, serving through Triton and monitoring join this walk as
those services land.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys
import tempfile
import time
import warnings
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from ferry.registry.v1 import registry_pb2
from ferry_sdk import IngestClient, RegistryClient, errors, stack

console = Console()
DATASET = "wine"
MODEL = "wine-cultivar"


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


def wine_csv() -> bytes:
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    return frame.to_csv(index=False).encode()


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


def train_elsewhere(train: Any, validation: Any, features: list[str], target: str, epochs: int) -> tuple[bytes, float]:
    """A model trained outside Ferry: softmax regression with scaling in the graph."""
    import numpy as np
    import torch

    torch.manual_seed(0)
    x = torch.tensor(np.column_stack([train[c].to_numpy() for c in features]), dtype=torch.float32)
    y = torch.tensor(train[target].to_numpy(), dtype=torch.long)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    classes = int(y.max()) + 1

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)
            self.linear = torch.nn.Linear(len(features), classes)

        def forward(self, *columns: torch.Tensor) -> torch.Tensor:
            z = (torch.cat(columns, dim=1) - self.mean) / self.std
            return torch.softmax(self.linear(z), dim=1)

    model = Classifier()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    columns = [x[:, i : i + 1] for i in range(len(features))]
    for _ in range(epochs):
        optimiser.zero_grad()
        loss = torch.nn.functional.nll_loss(torch.log(model(*columns) + 1e-9), y)
        loss.backward()
        optimiser.step()

    vx = torch.tensor(np.column_stack([validation[c].to_numpy() for c in features]), dtype=torch.float32)
    vy = torch.tensor(validation[target].to_numpy(), dtype=torch.long)
    with torch.no_grad():
        accuracy = float((model(*[vx[:, i : i + 1] for i in range(len(features))]).argmax(1) == vy).float().mean())

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # The TorchScript exporter handles the variadic one-tensor-per-column signature.
        warnings.simplefilter("ignore", DeprecationWarning)
        path = pathlib.Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            tuple(columns),
            str(path),
            input_names=features,
            output_names=["probabilities"],
            dynamic_axes={**{f: {0: "batch"} for f in features}, "probabilities": {0: "batch"}},
            external_data=False,
            dynamo=False,
        )
        return path.read_bytes(), accuracy


def upload_model(
    registry: RegistryClient,
    artifact: bytes,
    features: list[str],
    accuracy: float,
    epochs: int,
    dataset_version: str,
) -> registry_pb2.ModelVersion:
    return registry.upload_model_version(
        MODEL,
        artifact,
        format="onnx",
        request_id=f"demo-{MODEL}-{epochs}",
        description=f"softmax regression, {epochs} epochs",
        signature=registry_pb2.ModelSignature(
            inputs=[registry_pb2.TensorSpec(name=f, datatype="FP32", shape=[-1, 1]) for f in features],
            outputs=[registry_pb2.TensorSpec(name="probabilities", datatype="FP32", shape=[-1, 3])],
        ),
        metrics={"val_accuracy": accuracy},
        params={"epochs": epochs, "seed": 0, "learning_rate": 0.01},
        lineage={"dataset_version": dataset_version, "split": "train", "code_revision": "demo"},
    )


def lifecycle(ingest: IngestClient, registry: RegistryClient) -> None:
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

    step("2. a model trained elsewhere, uploaded to the registry")
    train = ingest.read_dataset_frame(clean.name, split="train")
    validation = ingest.read_dataset_frame(clean.name, split="validation")
    features = [c for c in train.columns if c != "target"]
    with contextlib.suppress(errors.AlreadyExists):  # a second run of the demo
        registry.create_model(MODEL, description="wine cultivar classifier", labels={"team": "demo"})
    versions = []
    for epochs in (300, 3):
        started = time.perf_counter()
        artifact, accuracy = train_elsewhere(train, validation, features, "target", epochs)
        registered = upload_model(registry, artifact, features, accuracy, epochs, clean.name)
        versions.append(registered.version)
        console.print(
            f"[green]✓[/green] {registered.name}: {epochs} epochs, val_accuracy {accuracy:.3f}, "
            f"{registered.artifact.size_bytes} bytes ONNX, sha256 {registered.artifact.sha256[:12]}… "
            f"({time.perf_counter() - started:.1f}s)"
        )

    step("3. registry: aliases with compare-and-set, rollback, audit")
    alias = f"models/{MODEL}/aliases/production"
    first, second = versions
    current = _current(registry, alias)
    registry.set_alias(alias, first, expected_version=current, reason="first release")
    console.print(f"[green]✓[/green] production -> v{first}")
    registry.set_alias(alias, second, expected_version=first, reason="retrained on a shorter schedule")
    console.print(f"[green]✓[/green] production -> v{second} (compare-and-set from v{first})")
    try:
        registry.set_alias(alias, first, expected_version=first, reason="stale writer")
    except errors.Aborted as exc:
        console.print(f"[yellow]![/yellow] a stale compare-and-set is refused: {exc}")
    rolled = registry.rollback_alias(alias, reason="v2 validation accuracy regressed")
    console.print(f"[green]✓[/green] one-call rollback: production -> v{rolled.version}")
    resolved = registry.resolve_alias(alias)
    console.print(f"  ResolveAlias(production) = {resolved.name}, trained on {resolved.lineage.dataset_version}")
    test = ingest.read_dataset_frame(clean.name, split="test")
    accuracy = score_downloaded(registry, resolved.name, test, features)
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


def score_downloaded(registry: RegistryClient, name: str, test: Any, features: list[str]) -> float:
    """Fetch an artifact back through the registry (sha256 checked) and run it as serving would."""
    import numpy as np
    import onnxruntime

    artifact = registry.download_model_version(name)
    session = onnxruntime.InferenceSession(artifact, providers=["CPUExecutionProvider"])
    inputs = {f: test[f].to_numpy(dtype=np.float32).reshape(-1, 1) for f in features}
    (probabilities,) = session.run(["probabilities"], inputs)
    return float((probabilities.argmax(axis=1) == test["target"].to_numpy()).mean())


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
        with IngestClient(addresses["ingest"]) as ingest, RegistryClient(addresses["registry"]) as registry:
            lifecycle(ingest, registry)
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
