"""Ingest use cases (no grpc): uploads, imports, transforms, reads.

Blocking work (Arrow, SQL, object store) runs in worker threads; the event loop only
moves chunks and waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import pathlib
import time
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ferry_common.database import DatabaseRunner
from ferry_common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from ferry_common.logs import get_logger
from ferry_common.names import shorten
from ferry_common.objectstore import ObjectStore
from ferry_common.settings import S3Settings
from ferry_common.streams import iterate_in_thread
from ferry_ingest.config import IngestConfig
from ferry_ingest.convert import Converted, ConvertOptions, convert
from ferry_ingest.domain import (
    DataFormat,
    Dataset,
    DatasetVersion,
    Lineage,
    SchemaField,
    VersionDraft,
    version_key,
)
from ferry_ingest.memory import release_free_memory
from ferry_ingest.objects import PreparedObject, open_object_source, prepare_object
from ferry_ingest.readback import encode
from ferry_ingest.recipe import Recipe, content_hash
from ferry_ingest.spool import Spool
from ferry_ingest.sql_import import SqlImport, check_query, parse_url, raw_url_problem
from ferry_ingest.store import DatasetStore
from ferry_ingest.transform import run_recipe
from ferry_ingest.workspace import Workspace
from ferry_ingest.writer import PendingVersion, commit_version, delete_version, profile_key, split_key
from ferry_profile import Profile

__all__ = ["ImportProgress", "IngestService", "NewVersion", "SqlSource", "UploadHeader"]

T = TypeVar("T")
_log = get_logger("ferry.ingest")
_END = object()
_EXTENSIONS = {
    "csv": DataFormat.CSV,
    "parquet": DataFormat.PARQUET,
    "pq": DataFormat.PARQUET,
    "jsonl": DataFormat.JSONL,
    "ndjson": DataFormat.JSONL,
}


@dataclass(frozen=True)
class NewVersion:
    """What every way of creating a version carries besides its data."""

    dataset_id: str
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    request_id: str = ""


@dataclass(frozen=True)
class UploadHeader(NewVersion):
    format: DataFormat = DataFormat.CSV
    delimiter: str = ","


@dataclass(frozen=True)
class SqlSource:
    """What an import reads: a named connection of the operator's, or (where allowed) a raw URL."""

    query: str
    connection: str = ""
    url: str = ""


@dataclass
class ImportProgress:
    rows: int = 0
    bytes: int = 0


def _schema_fields(profile: Profile) -> tuple[SchemaField, ...]:
    return tuple(SchemaField(c.name, c.type, c.null_count > 0) for c in profile.columns)


class IngestService:
    """The use cases behind ``ferry.ingest.v1.IngestService``."""

    def __init__(
        self,
        store: DatasetStore,
        runner: DatabaseRunner,
        objects: ObjectStore,
        config: IngestConfig,
        s3: S3Settings,
        workspace: Workspace,
    ) -> None:
        self.store = store
        # Every store call goes through the runner: off the event loop, and a lost
        # database is UNAVAILABLE (never INTERNAL).
        self.db = runner
        self.objects = objects
        self.config = config
        self.s3 = s3
        self.workspace = workspace

    # ------------------------------------------------------------------ reads

    async def get_dataset(self, dataset_id: str) -> Dataset:
        return await self.db.read(self.store.get_dataset, dataset_id)

    async def list_datasets(
        self, page_size: int, after: str | None, labels: Mapping[str, str]
    ) -> tuple[list[Dataset], str | None]:
        return await self.db.read(self.store.list_datasets, page_size, after, labels)

    async def get_version(self, dataset_id: str, version: int | None) -> DatasetVersion:
        return await self.db.read(self.store.get_version, dataset_id, version)

    async def list_versions(
        self, dataset_id: str, page_size: int, before: int | None
    ) -> tuple[list[DatasetVersion], int | None]:
        return await self.db.read(self.store.list_versions, dataset_id, page_size, before)

    async def delete_version(self, dataset_id: str, version: int) -> None:
        # The row goes first, so a crash leaves objects without a row (removed at the
        # next start: see ferry_ingest.writer), never a visible version without its data.
        await self.db.write(delete_version, self.store, self.objects, dataset_id, version)

    def _object_key(self, found: DatasetVersion, split: str, relkey: str = "data.parquet") -> str:
        if split and split not in {s.name for s in found.splits}:
            names = ", ".join(s.name for s in found.splits) or "none"
            raise NotFound(f"split: {found.name} has no split {split!r} (splits: {names})", field="split")
        return version_key(found.dataset_id, found.version, split_key(split) if split else relkey)

    async def get_profile(self, dataset_id: str, version: int | None, split: str) -> tuple[DatasetVersion, Profile]:
        found = await self.get_version(dataset_id, version)
        self._object_key(found, split)
        key = version_key(found.dataset_id, found.version, profile_key(split))

        def load() -> Profile:
            data = b"".join(self.objects.iter_chunks(key))
            return Profile.from_json_dict(json.loads(data))

        return found, await asyncio.to_thread(load)

    async def read(
        self, dataset_id: str, version: int | None, columns: list[str], split: str, fmt: DataFormat
    ) -> AsyncIterator[bytes]:
        """The version's (or split's) rows as Parquet or CSV bytes."""
        found = await self.get_version(dataset_id, version)
        key = self._object_key(found, split)
        names = [f.name for f in found.schema]
        for name in columns:
            if name not in names:
                raise InvalidArgument(
                    f"columns: column {name!r} not found in {found.name} (columns: {', '.join(names)})",
                    field="columns",
                )
        chunk = self.config.read_chunk_bytes
        if fmt is DataFormat.PARQUET and not columns:
            chunks = await asyncio.to_thread(self.objects.iter_chunks, key, chunk)
            async for data in iterate_in_thread(chunks):
                yield data
            return
        with self.workspace.job() as work:
            async with _local_file(self.objects, key, work) as path:
                async for data in iterate_in_thread(encode(path, fmt, columns, chunk)):
                    yield data

    # ----------------------------------------------------------------- writes

    async def _existing(self, request: NewVersion, sha256: str = "") -> DatasetVersion | None:
        if not request.request_id and not sha256:
            return None
        return await self.db.read(
            self.store.find_version, request.dataset_id, sha256=sha256, request_id=request.request_id
        )

    async def _tentative_key(self, dataset_id: str) -> tuple[int, str]:
        number = await self.db.read(self.store.next_version, dataset_id)
        return number, version_key(dataset_id, number, "data.parquet")

    def _draft(self, request: NewVersion, sha256: str, profile: Profile, lineage: Lineage) -> VersionDraft:
        return VersionDraft(
            dataset_id=request.dataset_id,
            sha256=sha256,
            row_count=profile.row_count,
            schema=_schema_fields(profile),
            lineage=lineage,
            description=request.description,
            labels=dict(request.labels),
            request_id=request.request_id,
        )

    async def _commit(self, pending: PendingVersion) -> DatasetVersion:
        try:
            version, _created = await self.db.write(commit_version, self.store, self.objects, pending)
        finally:
            pending.discard()
            # Big requests leave freed heap behind; give it back so resident memory stays flat.
            await asyncio.to_thread(release_free_memory)
        return version

    async def upload(self, header: UploadHeader, chunks: AsyncIterator[bytes]) -> DatasetVersion:
        """A version from a stream of source bytes (UploadDataset)."""
        if (existing := await self._existing(header)) is not None:
            return existing
        lineage = Lineage(source_format=header.format)
        options = ConvertOptions("chunk", header.delimiter, self.config.infer_bytes, self.config.max_distinct)
        return await self._ingest_stream(header, header.format, chunks, options, lineage, ImportProgress())

    async def _ingest_stream(
        self,
        request: NewVersion,
        fmt: DataFormat,
        chunks: AsyncIterator[bytes],
        options: ConvertOptions,
        lineage: Lineage,
        progress: ImportProgress,
    ) -> DatasetVersion:
        tentative, key = await self._tentative_key(request.dataset_id)
        with self.workspace.job() as work:
            spool = Spool(work / "source")
            # The S3 upload of data.parquet starts at once and follows the file it
            # comes from: the spool itself for Parquet (stored as uploaded), the
            # growing conversion output otherwise.
            staged: list[PreparedObject] = []
            if fmt is DataFormat.PARQUET:
                staged.append(prepare_object(self.objects, "data.parquet", spool.path, key, spool))

            def on_output(output: Spool) -> None:
                while staged:
                    staged.pop().discard_stage()
                staged.append(prepare_object(self.objects, "data.parquet", output.path, key, output))

            def on_rows(rows: int) -> None:
                progress.rows = rows

            follow = on_output if fmt is not DataFormat.PARQUET and self.objects.stages_ahead else None
            converting = asyncio.ensure_future(asyncio.to_thread(convert, spool, fmt, work, options, on_rows, follow))
            started = time.perf_counter()
            try:
                await self._receive(chunks, spool, converting, progress, options.field)
                received = time.perf_counter()
                converted: Converted = await converting
            except BaseException as exc:
                spool.fail(exc)
                with contextlib.suppress(BaseException):
                    await converting
                for prepared in staged:
                    await asyncio.to_thread(prepared.discard_stage)
                raise
            sha256 = spool.sha256()
            pending = PendingVersion(
                self._draft(request, sha256, converted.profile, lineage),
                [staged[-1] if staged else prepare_object(self.objects, "data.parquet", converted.path, key)],
                {profile_key(): converted.profile},
                tentative,
            )
            if (existing := await self._existing(request, sha256)) is not None:
                await asyncio.to_thread(pending.discard)
                return existing
            converted_at = time.perf_counter()
            version = await self._commit(pending)
            _log.debug(
                "ingested",
                dataset=request.dataset_id,
                version=version.version,
                bytes=spool.size,
                received_s=round(received - started, 3),
                converted_s=round(converted_at - received, 3),
                committed_s=round(time.perf_counter() - converted_at, 3),
            )
            return version

    async def _receive(
        self,
        chunks: AsyncIterator[bytes],
        spool: Spool,
        converting: asyncio.Future[Converted],
        progress: ImportProgress,
        field_name: str,
    ) -> None:
        limit = self.config.max_upload_bytes
        async for chunk in chunks:
            if converting.done():
                break  # the source is already known to be malformed: stop reading it
            if limit and spool.size + len(chunk) > limit:
                raise ResourceExhausted(
                    f"{field_name}: the source is larger than {limit} bytes (FERRY_INGEST_MAX_UPLOAD_BYTES)",
                    field=field_name,
                )
            await asyncio.to_thread(spool.write, chunk)
            progress.bytes = spool.size
        spool.close()

    async def import_object(
        self, request: NewVersion, uri: str, fmt: DataFormat | None
    ) -> AsyncIterator[ImportProgress | DatasetVersion]:
        """A version from an object URI (ImportDataset), with progress."""
        if (existing := await self._existing(request)) is not None:
            yield existing
            return
        source = await asyncio.to_thread(
            open_object_source, uri, self.s3, self.config.import_file_roots, self.config.import_s3_buckets
        )
        if fmt is None:
            fmt = _EXTENSIONS.get(source.extension)
            if fmt is None:
                raise InvalidArgument(
                    f"object.format: cannot tell the format of {uri!r} from its extension; set object.format",
                    field="object.format",
                )
        options = ConvertOptions("object.uri", ",", self.config.infer_bytes, self.config.max_distinct)
        progress = ImportProgress()
        job = self._ingest_stream(
            request,
            fmt,
            iterate_in_thread(source.chunks),
            options,
            Lineage(source_uri=uri, source_format=fmt),
            progress,
        )
        async for event in _with_progress(job, progress):
            yield event

    async def import_sql(
        self, request: NewVersion, source: SqlSource
    ) -> AsyncIterator[ImportProgress | DatasetVersion]:
        """A version from a read-only SQL query (ImportDataset), with progress."""
        query = check_query(source.query)
        job = self._sql_job(source, query)
        if (existing := await self._existing(request)) is not None:
            yield existing
            return
        progress = ImportProgress()
        # A named connection is recorded by name: its URL is the operator's business.
        origin = f"connection:{source.connection}" if source.connection else job.redacted_url
        lineage = Lineage(source_uri=origin, source_query=query)
        async for event in _with_progress(self._ingest_sql(request, job, lineage, progress), progress):
            yield event

    def _sql_job(self, source: SqlSource, query: str) -> SqlImport:
        """The import of ``query`` from the database ``source`` names, if the operator allows it.

        Named connections come from FERRY_INGEST_CONNECTIONS_FILE. A raw ``sql.url`` is
        refused unless FERRY_INGEST_ALLOW_SQL_URLS is on, and even then when it could
        reach the server's own files or sockets (sqlite, a local socket, ...).
        """
        batch, distinct = self.config.sql_batch_rows, self.config.max_distinct
        timeout = self.config.sql_statement_timeout_seconds
        if source.connection:
            found = self.config.sql_connections.get(source.connection)
            if found is None:
                names = ", ".join(sorted(self.config.sql_connections)) or "none"
                raise NotFound(
                    f"sql.connection: no connection named {shorten(source.connection)} (configured: {names})",
                    field="sql.connection",
                )
            return SqlImport(
                found.url,
                query,
                batch,
                distinct,
                timeout_seconds=timeout,
                source_field="sql.connection",
                source_name=repr(found.name),
            )
        url = parse_url(source.url)
        problem = raw_url_problem(url)
        if problem is not None:
            raise PermissionDenied(
                f"sql.url: refused: {problem}; ask the operator for a named connection (sql.connection)",
                field="sql.url",
            )
        if not self.config.allow_sql_urls:
            raise FailedPrecondition(
                "sql.url: this server does not accept database URLs in requests; use sql.connection "
                "(a connection configured in FERRY_INGEST_CONNECTIONS_FILE), or have the operator set "
                "FERRY_INGEST_ALLOW_SQL_URLS=true",
                field="sql.url",
            )
        return SqlImport(url, query, batch, distinct, timeout_seconds=timeout)

    async def _ingest_sql(
        self, request: NewVersion, job: SqlImport, lineage: Lineage, progress: ImportProgress
    ) -> DatasetVersion:
        tentative, key = await self._tentative_key(request.dataset_id)
        cancelled = False

        def on_progress(rows: int, size: int) -> None:
            if cancelled:
                raise asyncio.CancelledError
            progress.rows, progress.bytes = rows, size

        with self.workspace.job() as work:
            out = work / "data.parquet"
            try:
                _schema, profile = await asyncio.to_thread(job.run, out, on_progress)
            except asyncio.CancelledError:
                cancelled = True
                raise
            # An import's content hash is that of the Parquet it produced (there are
            # no source bytes): the same rows read the same way give the same hash.
            sha256 = await asyncio.to_thread(_file_sha256, out)
            if (existing := await self._existing(request, sha256)) is not None:
                return existing
            pending = PendingVersion(
                self._draft(request, sha256, profile, lineage),
                [prepare_object(self.objects, "data.parquet", out, key)],
                {profile_key(): profile},
                tentative,
            )
            return await self._commit(pending)

    async def transform(
        self, request: NewVersion, source_id: str, source_version: int | None, recipe: Recipe
    ) -> DatasetVersion:
        """A version made by applying ``recipe`` to a source version (TransformDataset)."""
        parent = await self.get_version(source_id, source_version)
        schema_names = [f.name for f in parent.schema]
        if not schema_names:
            raise InvalidArgument(f"source: {parent.name} has no columns", field="source")
        sha256 = content_hash(parent.sha256, recipe)
        if (existing := await self._existing(request, sha256)) is not None:
            return existing
        tentative, _key = await self._tentative_key(request.dataset_id)
        with self.workspace.job() as work:
            parent_key = version_key(parent.dataset_id, parent.version, "data.parquet")
            async with _local_file(self.objects, parent_key, work) as parent_path:
                output = await asyncio.to_thread(
                    run_recipe,
                    parent_path,
                    recipe,
                    work,
                    max_distinct=self.config.max_distinct,
                    max_rows=self.config.transform_max_rows,
                )
            draft = self._draft(request, sha256, output.profile, Lineage(parent=parent.name, recipe=recipe))
            draft.split_rows = tuple((s.name, s.profile.row_count) for s in output.splits)
            objects = [
                prepare_object(
                    self.objects,
                    "data.parquet",
                    output.path,
                    version_key(request.dataset_id, tentative, "data.parquet"),
                ),
                *(
                    prepare_object(
                        self.objects,
                        split_key(s.name),
                        s.path,
                        version_key(request.dataset_id, tentative, split_key(s.name)),
                    )
                    for s in output.splits
                ),
            ]
            profiles = {profile_key(): output.profile, **{profile_key(s.name): s.profile for s in output.splits}}
            return await self._commit(PendingVersion(draft, objects, profiles, tentative))


@contextlib.asynccontextmanager
async def _local_file(objects: ObjectStore, key: str, scratch: pathlib.Path) -> AsyncIterator[pathlib.Path]:
    """``objects.open_local``, its blocking enter and exit (a download, a removal) in a thread."""
    opened = objects.open_local(key, scratch)
    path = await asyncio.to_thread(opened.__enter__)
    try:
        yield path
    except BaseException as exc:
        if not await asyncio.to_thread(opened.__exit__, type(exc), exc, exc.__traceback__):
            raise
    else:
        await asyncio.to_thread(opened.__exit__, None, None, None)


def _file_sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


async def _with_progress(
    job: Coroutine[Any, Any, DatasetVersion], progress: ImportProgress, interval: float = 0.5
) -> AsyncIterator[ImportProgress | DatasetVersion]:
    """Run ``job`` and yield progress snapshots, then its version."""
    task = asyncio.ensure_future(job)
    last = (-1, -1)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=interval)
            snapshot = (progress.rows, progress.bytes)
            if snapshot != last and (not done or task.exception() is None):
                last = snapshot
                yield ImportProgress(*snapshot)
            if done:
                yield task.result()
                return
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
