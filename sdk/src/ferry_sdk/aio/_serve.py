"""The asyncio client of ``ferry.serve.v1.ServeService``, and predictions through serve's data plane."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import grpc.aio

from ferry.serve.v1 import serve_pb2 as pb
from ferry.serve.v1 import serve_pb2_grpc
from ferry_sdk import errors
from ferry_sdk._serve_messages import (
    DEFAULT_ALIAS,
    POLL_FIRST,
    POLL_MAX,
    UNSET,
    BatchingLike,
    SplitLike,
    TargetLike,
    Unset,
    create_request,
    deployment_id,
    deployment_name,
    failed_error,
    remaining_until,
    update_request,
)
from ferry_sdk.aio._base import AsyncClient
from ferry_sdk.serve import SERVICE

if TYPE_CHECKING:
    import pandas as pd

    from ferry_sdk._serve_frames import Signature

__all__ = ["ServeClient"]


class ServeClient(AsyncClient):
    """Deployments and predictions, for asyncio; the methods of :class:`ferry_sdk.ServeClient`.

    Create it inside a running event loop.

        async with ServeClient() as serve:
            await serve.create_deployment(model="iris", canary=(2, 10))
            frame = await serve.predict("iris", {"x": [0.5, 3.0], "color": ["red", None]})
            print(frame["label"], frame.attrs["model_version"])
    """

    _service = "serve"
    _service_names = (SERVICE,)

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self._stub = serve_pb2_grpc.ServeServiceStub(channel)
        self._inference: Any = None
        self._signatures: dict[tuple[str, str], Signature] = {}

    # Deployments

    async def create_deployment(
        self,
        deployment_id: str = "",
        deployment: pb.Deployment | None = None,
        *,
        model: str = "",
        primary_alias: str = DEFAULT_ALIAS,
        primary_version: int | None = None,
        canary: SplitLike | None = None,
        shadow: SplitLike | None = None,
        batching: BatchingLike | None = None,
        sample_rate: float = 1.0,
        timeout: float | None = None,
    ) -> pb.Deployment:
        """Create a deployment and load its versions (see :meth:`ferry_sdk.ServeClient.create_deployment`)."""
        request = create_request(
            deployment_id,
            deployment,
            model=model,
            primary_alias=primary_alias,
            primary_version=primary_version,
            canary=canary,
            shadow=shadow,
            batching=batching,
            sample_rate=sample_rate,
        )
        created: pb.Deployment = await self._call(self._stub.CreateDeployment, request, self._transfer(timeout))
        return created

    async def get_deployment(self, name: str, *, timeout: float | None = None) -> pb.Deployment:
        """Get a deployment (``deployments/iris`` or ``iris``) with the versions it serves."""
        request = pb.GetDeploymentRequest(name=deployment_name(name))
        deployment: pb.Deployment = await self._call(self._stub.GetDeployment, request, timeout)
        return deployment

    def list_deployments(self, *, page_size: int = 0, timeout: float | None = None) -> AsyncIterator[pb.Deployment]:
        """Every deployment, fetched page by page as iterated (``async for``)."""
        request = pb.ListDeploymentsRequest(page_size=page_size)
        return self._pages(self._stub.ListDeployments, request, lambda r: r.deployments, timeout)

    async def update_deployment(
        self,
        name: str,
        *,
        primary: TargetLike | Unset = UNSET,
        canary: SplitLike | Unset | None = UNSET,
        shadow: SplitLike | Unset | None = UNSET,
        batching: BatchingLike | Unset | None = UNSET,
        sample_rate: float | Unset = UNSET,
        etag: str = "",
        canary_percent: int | Unset = UNSET,
        shadow_percent: int | Unset = UNSET,
        timeout: float | None = None,
    ) -> pb.Deployment:
        """Change what is given, nothing else (see :meth:`ferry_sdk.ServeClient.update_deployment`)."""
        request = update_request(
            name,
            primary=primary,
            canary=canary,
            shadow=shadow,
            batching=batching,
            sample_rate=sample_rate,
            etag=etag,
            canary_percent=canary_percent,
            shadow_percent=shadow_percent,
        )
        updated: pb.Deployment = await self._call(self._stub.UpdateDeployment, request, self._transfer(timeout))
        return updated

    async def delete_deployment(self, name: str, *, timeout: float | None = None) -> None:
        """Delete a deployment; its versions are unloaded once their in-flight calls drained."""
        request = pb.DeleteDeploymentRequest(name=deployment_name(name))
        await self._call(self._stub.DeleteDeployment, request, self._transfer(timeout))
        gone = deployment_id(name)
        for key in [key for key in self._signatures if key[0] == gone]:
            del self._signatures[key]

    async def wait_ready(self, name: str, timeout: float | None = None) -> pb.Deployment:
        """Poll until the deployment is ``READY`` and return it.

        Raises:
            errors.DeploymentFailed: it is ``FAILED`` (``error.deployment`` says why in ``message``).
            errors.DeadlineExceeded: ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = POLL_FIRST
        while True:
            deployment = await self.get_deployment(name, timeout=remaining_until(deadline, name))
            if deployment.state == pb.Deployment.STATE_READY:
                return deployment
            if deployment.state == pb.Deployment.STATE_FAILED:
                raise failed_error(deployment)
            remaining = remaining_until(deadline, name)
            await asyncio.sleep(delay if remaining is None else min(delay, remaining))
            delay = min(delay * 2, POLL_MAX)

    # Data plane

    async def predict(
        self,
        deployment: str,
        inputs: pd.DataFrame | Any,
        *,
        version: str | int = "",
        request_id: str = "",
        classes: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> pd.DataFrame:
        """Send rows to a deployment; returns them with the outputs joined (see :meth:`ferry_sdk.ServeClient.predict`).

        The rows are converted on the event loop: convert large frames in chunks, or call
        from a thread, when the loop must stay responsive.
        """
        from ferry_sdk import _serve_frames as frames

        key = (deployment_id(deployment), str(version))
        frame = frames.to_frame(inputs)
        signature, cached = await self._signature(key, timeout)
        try:
            return await self._infer(frame, signature, key, request_id, classes, timeout)
        except errors.InvalidArgument:
            # The primary may have moved to a version with another signature.
            self._signatures.pop(key, None)
            if not cached:
                raise
            fresh, _ = await self._signature(key, timeout)
            if fresh == signature:
                raise
            return await self._infer(frame, fresh, key, request_id, classes, timeout)

    async def _infer(
        self,
        frame: pd.DataFrame,
        signature: Signature,
        key: tuple[str, str],
        request_id: str,
        classes: Sequence[str] | None,
        timeout: float | None,
    ) -> pd.DataFrame:
        from ferry_sdk import _serve_frames as frames

        name, version = key
        request = frames.infer_request(name, frame, signature, version=version, request_id=request_id)
        response = await self._call(self._inference_stub().ModelInfer, request, timeout)
        return frames.result_frame(frame, response, classes=classes)

    async def _signature(self, key: tuple[str, str], timeout: float | None) -> tuple[Signature, bool]:
        """The signature of ``key`` (deployment, version) and whether it came from the cache."""
        from ferry_sdk import _serve_frames as frames

        known = self._signatures.get(key)
        if known is not None:
            return known, True
        metadata = await self._call(self._inference_stub().ModelMetadata, frames.metadata_request(*key), timeout)
        signature = frames.Signature.from_metadata(metadata)
        self._signatures[key] = signature
        return signature, False

    def _inference_stub(self) -> Any:
        from ferry_sdk import _serve_frames as frames

        if self._inference is None:
            self._inference = frames.inference_stub(self._channel)
        return self._inference
