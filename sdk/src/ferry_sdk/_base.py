"""What every blocking client shares: the channel, deadlines, error mapping, paging."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from google.protobuf.message import Message
from opentelemetry.sdk.trace import TracerProvider

from ferry_common.client import create_sync_channel
from ferry_common.settings import Settings, load_settings
from ferry_sdk import errors
from ferry_sdk._sources import Chunks

__all__ = ["DEFAULT_TRANSFER_TIMEOUT", "SyncClient", "client_settings"]

T = TypeVar("T")
DEFAULT_TRANSFER_TIMEOUT = 600.0


def client_settings(service: str, settings: Settings | None, timeout: float | None) -> Settings:
    """The caller's settings (``FERRY_*`` variables when not given), with ``timeout`` as default deadline."""
    chosen = settings if settings is not None else load_settings(service)
    if timeout is not None:
        chosen = dataclasses.replace(chosen, call_timeout_seconds=timeout)
    return chosen


class SyncClient:
    """A blocking client of one Ferry service; a context manager that closes its channel."""

    _service: str = ""
    _service_names: Sequence[str] = ()

    def __init__(
        self,
        address: str | None = None,
        *,
        settings: Settings | None = None,
        timeout: float | None = None,
        transfer_timeout: float = DEFAULT_TRANSFER_TIMEOUT,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self._settings = client_settings(self._service, settings, timeout)
        self.address = address or self._settings.addresses[self._service]
        self._transfer_timeout = transfer_timeout
        self._channel = create_sync_channel(
            self._settings,
            self._service,
            self._service_names,
            tracer_provider=tracer_provider,
            target=self.address,
        )
        self._bind(self._channel)

    def _bind(self, channel: grpc.Channel) -> None:
        """Make the stubs (subclasses)."""

    @property
    def channel(self) -> grpc.Channel:
        """The underlying channel (for stubs this client does not wrap)."""
        return self._channel

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address!r})"

    def _transfer(self, timeout: float | None) -> float:
        return timeout if timeout is not None else self._transfer_timeout

    @staticmethod
    def _call(rpc: Callable[..., Any], request: Any, timeout: float | None = None) -> Any:
        try:
            return rpc(request, timeout=timeout)
        except grpc.RpcError as error:
            raise errors.from_rpc_error(error) from error

    @staticmethod
    def _stream(rpc: Callable[..., Any], request: Any, timeout: float | None) -> Iterator[Any]:
        call = rpc(request, timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as error:
            raise errors.from_rpc_error(error) from error
        finally:
            # A no-op once finished; frees the stream when the caller stops early.
            cancel = getattr(call, "cancel", None)
            if callable(cancel):
                cancel()

    def _upload(
        self,
        rpc: Callable[..., Any],
        first: Message,
        chunk_message: Callable[[bytes], Message],
        chunks: Chunks,
        timeout: float | None,
    ) -> Any:
        """A client-streaming upload: ``first``, then one message per chunk."""
        messages = itertools.chain([first], (chunk_message(chunk) for chunk in chunks))
        try:
            return self._call(rpc, messages, timeout)
        except errors.FerryError as error:
            if chunks.error is not None:
                raise chunks.error from error  # the caller's failing read, not gRPC's bare CANCELLED
            raise

    def _pages(
        self,
        rpc: Callable[..., Any],
        request: Any,
        items: Callable[[Any], Sequence[T]],
        timeout: float | None,
    ) -> Iterator[T]:
        """Every item of a List method, one page at a time, as the caller iterates."""
        while True:
            response = self._call(rpc, request, timeout)
            yield from items(response)
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token
