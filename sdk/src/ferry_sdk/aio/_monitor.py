"""The asyncio client of ``ferry.monitor.v1.MonitorService`` (what serve sends it so far)."""

from __future__ import annotations

from collections.abc import Iterable

import grpc.aio

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry.monitor.v1 import monitor_pb2_grpc
from ferry_sdk.aio._base import AsyncClient

__all__ = ["MonitorClient"]

SERVICE = "ferry.monitor.v1.MonitorService"


class MonitorClient(AsyncClient):
    """Monitor's contract for asyncio callers (``FERRY_MONITOR_ADDRESS`` by default).

    Holds the calls other services make today (serve's ``record_inferences``); the rest
    of the contract joins it with the monitor service.
    """

    _service = "monitor"
    _service_names = (SERVICE,)

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self._stub = monitor_pb2_grpc.MonitorServiceStub(channel)

    async def record_inferences(self, records: Iterable[pb.InferenceRecord], *, timeout: float | None = None) -> int:
        """Send sampled inferences; returns how many monitor stored."""
        request = pb.RecordInferencesRequest(records=list(records))
        response: pb.RecordInferencesResponse = await self._call(self._stub.RecordInferences, request, timeout)
        return int(response.accepted_count)
