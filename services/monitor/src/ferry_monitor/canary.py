"""Serve as monitor acts on it: set a deployment's canary percent to 0 (``UpdateDeployment``).

Only the canary's share changes (update mask ``canary.percent``): its target, the primary
and everything else stay as they are, and serve applies it to the row it locks.
"""

from __future__ import annotations

import grpc
from google.protobuf import field_mask_pb2

from ferry.serve.v1 import serve_pb2, serve_pb2_grpc
from ferry_sdk import aio

__all__ = ["ServeCanaryControl"]


class ServeCanaryControl:
    """:class:`~ferry_monitor.slos.CanaryControl` through ``ferry_sdk.aio.ServeClient``'s channel."""

    def __init__(self, serve: aio.ServeClient, timeout: float = 10.0) -> None:
        self._serve = serve
        # The SDK's update_deployment replaces whole splits; the percent alone needs the mask path.
        self._stub = serve_pb2_grpc.ServeServiceStub(serve.channel)
        self._timeout = timeout

    async def stop_canary(self, deployment: str) -> str:
        name = f"deployments/{deployment}"
        request = serve_pb2.UpdateDeploymentRequest(
            deployment=serve_pb2.Deployment(name=name, canary=serve_pb2.TrafficSplit(percent=0)),
            update_mask=field_mask_pb2.FieldMask(paths=["canary.percent"]),
        )
        try:
            await self._stub.UpdateDeployment(request, timeout=self._timeout)
        except grpc.RpcError as error:
            code = error.code()
            raise RuntimeError(
                f"UpdateDeployment {name}: {code.name if code else 'UNKNOWN'}: {error.details()}"
            ) from None
        return f"{name}: canary set to 0%"

    async def close(self) -> None:
        await self._serve.close()
