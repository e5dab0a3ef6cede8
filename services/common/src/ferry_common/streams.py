"""Stream plumbing every service shares: header-then-chunks uploads, blocking iterators served async.

Client-streaming uploads (UploadDataset, UploadModelVersion) all have the same shape: a
first message carrying a ``header``, then messages carrying ``chunk`` bytes, in a
``oneof payload``. :func:`header_then_chunks` reads that shape and refuses every other
order with INVALID_ARGUMENT naming ``header``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterator
from typing import Any, TypeVar

from ferry_common.errors import InvalidArgument

__all__ = ["header_then_chunks", "iterate_in_thread"]

T = TypeVar("T")
_END = object()


async def header_then_chunks(
    messages: AsyncIterable[Any], *, oneof: str = "payload", header: str = "header", chunk: str = "chunk"
) -> tuple[Any, AsyncIterator[bytes]]:
    """The header of a header-then-chunks stream, and an async iterator of its chunks.

    Raises:
        InvalidArgument: the stream is empty or its first message has no header
            (immediately); a later message carries a header (when the chunks reach it).
    """
    stream = aiter(messages)
    first = await anext(stream, None)
    if first is None or first.WhichOneof(oneof) != header:
        raise InvalidArgument(f"{header}: the first message of the stream must carry the {header}", field=header)

    async def chunks() -> AsyncIterator[bytes]:
        number = 1
        async for message in stream:
            number += 1
            kind = message.WhichOneof(oneof)
            if kind == header:
                raise InvalidArgument(
                    f"{header}: only the first message may carry the {header} (message {number} does)", field=header
                )
            if kind == chunk:
                data: bytes = getattr(message, chunk)
                if data:
                    yield data

    return getattr(first, header), chunks()


async def iterate_in_thread(iterator: Iterator[T]) -> AsyncGenerator[T, None]:
    """Serve a blocking iterator (object-store reads, file encoders) from worker threads.

    One item at a time: memory holds one item whatever the length, and the event loop
    never blocks. The iterator is closed (when it has ``close``) however the caller stops.
    """
    try:
        while (item := await asyncio.to_thread(next, iterator, _END)) is not _END:
            yield item  # type: ignore[misc]
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
