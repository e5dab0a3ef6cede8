"""The blocking client of ``ferry.serve.v1.ServeService``, and predictions through serve's data plane."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from ferry.serve.v1 import serve_pb2 as pb
from ferry.serve.v1 import serve_pb2_grpc
from ferry_sdk import errors
from ferry_sdk._base import SyncClient
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

if TYPE_CHECKING:
    import pandas as pd

    from ferry_sdk._serve_frames import Signature

__all__ = ["ServeClient"]

SERVICE = "ferry.serve.v1.ServeService"


class ServeClient(SyncClient):
    """Deployments (serve's control plane) and predictions (its Triton-protocol data plane), blocking.

    Args:
        address: ``host:port``; default ``FERRY_SERVE_ADDRESS`` (through ``ferry_common.settings``).
        settings: the caller's settings (token, TLS, default deadline); read from the
            ``FERRY_*`` environment when omitted.
        timeout: default deadline of unary calls, seconds (default ``FERRY_CALL_TIMEOUT_SECONDS``).
        transfer_timeout: default deadline of the calls that load or unload models
            (create, update, delete), seconds.
        tracer_provider: record client spans and propagate the trace context.

    Every method raises a :class:`ferry_sdk.errors.FerryError` subclass on failure.
    Deployments are named ``deployments/<id>``; ``<id>`` alone works too. Get and List
    are retried on UNAVAILABLE; create, update, delete and predict are not.

        with ServeClient() as serve:
            serve.create_deployment("iris", model="iris", canary=(2, 10))  # alias production + 10% on version 2
            frame = serve.predict("iris", pandas.DataFrame({"x": [0.5, 3.0], "color": ["red", None]}))
            print(frame["label"], frame.attrs["model_version"], frame.attrs["request_id"])
            serve.update_deployment("iris", canary=None)  # remove the canary
    """

    _service = "serve"
    _service_names = (SERVICE,)

    def _bind(self, channel: grpc.Channel) -> None:
        self._stub = serve_pb2_grpc.ServeServiceStub(channel)
        self._inference: Any = None
        self._signatures: dict[tuple[str, str], Signature] = {}
        self._lock = threading.Lock()

    # Deployments

    def create_deployment(
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
        """Create a deployment and load its versions; returns once they are loaded (or failed).

        Args:
            deployment_id: the id (``deployments/<deployment_id>``, the data plane's model
                name); default the model id.
            deployment: a complete ``Deployment`` message; then leave the field arguments out.
            model: the registry model (``iris`` or ``models/iris``).
            primary_alias: the alias the primary route follows (moves when the alias moves).
            primary_version: a fixed version for the primary route instead.
            canary: ``(target, percent)``: that share of requests naming no version goes to
                ``target`` (an alias or a version number).
            shadow: ``(target, percent)``: that share of requests is copied to ``target``;
                its answers are compared and discarded.
            batching: ``True``, or ``{"enabled": True, "max_batch_size": 64,
                "max_queue_delay_microseconds": 500}`` (0 sizes: serve's defaults).
            sample_rate: the fraction of requests sent to monitor, in (0, 1] (to create one
                that samples nothing, update ``sample_rate=0.0`` after).

        Returns:
            The deployment: ``state`` READY with ``served_versions``, or FAILED with ``message``.

        Raises ``AlreadyExists`` for a taken id, ``NotFound`` for an unknown model or version,
        ``FailedPrecondition`` for an alias that is not set, ``InvalidArgument`` naming the field.
        """
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
        created: pb.Deployment = self._call(self._stub.CreateDeployment, request, self._transfer(timeout))
        return created

    def get_deployment(self, name: str, *, timeout: float | None = None) -> pb.Deployment:
        """Get a deployment (``deployments/iris`` or ``iris``) with the versions it serves."""
        request = pb.GetDeploymentRequest(name=deployment_name(name))
        deployment: pb.Deployment = self._call(self._stub.GetDeployment, request, timeout)
        return deployment

    def list_deployments(self, *, page_size: int = 0, timeout: float | None = None) -> Iterator[pb.Deployment]:
        """Every deployment, fetched page by page as iterated."""
        request = pb.ListDeploymentsRequest(page_size=page_size)
        return self._pages(self._stub.ListDeployments, request, lambda r: r.deployments, timeout)

    def update_deployment(
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
        """Change what is given, nothing else; new versions are loaded and ready before traffic moves.

        Args:
            name: ``deployments/iris`` or ``iris``.
            primary: an alias to follow or a version number.
            canary: ``(target, percent)``, or ``None`` to remove the canary.
            shadow: ``(target, percent)``, or ``None`` to remove the shadow.
            batching: as in :meth:`create_deployment`; ``None`` turns batching off.
            sample_rate: the fraction of requests sent to monitor (0 stops sampling).
            canary_percent, shadow_percent: change only the share of the existing split (its
                target kept; FailedPrecondition when the deployment has no such split).
            etag: the ``etag`` of the deployment as read: the update is refused with
                ``Aborted`` (field ``deployment.etag``) when it changed since. Empty: no check.

        Returns:
            The deployment, READY or FAILED (the routes then stay as they were).
        """
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
        updated: pb.Deployment = self._call(self._stub.UpdateDeployment, request, self._transfer(timeout))
        return updated

    def delete_deployment(self, name: str, *, timeout: float | None = None) -> None:
        """Delete a deployment; its versions are unloaded once their in-flight calls drained."""
        request = pb.DeleteDeploymentRequest(name=deployment_name(name))
        self._call(self._stub.DeleteDeployment, request, self._transfer(timeout))
        with self._lock:
            self._forget(deployment_id(name))

    def wait_ready(self, name: str, timeout: float | None = None) -> pb.Deployment:
        """Poll until the deployment is ``READY`` and return it.

        Raises:
            errors.DeploymentFailed: it is ``FAILED`` (``error.deployment`` says why in ``message``).
            errors.DeadlineExceeded: ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = POLL_FIRST
        while True:
            deployment = self.get_deployment(name, timeout=remaining_until(deadline, name))
            if deployment.state == pb.Deployment.STATE_READY:
                return deployment
            if deployment.state == pb.Deployment.STATE_FAILED:
                raise failed_error(deployment)
            remaining = remaining_until(deadline, name)
            time.sleep(delay if remaining is None else min(delay, remaining))
            delay = min(delay * 2, POLL_MAX)

    # Data plane

    def predict(
        self,
        deployment: str,
        inputs: pd.DataFrame | Any,
        *,
        version: str | int = "",
        request_id: str = "",
        classes: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> pd.DataFrame:
        """Send rows to a deployment; returns them with the model's outputs joined.

        Needs numpy, pandas and tritonclient (``pip install 'ferry-sdk[serve]'``). The call
        is Triton's ``ModelInfer`` on serve's port, through this client's channel (token,
        TLS and tracing apply); the deployment's signature is read once (``ModelMetadata``)
        and kept, and read again when serve refuses a request built from it.

        Args:
            deployment: ``iris`` or ``deployments/iris``.
            inputs: a pandas DataFrame, or a mapping of column -> values. One ``[rows, 1]``
                tensor per input of the signature: numbers in the input's datatype (NaN kept
                for floats), strings as UTF-8 (``None``/NaN as ``""``). Other columns are not
                sent and are returned as they are.
            version: a version number or an alias; empty follows the deployment's traffic split.
            request_id: the request id (serve generates one when empty).
            classes: names of the ``probabilities`` columns, in order (default: read off the
                answers through the ``label`` output when every class is some row's label,
                else ``probabilities_<k>``).

        Returns:
            The input rows (same index) and one column per ``[-1, 1]`` output (``label`` as
            ``str``, ``prediction`` as float), ``probability_<class>`` per class; ``attrs``
            holds ``deployment``, ``model_version`` (the version that answered, int) and ``request_id``.

        Raises ``InvalidArgument`` naming the tensor for a column that does not fit its input
        or a missing input, ``NotFound`` for an unknown deployment or version, and
        ``ResourceExhausted`` for a request larger than serve accepts (send fewer rows).
        """
        from ferry_sdk import _serve_frames as frames

        name = deployment_id(deployment)
        key = (name, str(version))
        frame = frames.to_frame(inputs)
        signature, cached = self._signature(key, timeout)
        try:
            return self._infer(frame, signature, key, request_id, classes, timeout)
        except errors.InvalidArgument:
            # The primary may have moved to a version with another signature.
            with self._lock:
                self._signatures.pop(key, None)
            if not cached:
                raise
            fresh, _ = self._signature(key, timeout)
            if fresh == signature:
                raise
            return self._infer(frame, fresh, key, request_id, classes, timeout)

    def _infer(
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
        response = self._call(self._inference_stub().ModelInfer, request, timeout)
        return frames.result_frame(frame, response, classes=classes)

    def _signature(self, key: tuple[str, str], timeout: float | None) -> tuple[Signature, bool]:
        """The signature of ``key`` (deployment, version) and whether it came from the cache."""
        from ferry_sdk import _serve_frames as frames

        with self._lock:
            known = self._signatures.get(key)
        if known is not None:
            return known, True
        metadata = self._call(self._inference_stub().ModelMetadata, frames.metadata_request(*key), timeout)
        signature = frames.Signature.from_metadata(metadata)
        with self._lock:
            self._signatures[key] = signature
        return signature, False

    def _inference_stub(self) -> Any:
        from ferry_sdk import _serve_frames as frames

        with self._lock:
            if self._inference is None:
                self._inference = frames.inference_stub(self._channel)
            return self._inference

    def _forget(self, name: str) -> None:
        for key in [key for key in self._signatures if key[0] == name]:
            del self._signatures[key]
