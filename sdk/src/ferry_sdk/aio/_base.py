"""What every asyncio client shares: the channel, deadlines, error mapping, paging."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message
from opentelemetry.sdk.trace import TracerProvider

from ferry_common.client import create_channel
from ferry_common.settings import Settings
from ferry_sdk import errors
from ferry_sdk._base import DEFAULT_TRANSFER_TIMEOUT, client_settings
from ferry_sdk._sources import Chunks

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient:
    """An asyncio client of one Ferry service; an async context manager that closes its channel."""

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
        self._channel = create_channel(
            self._settings,
            self._service,
            self._service_names,
            tracer_provider=tracer_provider,
            target=self.address,
        )
        self._bind(self._channel)

    def _bind(self, channel: grpc.aio.Channel) -> None:
        """Make the stubs (subclasses)."""

    @property
    def channel(self) -> grpc.aio.Channel:
        """The underlying channel (for stubs this client does not wrap)."""
        return self._channel

    async def close(self) -> None:
        await self._channel.close(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"aio.{type(self).__name__}({self.address!r})"

    def _transfer(self, timeout: float | None) -> float:
        return timeout if timeout is not None else self._transfer_timeout

    @staticmethod
    async def _call(rpc: Callable[..., Any], request: Any, timeout: float | None = None) -> Any:
        try:
            return await rpc(request, timeout=timeout)
        except grpc.RpcError as error:
            raise errors.from_rpc_error(error) from error

    @staticmethod
    async def _stream(rpc: Callable[..., Any], request: Any, timeout: float | None) -> AsyncIterator[Any]:
        call = rpc(request, timeout=timeout)
        try:
            async for message in call:
                yield message
        except grpc.RpcError as error:
            raise errors.from_rpc_error(error) from error
        finally:
            call.cancel()  # a no-op once finished; frees the stream when the caller stops early

    async def _upload(
        self,
        rpc: Callable[..., Any],
        first: Message,
        chunk_message: Callable[[bytes], Message],
        chunks: Chunks,
        timeout: float | None,
    ) -> Any:
        """A client-streaming upload: ``first``, then one message per chunk (read off the loop)."""

        async def messages() -> AsyncIterator[Message]:
            yield first
            async for chunk in chunks:
                yield chunk_message(chunk)

        try:
            return await self._call(rpc, messages(), timeout)
        except (errors.FerryError, asyncio.CancelledError) as error:
            # grpc.aio cancels the call when the request iterator raises: the caller's
            # failing read is the error to see, not a bare cancellation.
            if chunks.error is not None:
                raise chunks.error from error
            raise

    async def _pages(
        self,
        rpc: Callable[..., Any],
        request: Any,
        items: Callable[[Any], Sequence[T]],
        timeout: float | None,
    ) -> AsyncIterator[T]:
        """Every item of a List method, one page at a time, as the caller iterates."""
        while True:
            response = await self._call(rpc, request, timeout)
            for item in items(response):
                yield item
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token
