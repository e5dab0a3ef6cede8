"""DataSketches HLL registers from whole Arrow string arrays, computed in numpy.

datasketches-python (5.2) updates an HLL sketch one value per Python call: for a
free-text column that is millions of calls, each holding the GIL (about 0.6 CPU-s per
200 MB of CSV, and every other thread of the ingest pipeline waiting meanwhile). It has
no bulk update for HLL or CPC, and no other well-kept package hashes an Arrow string
array the way DataSketches does. So this module does exactly what
``hll_sketch.update(str)`` does, a whole array at a time:

- the hash: MurmurHash3_x64_128 of the UTF-8 bytes with DataSketches' seed, 9001
  (``common/include/MurmurHash3.h``);
- the coupon: slot = the low ``lg_k`` bits of the first 64-bit half, value = the number of
  leading zeros of the second half plus one, at most 63 (``HllUtil::coupon``);
- the register keeps the largest value per slot; empty strings are ignored, as there.

:func:`sketch_of` hands the registers to datasketches as a serialized HLL_8 image
flagged out of order (so it estimates with its composite estimator, not HIP, which
depends on the order of updates; the same as any union result). Estimates, unions with
sketches that datasketches built value by value, and serialized profiles are therefore
those of DataSketches itself; tests check the registers against the library's own.
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from datasketches import hll_sketch

__all__ = ["SEED", "registers_of", "sketch_of", "update_registers"]

SEED = 9001
_C1 = np.uint64(0x87C37B91114253D5)
_C2 = np.uint64(0x4CF5AD432745937F)
_FMIX1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX2 = np.uint64(0xC4CEB9FE1A85EC53)
_FIVE = np.uint64(5)
_N1 = np.uint64(0x52DCE729)
_N2 = np.uint64(0x38495AB5)
_SIXTY_FOUR = np.uint64(64)
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
# How many strings are hashed at once: bounds the temporaries (a few arrays of this many
# 64-bit words, and 16 bytes per string for the tail) whatever the column's size.
_SLICE = 16_384

# Serialized HLL sketch (DataSketches' HllArray): preamble ints, serial version, family,
# lg_k, lg_arr, flags, cur_min, mode (HLL mode | HLL_8 target), HIP accumulator, kxq0,
# kxq1, number of registers at cur_min, aux count; then one byte per register.
_PREAMBLE = struct.Struct("<BBBBBBBBdddii")
_HLL_MODE_HLL8 = 2 | (2 << 2)
_OUT_OF_ORDER = 16


def _rotl(x: npt.NDArray[np.uint64], r: int) -> npt.NDArray[np.uint64]:
    result: npt.NDArray[np.uint64] = (x << np.uint64(r)) | (x >> np.uint64(64 - r))
    return result


def _fmix(h: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    h ^= h >> np.uint64(33)
    h *= _FMIX1
    h ^= h >> np.uint64(33)
    h *= _FMIX2
    h ^= h >> np.uint64(33)
    return h


def _words(aligned: npt.NDArray[np.uint64], at: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """The little-endian 64-bit word at each byte offset ``at``.

    ``aligned`` is the data as 64-bit words with two spare zero words at the end: an
    unaligned word is two aligned ones shifted together (numpy shifts by 64 to zero, so
    an aligned offset needs no special case).
    """
    shift = (at & 7).astype(np.uint64) << np.uint64(3)
    index = at >> 3
    word: npt.NDArray[np.uint64] = (aligned[index] >> shift) | (aligned[index + 1] << (_SIXTY_FOUR - shift))
    return word


def _tail_words(
    aligned: npt.NDArray[np.uint64], at: npt.NDArray[np.int64], end: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint64]:
    """:func:`_words`, bytes at or past ``end`` (at most 8 bytes ahead of ``at``) read as zero."""
    word = _words(aligned, at)
    remaining = np.clip(end - at, 0, 8).astype(np.uint64)
    word &= _ALL_ONES >> (_SIXTY_FOUR - (remaining << np.uint64(3)))
    return word


def _murmur3(
    data: npt.NDArray[np.uint64], starts: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """MurmurHash3_x64_128 (seed :data:`SEED`) of each ``data[start:start + length]``."""
    h1 = np.full(starts.size, SEED, dtype=np.uint64)
    h2 = h1.copy()
    ends = starts + lengths
    blocks = lengths // 16
    with np.errstate(over="ignore"):
        shortest = int(blocks.min(initial=0))
        for block in range(int(blocks.max(initial=0))):
            # Every string has this block (the usual case: a slice, no copies) or some do.
            rows: slice | npt.NDArray[np.int64] = slice(None) if block < shortest else np.flatnonzero(blocks > block)
            at = starts[rows] + 16 * block
            k1 = _words(data, at)
            k1 *= _C1
            k1 = _rotl(k1, 31)
            k1 *= _C2
            a = h1[rows] ^ k1
            a = _rotl(a, 27)
            a += h2[rows]
            a *= _FIVE
            a += _N1
            k2 = _words(data, at + 8)
            k2 *= _C2
            k2 = _rotl(k2, 33)
            k2 *= _C1
            b = h2[rows] ^ k2
            b = _rotl(b, 31)
            b += a
            b *= _FIVE
            b += _N2
            h1[rows] = a
            h2[rows] = b
        # The tail (0-15 bytes), zero-padded: a zero word changes nothing, as in the
        # reference code's switch that skips the missing bytes.
        tail = starts + 16 * blocks
        k1 = _rotl(_tail_words(data, tail, ends) * _C1, 31) * _C2
        h1 ^= k1
        k2 = _rotl(_tail_words(data, tail + 8, ends) * _C2, 33) * _C1
        h2 ^= k2
        length = lengths.astype(np.uint64)
        h1 ^= length
        h2 ^= length
        h1 += h2
        h2 += h1
        h1 = _fmix(h1)
        h2 = _fmix(h2)
        h1 += h2
        h2 += h1
    return h1, h2


def _leading_zeros(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """Leading zero bits of each 64-bit word (64 for zero), exactly (32-bit halves are exact in float64)."""
    high = (x >> np.uint64(32)).astype(np.float64)
    low = (x & np.uint64(0xFFFFFFFF)).astype(np.float64)
    bits_high = np.frexp(high)[1].astype(np.int64)  # bit length; 0 for 0
    bits_low = np.frexp(low)[1].astype(np.int64)
    result: npt.NDArray[np.int64] = np.where(bits_high > 0, 32 - bits_high, 64 - bits_low)
    return result


def _strings(array: pa.Array) -> pa.Array:
    """``array`` as strings the way the profile shows its values (booleans as ``true``/``false``)."""
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return array
    return pc.cast(array, pa.large_string())


def update_registers(registers: npt.NDArray[np.uint8], values: pa.Array | pa.ChunkedArray, lg_k: int) -> None:
    """Add the non-null ``values`` (strings or booleans) to ``registers`` (``2**lg_k`` bytes)."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    mask = np.uint64((1 << lg_k) - 1)
    for chunk in chunks:
        if chunk.null_count:
            chunk = chunk.drop_null()
        for first in range(0, len(chunk), _SLICE):
            strings = _strings(chunk.slice(first, _SLICE))
            if not len(strings):
                continue
            _, offsets_buffer, data_buffer = strings.buffers()
            wide = pa.types.is_large_string(strings.type)
            raw_offsets = np.frombuffer(offsets_buffer, dtype=np.int64 if wide else np.int32)
            offsets: npt.NDArray[np.int64] = raw_offsets[strings.offset : strings.offset + len(strings) + 1].astype(
                np.int64
            )
            first_byte, end_byte = int(offsets[0]), int(offsets[-1])
            # This slice's bytes as 64-bit words, with spare zero words (a tail word may start 8 bytes past the end).
            data = np.zeros((end_byte - first_byte) // 8 + 3, dtype=np.uint64)
            if end_byte > first_byte and data_buffer is not None:
                raw = np.frombuffer(data_buffer, dtype=np.uint8, count=end_byte - first_byte, offset=first_byte)
                data.view(np.uint8)[: raw.size] = raw
            starts, lengths = offsets[:-1] - first_byte, np.diff(offsets)
            if not lengths.all():  # DataSketches ignores empty strings
                starts, lengths = starts[lengths > 0], lengths[lengths > 0]
            h1, h2 = _murmur3(data, starts, lengths)
            slots = (h1 & mask).astype(np.int64)
            coupons = np.minimum(_leading_zeros(h2), 62) + 1
            np.maximum.at(registers, slots, coupons.astype(np.uint8))


def registers_of(values: pa.Array | pa.ChunkedArray, lg_k: int) -> npt.NDArray[np.uint8]:
    """The HLL registers of ``values`` (see :func:`update_registers`)."""
    registers = np.zeros(1 << lg_k, dtype=np.uint8)
    update_registers(registers, values, lg_k)
    return registers


def sketch_of(registers: npt.NDArray[np.uint8], lg_k: int) -> hll_sketch:
    """A datasketches HLL sketch holding ``registers`` (as from :func:`update_registers`)."""
    values = registers.astype(np.int64)
    inverse = np.ldexp(1.0, -values)
    kxq0 = float(inverse[values < 32].sum())
    kxq1 = float(inverse[values >= 32].sum())
    zeros = int((registers == 0).sum())
    preamble = _PREAMBLE.pack(10, 1, 7, lg_k, 0, _OUT_OF_ORDER, 0, _HLL_MODE_HLL8, 0.0, kxq0, kxq1, zeros, 0)
    sketch: hll_sketch = hll_sketch.deserialize(preamble + registers.tobytes())
    return sketch
