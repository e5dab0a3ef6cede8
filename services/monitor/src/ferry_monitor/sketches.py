"""Latency sketches: DDSketch (``ddsketch``) with a fixed relative accuracy, and their bytes.

Every sketch of monitor has the same parameters, so any two merge. Durations are in
milliseconds, from span timestamps in whole nanoseconds: a sketch's dense store holds one
bin per factor of 1.01 between its smallest and largest non-zero value, so whatever the
number of spans it never holds more than about 3,700 bins (1 ns to a year); a zero
duration goes to the zero count.

Bytes are DDSketch's own protobuf (``ddsketch.pb.proto``), readable by any DDSketch
implementation.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence

import numpy as np
from ddsketch import DDSketch
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.pb.ddsketch_pb2 import DDSketch as DDSketchMessage
from ddsketch.pb.proto import DDSketchProto

__all__ = [
    "RELATIVE_ACCURACY",
    "Sketch",
    "SketchCache",
    "add_all",
    "decode",
    "encode",
    "merged",
    "new_sketch",
    "quantile",
]

# A quantile read from a sketch is within 0.5 % of the value at that rank.
RELATIVE_ACCURACY = 0.005

Sketch = BaseDDSketch


def new_sketch() -> Sketch:
    """An empty sketch with monitor's parameters."""
    return DDSketch(relative_accuracy=RELATIVE_ACCURACY)


def add_all(sketch: Sketch, values: Sequence[float]) -> None:
    """Add non-negative ``values`` at once: what ``sketch.add`` on each would do, at numpy speed.

    The keys are the sketch's own :class:`~ddsketch.mapping.LogarithmicMapping` formula
    (``ceil(log2(v) * multiplier) + offset``) on an array; each distinct key is then added
    to the store once with its count. ``tests/test_sketches.py`` checks that the result
    equals one ``add`` per value.
    """
    if not len(values):
        return
    array = np.asarray(values, dtype=np.float64)
    mapping = sketch._mapping
    positive = array[array > mapping.min_possible]
    if len(positive):
        keys = np.ceil(np.log2(positive) * mapping._multiplier) + mapping._offset
        found, counts = np.unique(keys.astype(np.int64), return_counts=True)
        store = sketch._store
        for key, count in zip(found.tolist(), counts.tolist(), strict=True):
            store.add(key, float(count))
    sketch._zero_count += float(len(array) - len(positive))
    sketch._count += float(len(array))
    sketch._sum += float(array.sum())
    sketch._min = min(sketch._min, float(array.min()))
    sketch._max = max(sketch._max, float(array.max()))


def encode(sketch: Sketch) -> bytes:
    """The sketch as DDSketch protobuf bytes (counts only: monitor keeps max and count beside it)."""
    data: bytes = DDSketchProto.to_proto(sketch).SerializeToString()  # type: ignore[no-untyped-call]
    return data


def decode(data: bytes) -> Sketch:
    """A sketch from :func:`encode`'s bytes."""
    message = DDSketchMessage()
    message.ParseFromString(data)
    sketch: Sketch = DDSketchProto.from_proto(message)  # type: ignore[no-untyped-call]
    return sketch


def quantile(sketch: Sketch, q: float) -> float:
    """The value at quantile ``q`` (0 for an empty sketch)."""
    value = sketch.get_quantile_value(q)
    return float(value) if value is not None else 0.0


class SketchCache:
    """Decoded sketches of stored rows, so that hot rows are not decoded on every read or write.

    An entry is valid while the row's count is the one it was cached with: a row's count only
    grows, and every write replaces the entry. Cached sketches are never changed in place
    (a writer builds a new one), so a reader may merge from one while a writer runs.
    Bounded: the least recently used entries go first.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[Hashable, tuple[int, Sketch]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, count: int, data: bytes) -> Sketch:
        """The sketch of a row with ``count`` spans and bytes ``data``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == count:
                self._entries.move_to_end(key)
                return entry[1]
        sketch = decode(data)
        self.put(key, count, sketch)
        return sketch

    def put(self, key: Hashable, count: int, sketch: Sketch) -> None:
        with self._lock:
            self._entries[key] = (count, sketch)
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)


def merged(*parts: Sketch) -> Sketch:
    """A new sketch holding every value of ``parts`` (the parts are left unchanged)."""
    total = new_sketch()
    for part in parts:
        total.merge(part)
    return total
