"""Compact JSON forms of count arrays and sketches (zlib + base64)."""

from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["pack", "pack_bytes", "unpack", "unpack_bytes"]


def pack(array: npt.NDArray[Any]) -> dict[str, str]:
    """``{"dtype", "data"}``: the array in its smallest lossless little-endian dtype, zlib, base64.

    Counts are mostly small: storing them as ``uint8``/``uint16`` before zlib keeps a
    16,384-bin histogram to a few kilobytes.
    """
    if array.dtype.kind in "iu":
        low = int(array.min()) if array.size else 0
        high = int(array.max()) if array.size else 0
        for candidate in (np.uint8, np.uint16, np.uint32) if low >= 0 else ():
            if high <= np.iinfo(candidate).max:
                array = array.astype(candidate)
                break
        else:
            array = array.astype(np.int64)
    dtype = array.dtype.newbyteorder("<")
    data = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return {"dtype": dtype.str, "data": pack_bytes(zlib.compress(data, 6))}


def unpack(packed: dict[str, str], dtype: npt.DTypeLike) -> npt.NDArray[Any]:
    """Read :func:`pack`'s form back as an array of ``dtype``."""
    data = zlib.decompress(unpack_bytes(packed["data"]))
    return np.frombuffer(data, dtype=np.dtype(packed["dtype"])).astype(dtype)


def pack_bytes(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unpack_bytes(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
