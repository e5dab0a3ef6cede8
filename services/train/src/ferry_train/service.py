"""Train's use cases: create, read, cancel, resume and watch jobs; render manifests.

No grpc here. Jobs run elsewhere (:mod:`ferry_train.scheduler` starts worker processes);
this module only changes their recorded state and reads their events.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from ferry.ingest.v1 import ingest_pb2
from ferry_common.database import DatabaseRunner
from ferry_common.errors import FailedPrecondition, FerryError, InvalidArgument, NotFound, Unavailable
from ferry_common.names import shorten
from ferry_common.pagination import Pages
from ferry_sdk import errors as sdk_errors
from ferry_train.entry_point import ENTRY_POINT_FIELD, decode_init_args
from ferry_train.manifest import JobManifestSpec, ManifestSettings, render_pytorchjob, to_yaml
from ferry_train.spec import JobSpec
from ferry_train.store.base import (
    CANCELLED,
    CANCELLING,
    FAILED,
    QUEUED,
    RUNNING,
    TERMINAL,
    Job,
    JobEvent,
    TrainStore,
)

__all__ = ["DatasetReader", "JobPage", "Machine", "TrainService", "local_machine"]

_WATCH_BATCH = 500
_INGEST_TIMEOUT = 30.0  # profiles are stored objects: reading one may wait on the object store
# Importing a user's module (with torch and Lightning) in a fresh interpreter: a few seconds.
_ENTRY_POINT_CHECK_TIMEOUT = 120.0


class DatasetReader(Protocol):
    """What Create reads of ingest to check a job's data (``ferry_sdk.aio.IngestClient``)."""

    async def get_dataset_version(self, name: str, *, timeout: float | None = None) -> ingest_pb2.DatasetVersion: ...

    async def get_profile(self, name: str, *, split: str = "", timeout: float | None = None) -> ingest_pb2.Profile: ...


def _from_ingest(error: sdk_errors.FerryError, field: str) -> FerryError:
    """Ingest's answer about ``field`` as train's own domain error."""
    if isinstance(error, sdk_errors.NotFound):
        return NotFound(f"{field}: {error.message}", field=field)
    if isinstance(error, sdk_errors.InvalidArgument):
        return InvalidArgument(f"{field}: {error.message}", field=field)
    if isinstance(error, sdk_errors.Unavailable | sdk_errors.DeadlineExceeded):
        return Unavailable(f"ingest cannot be reached to check {field}: {error.message}")
    return FailedPrecondition(f"{field}: ingest answered {error}", field=field)


def _one_class(column: ingest_pb2.ColumnProfile, rows: int) -> bool:
    """Fewer than two distinct non-null values (a numeric column: its min equals its max)."""
    if rows - column.null_count <= 0:
        return True
    if column.HasField("categorical"):
        return column.categorical.distinct_count < 2
    if column.HasField("numeric"):
        return column.numeric.min == column.numeric.max
    return False


@dataclass(frozen=True)
class Machine:
    """What this machine can run: CPU cores and CUDA devices."""

    cpus: int
    gpus: int


def local_machine() -> Machine:
    """Probe this machine (imports torch to count CUDA devices)."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return Machine(cpus=os.cpu_count() or 1, gpus=gpus)


@dataclass(frozen=True)
class JobPage:
    items: list[Job]
    next_page_token: str


class TrainService:
    """Training jobs as resources with a state and an event log.

    Args:
        store: the jobs database.
        runner: runs blocking store calls off the event loop.
        machine: probes the machine once, on the first job that needs it.
        poll_seconds: how often watchers look for new events.
        on_change: called after a job was queued or asked to stop (wakes the scheduler).
        manifest_settings: what rendered PyTorchJobs carry (addresses, object store).
        datasets: ingest, to refuse a job whose data cannot train before it is stored;
            ``None`` skips those checks (the worker still makes them).
    """

    def __init__(
        self,
        store: TrainStore,
        runner: DatabaseRunner,
        *,
        machine: Callable[[], Machine] = local_machine,
        poll_seconds: float = 0.5,
        on_change: Callable[[], None] | None = None,
        manifest_settings: ManifestSettings | None = None,
        datasets: DatasetReader | None = None,
    ) -> None:
        self._manifest_settings = manifest_settings
        self._datasets = datasets
        self._store = store
        self._runner = runner
        self._probe = machine
        self._machine: Machine | None = None
        self._probing: asyncio.Task[Machine] | None = None
        self._poll = poll_seconds
        self._on_change = on_change
        self._draining = asyncio.Event()

    @property
    def store(self) -> TrainStore:
        return self._store

    def set_on_change(self, callback: Callable[[], None]) -> None:
        self._on_change = callback

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    async def start(self) -> None:
        """Probe the machine in the background (importing torch takes seconds), ahead of the first Create."""
        self._probing = asyncio.create_task(asyncio.to_thread(self._probe))

    async def _machine_facts(self) -> Machine:
        if self._machine is None:
            probing = self._probing or asyncio.create_task(asyncio.to_thread(self._probe))
            self._probing = probing
            self._machine = await probing
        return self._machine

    async def _check_machine(self, spec: JobSpec) -> None:
        resources = spec.resources
        machine = await self._machine_facts()
        field = "training_job.resources.devices"
        if resources.accelerator == "gpu":
            if machine.gpus == 0:
                raise FailedPrecondition(
                    "training_job.resources.accelerator: 'gpu' asked, but this machine has no CUDA device",
                    field="training_job.resources.accelerator",
                )
            if resources.devices > machine.gpus:
                raise FailedPrecondition(
                    f"{field}: {resources.devices} GPUs asked, this machine has {machine.gpus}", field=field
                )
        elif resources.accelerator == "cpu" and resources.devices > machine.cpus:
            raise FailedPrecondition(
                f"{field}: {resources.devices} CPU devices asked, this machine has {machine.cpus} cores", field=field
            )
        elif resources.accelerator == "auto" and resources.devices > max(machine.gpus, machine.cpus):
            raise FailedPrecondition(
                f"{field}: {resources.devices} devices asked, more than this machine has", field=field
            )

    async def _check_model(self, spec: JobSpec) -> None:
        """A custom entry point imports, is a LightningModule and takes its ``init_args``.

        Checked in a fresh interpreter of the service's environment (the worker's), see
        :mod:`ferry_train.pipeline.custom`.
        """
        if spec.custom is None:
            return
        init_args = decode_init_args(dict(spec.custom.init_args))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ferry_train.pipeline.custom",
            spec.custom.entry_point,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(
                process.communicate(json.dumps(init_args).encode()), _ENTRY_POINT_CHECK_TIMEOUT
            )
        except TimeoutError:
            raise InvalidArgument(
                f"{ENTRY_POINT_FIELD}: importing {spec.custom.entry_point!r} took longer than "
                f"{_ENTRY_POINT_CHECK_TIMEOUT:.0f} s",
                field=ENTRY_POINT_FIELD,
            ) from None
        finally:
            # Also when the call is cancelled (client deadline, disconnect): a module that
            # hangs while importing must not leave its interpreter behind.
            if process.returncode is None:
                process.kill()
                await asyncio.shield(process.wait())
        try:
            verdict = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            # The module ended the interpreter while importing (sys.exit, a crash).
            tail = err.decode(errors="replace").strip()[-300:]
            raise InvalidArgument(
                f"{ENTRY_POINT_FIELD}: importing {spec.custom.entry_point!r} ended the interpreter "
                f"(exit code {process.returncode}): {tail}",
                field=ENTRY_POINT_FIELD,
            ) from None
        if not verdict.get("ok"):
            field = str(verdict.get("field") or ENTRY_POINT_FIELD)
            raise InvalidArgument(str(verdict.get("message")), field=field)

    async def _check_data(self, spec: JobSpec) -> None:
        """The version, its splits and the columns exist, and the target can train the task."""
        if self._datasets is None:
            return
        field = "training_job.dataset_version"
        try:
            version = await self._datasets.get_dataset_version(spec.dataset_version, timeout=_INGEST_TIMEOUT)
        except sdk_errors.FerryError as error:
            raise _from_ingest(error, field) from None
        available = [split.name for split in version.splits]
        for split, split_field in (
            (spec.training_split, "training_job.training_split"),
            (spec.validation_split, "training_job.validation_split"),
        ):
            if split not in available:
                raise NotFound(
                    f"{split_field}: {version.name} has no split {split!r} (splits: {available or 'none'})",
                    field=split_field,
                )
        field = "training_job.training_split"
        try:
            profile = await self._datasets.get_profile(version.name, split=spec.training_split, timeout=_INGEST_TIMEOUT)
        except sdk_errors.FerryError as error:
            raise _from_ingest(error, field) from None
        columns = {column.name: column for column in profile.columns}
        field = "training_job.target"
        target = columns.get(spec.target)
        if target is None:
            raise InvalidArgument(
                f"{field}: column {spec.target!r} not found in {version.name} (columns: {list(columns)})", field=field
            )
        for index, feature in enumerate(spec.features):
            if feature not in columns:
                feature_field = f"training_job.features[{index}]"
                raise InvalidArgument(
                    f"{feature_field}: column {feature!r} not found in {version.name} (columns: {list(columns)})",
                    field=feature_field,
                )
        if spec.task == "regression" and not target.HasField("numeric"):
            raise InvalidArgument(
                f"{field}: column {spec.target!r} is {target.type}; regression needs a numeric target", field=field
            )
        if spec.task == "classification" and _one_class(target, profile.row_count):
            raise InvalidArgument(
                f"{field}: column {spec.target!r} has fewer than two classes in split {spec.training_split!r}",
                field=field,
            )

    # ---------------------------------------------------------------- jobs

    async def create(self, job_id: str, spec: JobSpec, request_id: str | None) -> Job:
        """Queue a job (an id is generated when ``job_id`` is empty); the same ``request_id`` returns it again.

        Raises:
            NotFound: the dataset version or a split does not exist (the error names the field).
            InvalidArgument: a column is unknown, or the target cannot train the task.
            FailedPrecondition: the machine lacks the devices asked for.
            Unavailable: ingest cannot be reached to check the data.
        """
        await self._check_machine(spec)
        await self._check_data(spec)
        await self._check_model(spec)
        job, created = await self._runner.write(
            self._store.create, job_id or f"job-{uuid.uuid4().hex[:12]}", spec, request_id
        )
        if created:
            self._changed()
        return job

    async def get(self, job_id: str) -> Job:
        return await self._runner.read(self._store.get, job_id)

    async def list(
        self, states: frozenset[str], register_model: str | None, text: str, size: int, token: str
    ) -> JobPage:
        page = Pages(token, {"filter": text, "page_size": size})
        after_time, after_id = page.position_str("after_time"), page.position_str("after_id")
        after = None
        if after_time is not None and after_id is not None:
            try:
                after = (datetime.datetime.fromisoformat(after_time), after_id)
            except ValueError:
                raise InvalidArgument(
                    f"page_token: {shorten(token)} is not a token this service issued", field="page_token"
                ) from None
        items = await self._runner.read(self._store.list_jobs, states, register_model, after, size + 1)
        kept, next_token = page.next(
            items,
            size,
            lambda last: {
                "after_time": last.create_time.isoformat() if last.create_time else "",
                "after_id": last.job_id,
            },
        )
        return JobPage(kept, next_token)

    async def cancel(self, job_id: str) -> Job:
        """A queued job ends CANCELLED at once; a running one becomes CANCELLING until its worker stops."""
        job = await self.get(job_id)
        if job.state in (CANCELLING, CANCELLED):
            return job
        if job.state == QUEUED:
            job = await self._runner.write(
                self._store.set_state, job_id, CANCELLED, message="cancelled", expected=frozenset({QUEUED})
            )
        elif job.state == RUNNING:
            job = await self._runner.write(
                self._store.set_state, job_id, CANCELLING, message="cancel requested", expected=frozenset({RUNNING})
            )
        else:
            raise FailedPrecondition(f"name: trainingJobs/{job_id} already ended STATE_{job.state}", field="name")
        self._changed()
        return job

    async def resume(self, job_id: str) -> Job:
        """A FAILED or CANCELLED job goes back to the queue; its worker starts from the last checkpoint."""
        job = await self.get(job_id)
        if job.state not in (FAILED, CANCELLED):
            raise FailedPrecondition(
                f"name: trainingJobs/{job_id} is STATE_{job.state}; only failed or cancelled jobs resume",
                field="name",
            )
        message = f"resumed from {job.checkpoint_uri}" if job.checkpoint_uri else "resumed from the start"
        job = await self._runner.write(
            self._store.set_state, job_id, QUEUED, message=message, expected=frozenset({FAILED, CANCELLED})
        )
        self._changed()
        return job

    async def watch(self, job_id: str, since_sequence: int) -> AsyncIterator[JobEvent]:
        """Events after ``since_sequence``, then new ones until the job ends (or the server drains)."""
        await self.get(job_id)
        since = since_sequence
        while True:
            # The job is read before its events: when it is terminal, every event it will
            # ever have is committed, so the read below sees the last one.
            job = await self.get(job_id)
            batch = await self._runner.read(self._store.events_since, job_id, since, _WATCH_BATCH)
            for event in batch:
                yield event
                since = event.sequence
            if len(batch) == _WATCH_BATCH:
                continue
            if job.state in TERMINAL and since >= job.last_sequence:
                return
            if self._draining.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._draining.wait(), self._poll)

    def render_manifest(self, spec: JobManifestSpec) -> str:
        """The Kubeflow PyTorchJob that runs a job on several nodes, as YAML."""
        if self._manifest_settings is None:
            raise FailedPrecondition("this train service renders no manifests (no cluster settings)")
        return to_yaml(render_pytorchjob(spec, self._manifest_settings))

    async def drain(self) -> None:
        """End every watch (the server is shutting down)."""
        self._draining.set()
