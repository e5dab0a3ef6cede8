"""Re-encodes a stored Parquet file for ReadDataset: a column subset, or CSV.

Batches are read from the local file and written to an in-memory sink that is
drained after every batch, so memory holds one batch and one chunk.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ferry_ingest.domain import DataFormat
from ferry_ingest.parquet_output import PARQUET_COMPRESSION

__all__ = ["encode"]


class _Sink:
    """A write-only file object whose contents are taken out as they come."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self._buffer += data
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def take(self, size: int) -> Iterator[bytes]:
        """Chunks of ``size`` bytes while that many are buffered."""
        while len(self._buffer) >= size:
            yield bytes(self._buffer[:size])
            del self._buffer[:size]

    def rest(self) -> bytes:
        data, self._buffer = bytes(self._buffer), bytearray()
        return data


def encode(path: pathlib.Path, fmt: DataFormat, columns: Sequence[str], chunk_bytes: int) -> Iterator[bytes]:
    """The file at ``path`` (only ``columns`` when given) as Parquet or CSV chunks."""
    sink = _Sink()
    with pq.ParquetFile(path) as parquet:
        schema = parquet.schema_arrow
        if columns:
            schema = pa.schema([schema.field(name) for name in columns])
        writer: pq.ParquetWriter | pacsv.CSVWriter
        if fmt is DataFormat.CSV:
            writer = pacsv.CSVWriter(pa.PythonFile(sink, mode="w"), schema)
        else:
            writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, compression=PARQUET_COMPRESSION)
        for batch in parquet.iter_batches(batch_size=65_536, columns=list(columns) or None):
            if isinstance(writer, pq.ParquetWriter):
                writer.write_table(pa.Table.from_batches([batch], schema=schema))
            else:
                writer.write_batch(batch)
            yield from sink.take(chunk_bytes)
        writer.close()
    yield from sink.take(chunk_bytes)
    if rest := sink.rest():
        yield rest
