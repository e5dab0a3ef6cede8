"""Off the request path: inference samples to monitor, and shadow requests compared with the primary.

The request path only appends to a bounded queue (:meth:`Sampler.offer`) or starts a task
under a bounded count (:meth:`Shadows.submit`); when either is full the work is dropped
and counted, never waited for. Decoding tensors and talking to monitor happen in the
background task.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf import struct_pb2, timestamp_pb2
from tritonclient.grpc import service_pb2

from ferry.monitor.v1 import monitor_pb2
from ferry_common.logs import get_logger
from ferry_sdk import aio
from ferry_sdk import errors as sdk_errors
from ferry_serve.tensors import decode_inputs, decode_outputs, to_json_values

__all__ = ["Sample", "Sampler", "Shadows", "compare_outputs"]

_log = get_logger("ferry.serve.sampling")
_BATCH = 200
_SEND_TIMEOUT = 5.0
# Why a batch lingers: at a few hundred requests a second the queue is nearly always empty
# when a sample arrives, so without a pause every request paid its own thread hop (decoding)
# and its own RecordInferences call: measured ~0.5 ms of CPU per request at concurrency 1,
# on the cores the request path shares (bench/serve). 50 ms turns that into one hop and one
# call per 50 ms, and is far below anything monitor aggregates over.
_LINGER = 0.05
# After monitor failed, samples are counted as failed without being decoded for this long:
# decoding (~0.1 ms a sample) for a monitor that is away only takes CPU from requests.
_RETRY_AFTER = 1.0


@dataclass
class Sample:
    """One answered request, as monitor will see it."""

    request_id: str
    deployment_id: str
    model_version: str
    route: str
    request: service_pb2.ModelInferRequest
    response: service_pb2.ModelInferResponse | None
    latency_ms: float
    time: float
    comparison: monitor_pb2.ShadowComparison | None = None


def _struct(tensors: dict[str, np.ndarray[Any, Any]]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update({name: to_json_values(array) for name, array in tensors.items()})
    return struct


def _record(sample: Sample) -> monitor_pb2.InferenceRecord:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(sample.time * 1e9))
    record = monitor_pb2.InferenceRecord(
        request_id=sample.request_id,
        deployment=f"deployments/{sample.deployment_id}",
        model_version=sample.model_version,
        route=sample.route.lower(),
        time=stamp,
        latency_ms=sample.latency_ms,
        inputs=_struct(decode_inputs(sample.request)),
    )
    if sample.response is not None:
        record.outputs.CopyFrom(_struct(decode_outputs(sample.response)))
    if sample.comparison is not None:
        record.shadow_comparison.CopyFrom(sample.comparison)
    return record


def _records(samples: list[Sample]) -> list[monitor_pb2.InferenceRecord]:
    return [_record(sample) for sample in samples]


class Sampler:
    """A bounded queue of samples sent to monitor's ``RecordInferences`` in batches.

    Attributes:
        offered, dropped, sent, failed: counts since start (dropped: the queue was full;
            failed: monitor refused or could not be reached, or had just failed: for a second
            after a failure batches are counted here without being decoded or sent).
    """

    def __init__(self, monitor: aio.MonitorClient | None, maxsize: int) -> None:
        self._monitor = monitor
        self._queue: asyncio.Queue[Sample] = asyncio.Queue(maxsize)
        self.offered = self.dropped = self.sent = self.failed = 0
        self._task: asyncio.Task[None] | None = None
        self._last_warning = 0.0
        self._retry_at = 0.0

    def offer(self, sample: Sample) -> None:
        """Queue a sample without waiting (dropped and counted when the queue is full)."""
        self.offered += 1
        try:
            self._queue.put_nowait(sample)
        except asyncio.QueueFull:
            self.dropped += 1

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        _log.info("samples", offered=self.offered, sent=self.sent, dropped=self.dropped, failed=self.failed)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._queue.qsize() < _BATCH - 1:
                await asyncio.sleep(_LINGER)
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if self._monitor is None or time.monotonic() < self._retry_at:
                self.failed += len(batch)
                continue
            try:
                records = await asyncio.to_thread(_records, batch)
                await self._monitor.record_inferences(records, timeout=_SEND_TIMEOUT)
                self.sent += len(batch)
            except sdk_errors.FerryError as error:
                self.failed += len(batch)
                now = time.monotonic()
                self._retry_at = now + _RETRY_AFTER
                if now - self._last_warning > 60:  # one line a minute while monitor is away
                    self._last_warning = now
                    _log.warning("samples not recorded", error=error.message, failed=self.failed, dropped=self.dropped)


def compare_outputs(
    primary: service_pb2.ModelInferResponse, shadow: service_pb2.ModelInferResponse
) -> tuple[float, float, str]:
    """(max absolute difference of numeric outputs, agreement of string outputs, error)."""
    mine, theirs = decode_outputs(primary), decode_outputs(shadow)
    max_diff, agreements, error = 0.0, [], ""
    for name, value in mine.items():
        other = theirs.get(name)
        if other is None:
            error = f"the shadow has no output {name!r}"
            continue
        if value.shape != other.shape:
            error = f"output {name!r}: shape {list(value.shape)} against the shadow's {list(other.shape)}"
            continue
        if value.dtype == object or other.dtype == object:
            agreements.append(float(np.mean(value.reshape(-1) == other.reshape(-1))) if value.size else 1.0)
        elif value.size:
            max_diff = max(max_diff, float(np.max(np.abs(value.astype(np.float64) - other.astype(np.float64)))))
    return max_diff, (float(np.mean(agreements)) if agreements else 1.0), error


class Shadows:
    """Runs shadow copies of requests off the request path, at most ``limit`` at once.

    Attributes:
        submitted, dropped, failed: counts since start.
    """

    def __init__(self, limit: int, sampler: Sampler) -> None:
        self._limit = limit
        self._sampler = sampler
        self._running: set[asyncio.Task[None]] = set()
        self.submitted = self.dropped = self.failed = 0

    def submit(self, job: Callable[[], Awaitable[None]]) -> None:
        self.submitted += 1
        if len(self._running) >= self._limit:
            self.dropped += 1
            return
        task = asyncio.ensure_future(self._guarded(job))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _guarded(self, job: Callable[[], Awaitable[None]]) -> None:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a shadow never fails anything but itself
            self.failed += 1
            _log.debug("shadow request failed", error=str(error))

    async def stop(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
