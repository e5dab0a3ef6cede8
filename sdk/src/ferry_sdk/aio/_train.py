"""The asyncio client of ``ferry.train.v1.TrainService``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import grpc
import grpc.aio

from ferry.train.v1 import train_pb2 as pb
from ferry.train.v1 import train_pb2_grpc
from ferry_sdk import errors
from ferry_sdk._train_messages import JobCursor, TaskLike, failed_error, job_name, job_request
from ferry_sdk._watch import Backoff, ResumableAsyncWatch, resumable
from ferry_sdk.aio._base import AsyncClient
from ferry_sdk.train import SERVICE

__all__ = ["TrainClient", "TrainingJobWatch"]


class TrainClient(AsyncClient):
    """Training jobs, for asyncio; the methods of :class:`ferry_sdk.TrainClient`.

    Create it inside a running event loop.

        async with TrainClient() as train:
            job = await train.create_training_job("wine-1", dataset_version=..., target="target", register_model="wine")
            async for event in train.watch_training_job(job.name):
                ...
            finished = await train.wait_for(job.name, timeout=600)
    """

    _service = "train"
    _service_names = (SERVICE,)

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self._stub = train_pb2_grpc.TrainServiceStub(channel)

    async def create_training_job(
        self,
        job_id: str = "",
        training_job: pb.TrainingJob | None = None,
        *,
        dataset_version: str = "",
        target: str = "",
        task: TaskLike = "classification",
        training_split: str = "train",
        validation_split: str = "validation",
        features: Iterable[str] = (),
        hidden_units: Iterable[int] = (64, 32),
        dropout: float = 0.1,
        custom_model: str = "",
        init_args: Mapping[str, Any] | None = None,
        max_epochs: int = 10,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        seed: int = 0,
        accelerator: str = "cpu",
        devices: int = 1,
        num_nodes: int = 1,
        strategy: str = "",
        precision: str = "",
        register_model: str = "",
        code_revision: str = "",
        request_id: str = "",
        timeout: float | None = None,
    ) -> pb.TrainingJob:
        """Create and queue a job (see :meth:`ferry_sdk.TrainClient.create_training_job`)."""
        request = job_request(
            job_id,
            training_job,
            dataset_version=dataset_version,
            target=target,
            task=task,
            training_split=training_split,
            validation_split=validation_split,
            features=features,
            hidden_units=hidden_units,
            dropout=dropout,
            custom_model=custom_model,
            init_args=init_args,
            max_epochs=max_epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            seed=seed,
            accelerator=accelerator,
            devices=devices,
            num_nodes=num_nodes,
            strategy=strategy,
            precision=precision,
            register_model=register_model,
            code_revision=code_revision,
            request_id=request_id,
        )
        job: pb.TrainingJob = await self._call(self._stub.CreateTrainingJob, request, timeout)
        return job

    async def get_training_job(self, name: str, *, timeout: float | None = None) -> pb.TrainingJob:
        request = pb.GetTrainingJobRequest(name=job_name(name))
        job: pb.TrainingJob = await self._call(self._stub.GetTrainingJob, request, timeout)
        return job

    def list_training_jobs(
        self, *, filter: str = "", page_size: int = 0, timeout: float | None = None
    ) -> AsyncIterator[pb.TrainingJob]:
        """Every job, newest first, fetched page by page as iterated (``async for``)."""
        request = pb.ListTrainingJobsRequest(filter=filter, page_size=page_size)
        return self._pages(self._stub.ListTrainingJobs, request, lambda r: r.training_jobs, timeout)

    async def cancel_training_job(self, name: str, *, timeout: float | None = None) -> pb.TrainingJob:
        request = pb.CancelTrainingJobRequest(name=job_name(name))
        job: pb.TrainingJob = await self._call(self._stub.CancelTrainingJob, request, timeout)
        return job

    async def resume_training_job(self, name: str, *, timeout: float | None = None) -> pb.TrainingJob:
        request = pb.ResumeTrainingJobRequest(name=job_name(name))
        job: pb.TrainingJob = await self._call(self._stub.ResumeTrainingJob, request, timeout)
        return job

    def watch_training_job(
        self, name: str, *, since_sequence: int = 0, backoff: Backoff | None = None
    ) -> TrainingJobWatch:
        """Follow a job's events until it is final, resuming across reconnects (``async for``)."""
        return TrainingJobWatch(self._stub, job_name(name), since_sequence, Backoff.fresh(backoff))

    async def wait_for(self, name: str, timeout: float | None = None) -> pb.TrainingJob:
        """Wait until the job is final and return it (``TrainingJobFailed`` when it failed).

        Raises ``DeadlineExceeded`` naming the job after ``timeout`` seconds (the job keeps running).
        """
        try:
            async with asyncio.timeout(timeout):
                async with TrainingJobWatch(self._stub, job_name(name), 0, Backoff()) as watch:
                    async for _ in watch:
                        pass
        except TimeoutError as error:
            message = f"training job {job_name(name)!r} is not final yet (waited {timeout}s)"
            raise errors.DeadlineExceeded(message) from error
        job = await self.get_training_job(name)
        if job.state == pb.TrainingJob.STATE_FAILED:
            raise failed_error(job)
        return job

    async def render_training_job_manifest(
        self, training_job: pb.TrainingJob | str, *, image: str = "", namespace: str = "", timeout: float | None = None
    ) -> str:
        """The Kubernetes manifest (YAML) of a job message or of an existing job's name."""
        if isinstance(training_job, str):
            training_job = await self.get_training_job(training_job, timeout=timeout)
        request = pb.RenderTrainingJobManifestRequest(training_job=training_job, image=image, namespace=namespace)
        response = await self._call(self._stub.RenderTrainingJobManifest, request, timeout)
        return str(response.yaml)


class TrainingJobWatch(ResumableAsyncWatch[pb.TrainingJobEvent]):
    """A resumable ``WatchTrainingJob`` stream for asyncio (see :meth:`ferry_sdk.TrainClient.watch_training_job`).

    Attributes:
        sequence: the last sequence delivered.
    """

    def __init__(self, stub: train_pb2_grpc.TrainServiceStub, name: str, since_sequence: int, backoff: Backoff) -> None:
        super().__init__(backoff)
        self._stub = stub
        self._cursor = JobCursor(name, since_sequence)

    @property
    def name(self) -> str:
        return self._cursor.name

    @property
    def sequence(self) -> int:
        return self._cursor.sequence

    def _start(self) -> Any:
        return self._stub.WatchTrainingJob(self._cursor.request())

    def _accept(self, event: pb.TrainingJobEvent) -> bool:
        return self._cursor.accept(event)

    async def _ended(self) -> errors.FerryError | None:
        try:
            if self._cursor.finished(await self._get()):
                return None
            return errors.Unavailable("the watch stream ended before the job did")
        except errors.FerryError as get_error:
            if not resumable(get_error):
                raise
            return get_error

    async def _get(self) -> pb.TrainingJob:
        try:
            job: pb.TrainingJob = await self._stub.GetTrainingJob(pb.GetTrainingJobRequest(name=self.name), timeout=30)
        except grpc.RpcError as rpc_error:
            raise errors.from_rpc_error(rpc_error) from rpc_error
        return job
