"""``make demo``: the Ferry lifecycle on a real public dataset, on embedded defaults.

Starts the five services as separate processes (SQLite files and a local object
store under ``.ferry/demo``), then, through the public gRPC contracts only:

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

then stops the stack gracefully. Training through ``train``, serving through Triton
and monitoring join this walk as those services land.
"""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from typing import Any

import grpc
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from ferry.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from ferry.registry.v1 import registry_pb2, registry_pb2_grpc
from ferry_sdk import stack

console = Console()
CHUNK = 64 * 1024
DATASET = "wine"
MODEL = "wine-cultivar"


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


def wine_csv() -> bytes:
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    return frame.to_csv(index=False).encode()


def upload_dataset(stub: ingest_pb2_grpc.IngestServiceStub, data: bytes, request_id: str) -> Any:
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("uploading wine.csv", total=len(data))

        def messages() -> Iterator[ingest_pb2.UploadDatasetRequest]:
            yield ingest_pb2.UploadDatasetRequest(
                header=ingest_pb2.UploadDatasetHeader(
                    dataset_id=DATASET,
                    format=ingest_pb2.DATA_FORMAT_CSV,
                    description="UCI wine recognition data (scikit-learn bundle)",
                    labels={"source": "sklearn", "domain": "chemistry"},
                    request_id=request_id,
                )
            )
            for start in range(0, len(data), CHUNK):
                chunk = data[start : start + CHUNK]
                progress.advance(task, len(chunk))
                yield ingest_pb2.UploadDatasetRequest(chunk=chunk)

        return stub.UploadDataset(messages(), timeout=120)


def show_profile(stub: ingest_pb2_grpc.IngestServiceStub, name: str) -> None:
    profile = stub.GetProfile(ingest_pb2.GetProfileRequest(name=name), timeout=30)
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


def read_split(stub: ingest_pb2_grpc.IngestServiceStub, name: str, split: str) -> Any:
    import pyarrow.parquet as pq

    chunks = stub.ReadDataset(ingest_pb2.ReadDatasetRequest(name=name, split=split), timeout=60)
    return pq.read_table(io.BytesIO(b"".join(message.chunk for message in chunks)))


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
    stub: registry_pb2_grpc.RegistryServiceStub,
    artifact: bytes,
    features: list[str],
    accuracy: float,
    epochs: int,
    dataset_version: str,
) -> Any:
    header = registry_pb2.UploadModelVersionHeader(
        parent=f"models/{MODEL}",
        request_id=f"demo-{MODEL}-{epochs}",
        model_version=registry_pb2.ModelVersion(
            description=f"softmax regression, {epochs} epochs",
            artifact=registry_pb2.Artifact(
                format=registry_pb2.ARTIFACT_FORMAT_ONNX, sha256=hashlib.sha256(artifact).hexdigest()
            ),
            signature=registry_pb2.ModelSignature(
                inputs=[registry_pb2.TensorSpec(name=f, datatype="FP32", shape=[-1, 1]) for f in features],
                outputs=[registry_pb2.TensorSpec(name="probabilities", datatype="FP32", shape=[-1, 3])],
            ),
            metrics={"val_accuracy": accuracy},
            params={"epochs": str(epochs), "seed": "0", "learning_rate": "0.01"},
            lineage=registry_pb2.Lineage(dataset_version=dataset_version, split="train", code_revision="demo"),
        ),
    )

    def messages() -> Iterator[registry_pb2.UploadModelVersionRequest]:
        yield registry_pb2.UploadModelVersionRequest(header=header)
        for start in range(0, len(artifact), CHUNK):
            yield registry_pb2.UploadModelVersionRequest(chunk=artifact[start : start + CHUNK])

    return stub.UploadModelVersion(messages(), timeout=60)


def lifecycle(addresses: dict[str, str]) -> None:
    ingest = ingest_pb2_grpc.IngestServiceStub(grpc.insecure_channel(addresses["ingest"]))
    registry = registry_pb2_grpc.RegistryServiceStub(grpc.insecure_channel(addresses["registry"]))

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

    recipe = ingest_pb2.Recipe(
        steps=[
            ingest_pb2.RecipeStep(
                rename=ingest_pb2.RenameStep(columns={"od280/od315_of_diluted_wines": "od280_od315"})
            ),
            ingest_pb2.RecipeStep(
                split=ingest_pb2.SplitStep(
                    fractions=[
                        ingest_pb2.SplitFraction(name="train", fraction=0.7),
                        ingest_pb2.SplitFraction(name="validation", fraction=0.15),
                        ingest_pb2.SplitFraction(name="test", fraction=0.15),
                    ],
                    seed=42,
                    stratify_column="target",
                )
            ),
        ]
    )
    clean = ingest.TransformDataset(
        ingest_pb2.TransformDatasetRequest(source=version.name, dataset_id="wine-clean", recipe=recipe), timeout=60
    )
    splits = ", ".join(f"{s.name}={s.row_count}" for s in clean.splits)
    console.print(f"[green]✓[/green] {clean.name} from {clean.lineage.parent}: splits {splits}")

    step("2. a model trained elsewhere, uploaded to the registry")
    train = read_split(ingest, clean.name, "train").to_pandas()
    validation = read_split(ingest, clean.name, "validation").to_pandas()
    features = [c for c in train.columns if c != "target"]
    try:
        registry.CreateModel(
            registry_pb2.CreateModelRequest(
                model_id=MODEL,
                model=registry_pb2.Model(description="wine cultivar classifier", labels={"team": "demo"}),
            ),
            timeout=10,
        )
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
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
    registry.SetAlias(
        registry_pb2.SetAliasRequest(name=alias, version=first, expected_version=current, reason="first release"),
        timeout=10,
    )
    console.print(f"[green]✓[/green] production -> v{first}")
    registry.SetAlias(
        registry_pb2.SetAliasRequest(
            name=alias, version=second, expected_version=first, reason="retrained on a shorter schedule"
        ),
        timeout=10,
    )
    console.print(f"[green]✓[/green] production -> v{second} (compare-and-set from v{first})")
    try:
        registry.SetAlias(
            registry_pb2.SetAliasRequest(name=alias, version=first, expected_version=first, reason="stale writer"),
            timeout=10,
        )
    except grpc.RpcError as exc:
        console.print(f"[yellow]![/yellow] a stale compare-and-set is refused: {exc.code().name}: {exc.details()}")
    rolled = registry.RollbackAlias(
        registry_pb2.RollbackAliasRequest(name=alias, reason="v2 validation accuracy regressed"), timeout=10
    )
    console.print(f"[green]✓[/green] one-call rollback: production -> v{rolled.version}")
    resolved = registry.ResolveAlias(registry_pb2.ResolveAliasRequest(name=alias), timeout=10)
    console.print(f"  ResolveAlias(production) = {resolved.name}, trained on {resolved.lineage.dataset_version}")
    accuracy = score_downloaded(registry, resolved.name, read_split(ingest, clean.name, "test").to_pandas(), features)
    console.print(
        f"[green]✓[/green] DownloadModelVersion({resolved.name}) runs in onnxruntime: "
        f"test accuracy {accuracy:.3f} on the held-out split"
    )
    events = registry.ListAliasEvents(registry_pb2.ListAliasEventsRequest(parent=f"models/{MODEL}"), timeout=10)
    table = Table("revision", "alias", "kind", "from", "to", "actor", "reason", title="alias audit log")
    for event in events.events:
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


def score_downloaded(
    registry: registry_pb2_grpc.RegistryServiceStub, name: str, test: Any, features: list[str]
) -> float:
    """Fetch an artifact back through the registry and run it as serving would."""
    import numpy as np
    import onnxruntime

    stream = registry.DownloadModelVersion(registry_pb2.DownloadModelVersionRequest(name=name), timeout=60)
    artifact = b"".join(message.chunk for message in stream)
    session = onnxruntime.InferenceSession(artifact, providers=["CPUExecutionProvider"])
    inputs = {f: test[f].to_numpy(dtype=np.float32).reshape(-1, 1) for f in features}
    (probabilities,) = session.run(["probabilities"], inputs)
    return float((probabilities.argmax(axis=1) == test["target"].to_numpy()).mean())


def _current(registry: registry_pb2_grpc.RegistryServiceStub, alias: str) -> int:
    try:
        return int(registry.GetAlias(registry_pb2.GetAliasRequest(name=alias), timeout=10).version)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return 0
        raise


def main() -> int:
    os.environ.setdefault("FERRY_STATE_DIR", os.path.abspath(".ferry/demo"))
    console.rule("[bold]Ferry demo")
    console.print(f"state directory: {stack.state_dir()}  (delete it to start from scratch)")
    try:
        step("0. start the stack: five services, five processes")
        for name in stack.SERVICES:
            with console.status(f"starting ferry-{name}..."):
                result = stack.start(name)
            console.print(f"[green]✓[/green] ferry-{name:<9} {result.address:<16} pid {result.pid:<7} {result.health}")
        lifecycle(stack.addresses())
    except stack.StackError as exc:
        console.print(f"[red]✗ {exc}[/red]")
        return 1
    except grpc.RpcError as exc:
        console.print(f"[red]✗ {exc.code().name}: {exc.details()}[/red]  (logs: {stack.state_dir() / 'logs'})")
        return 1
    finally:
        for name in reversed(stack.SERVICES):
            stack.stop(name)
        console.print("stack stopped (SIGTERM, graceful drain)")
    console.rule("[bold green]done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
