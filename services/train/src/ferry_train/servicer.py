"""``ferry.train.v1.TrainService`` over gRPC: parse, validate, map, delegate.

The rules live in :mod:`ferry_train.service`; domain errors raised below become status
codes in the shared error interceptor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ferry.train.v1 import train_pb2 as pb
from ferry.train.v1 import train_pb2_grpc
from ferry_common import fields
from ferry_common.errors import InvalidArgument
from ferry_common.names import page_size, validate_id
from ferry_train import messages as m
from ferry_train.manifest import JobManifestSpec
from ferry_train.service import TrainService

__all__ = ["TrainServicer"]


class TrainServicer(train_pb2_grpc.TrainServiceServicer):
    """The gRPC face of :class:`TrainService`."""

    def __init__(self, service: TrainService) -> None:
        self._service = service

    async def CreateTrainingJob(self, request: pb.CreateTrainingJobRequest, context: Any) -> pb.TrainingJob:
        job_id = validate_id("training_job_id", request.training_job_id) if request.training_job_id else ""
        request_id = fields.request_id("request_id", request.request_id) or None
        spec = m.spec_from_proto(request.training_job)
        return m.job_to_proto(await self._service.create(job_id, spec, request_id))

    async def GetTrainingJob(self, request: pb.GetTrainingJobRequest, context: Any) -> pb.TrainingJob:
        return m.job_to_proto(await self._service.get(m.job_ref("name", request.name)))

    async def ListTrainingJobs(self, request: pb.ListTrainingJobsRequest, context: Any) -> pb.ListTrainingJobsResponse:
        found = m.parse_filter(request.filter)
        page = await self._service.list(
            found.states, found.register_model, found.text, page_size(request.page_size), request.page_token
        )
        return pb.ListTrainingJobsResponse(
            training_jobs=[m.job_to_proto(job) for job in page.items], next_page_token=page.next_page_token
        )

    async def CancelTrainingJob(self, request: pb.CancelTrainingJobRequest, context: Any) -> pb.TrainingJob:
        return m.job_to_proto(await self._service.cancel(m.job_ref("name", request.name)))

    async def ResumeTrainingJob(self, request: pb.ResumeTrainingJobRequest, context: Any) -> pb.TrainingJob:
        return m.job_to_proto(await self._service.resume(m.job_ref("name", request.name)))

    async def WatchTrainingJob(
        self, request: pb.WatchTrainingJobRequest, context: Any
    ) -> AsyncIterator[pb.TrainingJobEvent]:
        job_id = m.job_ref("name", request.name)
        if request.since_sequence < 0:
            raise InvalidArgument(
                f"since_sequence: {request.since_sequence} must not be negative", field="since_sequence"
            )
        async for event in self._service.watch(job_id, request.since_sequence):
            yield m.event_to_proto(event)

    async def RenderTrainingJobManifest(
        self, request: pb.RenderTrainingJobManifestRequest, context: Any
    ) -> pb.RenderTrainingJobManifestResponse:
        job = request.training_job
        resources = job.resources
        spec = JobManifestSpec(
            training_job_id=m.job_ref("training_job.name", job.name),
            devices=resources.devices or 1,
            num_nodes=resources.num_nodes or 1,
            accelerator=resources.accelerator or "cpu",
            image=request.image,
            namespace=request.namespace,
        )
        return pb.RenderTrainingJobManifestResponse(yaml=self._service.render_manifest(spec))
