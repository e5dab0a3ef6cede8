"""The typed clients, sync and asyncio, against real registry and ingest processes."""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ferry.ingest.v1 import ingest_pb2
from ferry.registry.v1 import registry_pb2
from ferry_sdk import RegistryClient, errors

MIB = 1024 * 1024


class OnlyRead:
    """A binary stream that can only be read (no seek, no size, no name): a pipe, a socket."""

    def __init__(self, data: bytes) -> None:
        self._buffer = io.BytesIO(data)

    def read(self, size: int = -1, /) -> bytes:
        return self._buffer.read(size)


def as_input(kind: str, data: bytes, tmp_path: pathlib.Path, suffix: str) -> Any:
    """``data`` as the upload input of ``kind``."""
    if kind == "path":
        path = tmp_path / f"input{suffix}"
        path.write_bytes(data)
        return path
    if kind == "str path":
        path = tmp_path / f"input{suffix}"
        path.write_bytes(data)
        return str(path)
    if kind == "bytes":
        return data
    if kind == "file":
        return io.BytesIO(data)
    if kind == "stream":
        return OnlyRead(data)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["path", "str path", "bytes", "file", "stream"])
def test_model_artifact_uploads_from_each_input_kind_and_downloads_back(
    registry: Any, tmp_path: pathlib.Path, new_id: Callable[[str], str], kind: str
) -> None:
    model = registry.create_model(new_id("upload"), description="artifacts", labels={"suite": "sdk"})
    artifact = os.urandom(2 * MIB + 12345)  # three 1 MiB chunks
    seen: list[tuple[int, int | None]] = []

    version = registry.upload_model_version(
        model.name,
        as_input(kind, artifact, tmp_path, ".onnx"),
        metrics={"auc": 0.91},
        params={"seed": 7},
        lineage={"dataset_version": "datasets/wine/versions/1", "split": "train"},
        progress=lambda done, total: seen.append((done, total)),
    )

    assert version.name == f"{model.name}/versions/1"
    assert version.artifact.sha256 == hashlib.sha256(artifact).hexdigest()
    assert version.artifact.size_bytes == len(artifact)
    assert version.artifact.format == registry_pb2.ARTIFACT_FORMAT_ONNX
    assert dict(version.params) == {"seed": "7"} and version.lineage.split == "train"
    total = None if kind == "stream" else len(artifact)
    assert seen == [(MIB, total), (2 * MIB, total), (len(artifact), total)]

    assert registry.download_model_version(version.name) == artifact
    target = tmp_path / "out" / "model.onnx"
    received: list[int] = []
    written = registry.download_model_version(version.name, target, progress=lambda done, total: received.append(done))
    assert written == target and target.read_bytes() == artifact
    assert received[-1] == len(artifact)
    assert [p.name for p in target.parent.iterdir()] == ["model.onnx"]  # no temporary file left


def test_a_failing_read_is_raised_as_itself_and_registers_nothing(registry: Any, new_id: Callable[[str], str]) -> None:
    class Broken(OnlyRead):
        calls = 0

        def read(self, size: int = -1, /) -> bytes:
            self.calls += 1
            if self.calls > 1:
                raise OSError("disk went away")
            return super().read(size)

    model = registry.create_model(new_id("broken"))
    with pytest.raises(OSError, match="disk went away"):
        registry.upload_model_version(model.name, Broken(os.urandom(3 * MIB)))
    assert list(registry.list_model_versions(model.name)) == []


def test_model_version_lifecycle_and_aliases(registry: Any, new_id: Callable[[str], str]) -> None:
    model_id = new_id("churn")
    model = registry.create_model(model_id, description="who leaves", labels={"team": "risk"})
    assert registry.get_model(model_id) == model
    updated = registry.update_model(model_id, description="who leaves, monthly")
    assert (updated.description, dict(updated.labels)) == ("who leaves, monthly", {"team": "risk"})

    first = registry.upload_model_version(model_id, b"one", format="onnx", request_id="r1")
    again = registry.upload_model_version(model_id, b"one", format="onnx", request_id="r1")
    assert again.name == first.name  # request_id made it idempotent
    second = registry.create_model_version(
        model_id, registry_pb2.Artifact(uri="s3://b/k", sha256="ab" * 32, size_bytes=3, format="ARTIFACT_FORMAT_ONNX")
    )
    assert registry.get_model_version(f"{model.name}/versions/latest").version == second.version == 2
    assert registry.update_model_version(second.name, metrics={"auc": 0.8}).metrics["auc"] == pytest.approx(0.8)

    production = f"{model.name}/aliases/production"
    registry.set_alias(production, 1, expected_version=0, reason="first")
    registry.set_alias(production, 2, expected_version=1, reason="second")
    assert registry.resolve_alias(production).version == 2
    assert registry.rollback_alias(production, reason="regressed").version == 1
    aliases = registry.batch_set_aliases({production: 2, f"{model.name}/aliases/staging": 1}, reason="release")
    assert [(a.name.rsplit("/", 1)[-1], a.version) for a in aliases] == [("production", 2), ("staging", 1)]
    assert [a.version for a in registry.list_aliases(model_id)] == [2, 1]
    events = list(registry.list_alias_events(model_id, page_size=2))
    assert [e.reason for e in events] == ["first", "second", "regressed", "release", "release"]
    assert [e.kind for e in events][2] == registry_pb2.ALIAS_EVENT_KIND_ROLLBACK

    registry.delete_alias(f"{model.name}/aliases/staging", expected_version=1)
    registry.delete_model_version(first.name)
    assert [v.version for v in registry.list_model_versions(model_id)] == [2]


def test_list_methods_iterate_every_page_lazily(
    registry: Any, make_client: Callable[..., Any], new_id: Callable[[str], str]
) -> None:
    tag = new_id("page")
    names = {registry.create_model(new_id("m"), labels={"suite": tag}).name for _ in range(5)}
    assert {m.name for m in registry.list_models(filter=f"labels.suite={tag}", page_size=2)} == names

    # Nothing is called until the caller iterates: a listing of a dead server fails on the first item.
    nowhere = make_client("registry", "127.0.0.1:1", timeout=2)
    models = nowhere.list_models()
    with pytest.raises(errors.Unavailable):
        next(iter(models))


@pytest.mark.parametrize("kind", ["path", "bytes", "file", "stream", "dataframe"])
def test_dataset_uploads_from_each_input_kind_and_reads_back(
    ingest: Any, tmp_path: pathlib.Path, new_id: Callable[[str], str], kind: str
) -> None:
    frame = pd.DataFrame(
        {
            "id": range(3000),
            "score": [i / 7 for i in range(3000)],
            "kind": [("a", "b", "c")[i % 3] for i in range(3000)],
        }
    )
    csv = frame.to_csv(index=False).encode()
    parquet = io.BytesIO()
    frame.to_parquet(parquet, index=False)
    # The kinds without a file name are parquet, to show the format is recognised by content.
    data = frame if kind == "dataframe" else (csv if kind == "path" else parquet.getvalue())
    source = data if kind == "dataframe" else as_input(kind, data, tmp_path, ".csv")
    seen: list[int] = []

    version = ingest.upload_dataset(
        new_id("rows"),
        source,
        format="parquet" if kind == "stream" else None,
        description="sdk test",
        progress=lambda done, total: seen.append(done),
    )

    expected_format = ingest_pb2.DATA_FORMAT_CSV if kind == "path" else ingest_pb2.DATA_FORMAT_PARQUET
    assert version.lineage.source_format == expected_format
    assert version.row_count == 3000 and [f.name for f in version.schema.fields] == ["id", "score", "kind"]
    if kind != "dataframe":
        assert version.sha256 == hashlib.sha256(data).hexdigest() and seen[-1] == len(data)
    pd.testing.assert_frame_equal(ingest.read_dataset_frame(version.name), frame, check_dtype=False)
    pd.testing.assert_frame_equal(
        ingest.read_dataset_frame(version.name, columns=["kind"]), frame[["kind"]], check_dtype=False
    )
    written = ingest.read_dataset(version.name, tmp_path / "back.parquet")
    assert pq.read_table(written).num_rows == 3000
    as_csv = ingest.read_dataset(version.name, format="csv", columns=["id"])
    assert pd.read_csv(io.BytesIO(as_csv))["id"].tolist() == list(range(3000))


def test_dataset_versions_transform_profile_and_delete(ingest: Any, new_id: Callable[[str], str]) -> None:
    dataset = new_id("wine")
    rows = "x,label\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(100))
    first = ingest.upload_dataset(dataset, rows.encode(), format="csv", labels={"team": "sdk"})
    assert ingest.get_dataset(dataset).latest_version == 1
    assert ingest.get_dataset_version(f"datasets/{dataset}/versions/latest").name == first.name
    assert any(d.name == f"datasets/{dataset}" for d in ingest.list_datasets(filter="labels.team=sdk", page_size=1))

    recipe = {
        "steps": [
            {"split": {"fractions": [{"name": "train", "fraction": 0.8}, {"name": "test", "fraction": 0.2}], "seed": 1}}
        ]
    }
    split = ingest.transform_dataset(first.name, dataset, recipe)
    assert split.lineage.parent == first.name
    assert {s.name: s.row_count for s in split.splits} == {"train": 80, "test": 20}
    assert ingest.get_profile(split.name, split="train").row_count == 80
    assert len(ingest.read_dataset_frame(split.name, split="test")) == 20
    assert [v.version for v in ingest.list_dataset_versions(dataset, page_size=1)] == [2, 1]

    ingest.delete_dataset_version(split.name)
    assert [v.version for v in ingest.list_dataset_versions(dataset)] == [1]


def test_import_dataset_from_an_object_reports_progress(
    ingest: Any, import_dir: pathlib.Path, new_id: Callable[[str], str]
) -> None:
    source = import_dir / f"{new_id('landing')}.csv"
    source.write_text("id,city\n" + "".join(f"{i},c{i % 4}\n" for i in range(5000)))
    progress: list[ingest_pb2.ImportProgress] = []

    version = ingest.import_dataset(
        new_id("imported"), uri=source.as_uri(), labels={"from": "landing"}, progress=progress.append
    )

    assert version.row_count == 5000 and version.lineage.source_uri == source.as_uri()
    assert version.lineage.source_format == ingest_pb2.DATA_FORMAT_CSV  # from the extension
    assert all(isinstance(p, ingest_pb2.ImportProgress) for p in progress)
    assert [p.rows for p in progress] == sorted(p.rows for p in progress)
    with pytest.raises(ValueError, match="either uri"):
        ingest.import_dataset(new_id("imported"))


def test_a_table_of_pyarrow_is_not_mistaken_for_a_file(ingest: Any, new_id: Callable[[str], str]) -> None:
    with pytest.raises(TypeError, match="cannot upload a Table"):
        ingest.upload_dataset(new_id("arrow"), pa.table({"a": [1]}))
    with pytest.raises(TypeError, match="binary mode"):
        ingest.upload_dataset(new_id("text"), io.StringIO("a\n1\n"))


def test_a_tracer_provider_records_client_spans_and_carries_the_trace(
    make_client: Callable[..., Any], registry_process: Any, new_id: Callable[[str], str]
) -> None:
    # Blocking clients refused a tracer_provider with a TypeError until OpenTelemetry's
    # interceptor was applied through its own grpcext.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = make_client("registry", registry_process.address, tracer_provider=provider)
    model_id = new_id("traced")
    with provider.get_tracer("test").start_as_current_span("notebook cell") as parent:
        registry.create_model(model_id, labels={"run": model_id})
        registry.upload_model_version(model_id, b"weights", format="onnx")  # a client stream
        assert [m.name for m in registry.list_models(filter=f"labels.run={model_id}")] == [f"models/{model_id}"]
    spans = {span.name: span for span in exporter.get_finished_spans()}
    service = "/ferry.registry.v1.RegistryService/"
    for method in ("CreateModel", "UploadModelVersion", "ListModels"):
        span = spans[service + method]
        assert span.kind is SpanKind.CLIENT
        assert span.context.trace_id == parent.get_span_context().trace_id
        assert span.status.is_ok


def test_a_traced_blocking_watch_can_still_be_cancelled_from_another_thread(
    registry_process: Any, new_id: Callable[[str], str]
) -> None:
    provider = TracerProvider()
    with RegistryClient(registry_process.address, tracer_provider=provider) as registry:
        model_id = new_id("quiet")
        registry.create_model(model_id)
        watch = registry.watch_aliases(model_id)  # nothing will happen on it
        threading.Timer(1.0, watch.cancel).start()
        started = time.monotonic()
        assert list(watch) == []
        assert time.monotonic() - started < 30
