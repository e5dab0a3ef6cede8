"""Model control of a Triton in explicit mode, through ``tritonclient.grpc.aio``.

Triton's errors become Ferry's domain errors with a message that names the Triton model:
a model that fails to load is :class:`FailedPrecondition` carrying Triton's reason, an
unreachable Triton is :class:`Unavailable`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as triton_grpc
import tritonclient.grpc.aio as triton_aio
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from ferry_common.errors import FailedPrecondition, FerryError, InvalidArgument, NotFound, Unavailable
from ferry_serve.triton.repository import Signature, TensorSpec

__all__ = ["ModelState", "TritonControl"]


@dataclass(frozen=True)
class ModelState:
    """One entry of Triton's repository index.

    Attributes:
        name: Triton model name.
        version: version (``"1"`` for Ferry's models; empty when never loaded).
        state: ``READY``, ``LOADING``, ``UNLOADING``, ``UNAVAILABLE`` or empty (never loaded).
        reason: why it is not ready (``unloaded``, a load error), else empty.
    """

    name: str
    version: str
    state: str
    reason: str


def _status(error: InferenceServerException) -> str:
    return str(error.status() or "")


def _message(error: InferenceServerException) -> str:
    # The python backend appends the model.py traceback ("\n\nAt:\n  file(line): ...").
    return str(error.message() or error).split("\n\nAt:\n", 1)[0].strip()


class TritonControl:
    """Loads, unloads, checks and warms models of one Triton.

    Args:
        grpc_url: ``host:port`` of Triton's gRPC endpoint.
        timeout: deadline in seconds of each quick call (readiness, index, unload).
        load_timeout: deadline of a load and of a warm-up inference (a python model takes ~2 s).
    """

    def __init__(self, grpc_url: str, *, timeout: float = 10.0, load_timeout: float = 120.0) -> None:
        self.grpc_url = grpc_url
        self._timeout = timeout
        self._load_timeout = load_timeout
        self._client: triton_aio.InferenceServerClient | None = None

    @property
    def client(self) -> triton_aio.InferenceServerClient:
        """The underlying client, created in the running event loop on first use."""
        if self._client is None:
            self._client = triton_aio.InferenceServerClient(self.grpc_url)
        return self._client

    def _error(self, error: InferenceServerException, action: str, triton_name: str | None) -> FerryError:
        status, message = _status(error), _message(error)
        subject = f'Triton model "{triton_name}"' if triton_name else f"Triton at {self.grpc_url}"
        if status.endswith(("UNAVAILABLE", "DEADLINE_EXCEEDED")) or "failed to connect" in message.lower():
            return Unavailable(f"{subject}: {action} failed: Triton at {self.grpc_url} unreachable ({message})")
        if status.endswith("NOT_FOUND") or "unknown model" in message.lower():
            return NotFound(f"{subject}: not found in Triton's repository ({message})", field="triton_name")
        return FailedPrecondition(f"{subject}: {action} failed: {message}")

    async def load(self, triton_name: str) -> None:
        """Loads (or reloads) a model from the repository and returns once it is ready.

        Raises:
            FailedPrecondition: Triton could not load it (bad ONNX, bad config...); the
                message names the model and carries Triton's reason.
            Unavailable: Triton cannot be reached.
        """
        try:
            await self.client.load_model(triton_name, client_timeout=self._load_timeout)
        except InferenceServerException as error:
            raised = self._error(error, "load", triton_name)
            if isinstance(raised, NotFound | InvalidArgument):
                raised = FailedPrecondition(f'Triton model "{triton_name}": load failed: {_message(error)}')
            raise raised from None

    async def unload(self, triton_name: str, *, wait: bool = True) -> None:
        """Unloads a model; Triton lets its in-flight requests finish first.

        Args:
            triton_name: the model.
            wait: return only once Triton reports it no longer ``READY``/``UNLOADING``
                (Triton's unload call itself returns before the model is gone).

        Raises:
            Unavailable: Triton cannot be reached, or the unload did not finish within the load timeout.
        """
        try:
            await self.client.unload_model(triton_name, client_timeout=self._timeout)
        except InferenceServerException as error:
            raise self._error(error, "unload", triton_name) from None
        if not wait:
            return
        deadline = time.monotonic() + self._load_timeout
        while True:
            states = {model.name: model for model in await self.index()}
            current = states.get(triton_name)
            if current is None or current.state not in {"READY", "UNLOADING"}:
                return
            if time.monotonic() > deadline:
                raise Unavailable(
                    f'Triton model "{triton_name}": still {current.state} {self._load_timeout:g}s after unload'
                )
            await asyncio.sleep(0.02)

    async def ready(self, triton_name: str) -> bool:
        """Whether the model is loaded and ready (``False`` for a model Triton does not know).

        Raises:
            Unavailable: Triton cannot be reached.
        """
        try:
            return bool(await self.client.is_model_ready(triton_name, client_timeout=self._timeout))
        except InferenceServerException as error:
            raised = self._error(error, "readiness check", triton_name)
            if isinstance(raised, Unavailable):
                raise raised from None
            return False

    async def index(self) -> list[ModelState]:
        """Triton's repository index, without Ferry's in-progress (hidden) directories.

        Raises:
            Unavailable: Triton cannot be reached.
        """
        try:
            response = await self.client.get_model_repository_index(client_timeout=self._timeout)
        except InferenceServerException as error:
            raise self._error(error, "repository index", None) from None
        return [
            ModelState(name=model.name, version=model.version, state=model.state, reason=model.reason)
            for model in response.models
            if not model.name.startswith(".")
        ]

    async def warm(self, triton_name: str, signature: Signature) -> None:
        """Runs one inference of one row built from the signature, and checks every output came back.

        Inputs are zeros (numeric), ``False`` (BOOL) or ``b""`` (BYTES): a value every Ferry
        model accepts, since its pre-processing imputes and ignores unknown categories.

        Raises:
            FailedPrecondition: the inference failed or an output is missing; the message
                names the model and carries Triton's reason.
            Unavailable: Triton cannot be reached.
        """
        inputs = [_warm_input(spec) for spec in signature.inputs]
        outputs = [triton_grpc.InferRequestedOutput(spec.name) for spec in signature.outputs]
        try:
            result = await self.client.infer(triton_name, inputs, outputs=outputs, client_timeout=self._load_timeout)
        except InferenceServerException as error:
            raise self._error(error, "warm-up inference", triton_name) from None
        missing = [spec.name for spec in signature.outputs if result.as_numpy(spec.name) is None]
        if missing:
            raise FailedPrecondition(
                f'Triton model "{triton_name}": warm-up inference returned no {", ".join(missing)}'
            )

    async def close(self) -> None:
        """Closes the channel (a later call opens a new one)."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> TritonControl:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _warm_shape(shape: Sequence[int]) -> list[int]:
    return [1 if dim < 0 else dim for dim in shape]


def _warm_input(spec: TensorSpec) -> triton_grpc.InferInput:
    shape = _warm_shape(spec.shape)
    if spec.datatype == "BYTES":
        data = np.full(shape, b"", dtype=np.object_)
    elif triton_to_np_dtype(spec.datatype) is not None:
        data = np.zeros(shape, dtype=triton_to_np_dtype(spec.datatype))
    else:
        raise InvalidArgument(f"input {spec.name!r}: cannot build a warm-up value of {spec.datatype}")
    tensor = triton_grpc.InferInput(spec.name, shape, spec.datatype)
    tensor.set_data_from_numpy(data)
    return tensor
