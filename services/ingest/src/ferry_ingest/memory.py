"""Allocator settings that keep the ingest process's resident memory flat.

Uploads move through the process as many short-lived multi-megabyte buffers (gRPC
messages, read blocks, record batches) allocated on several threads. With glibc's
defaults such buffers land in per-thread arenas whose freed space is kept, and
mimalloc (Arrow's default pool) keeps freed pages per thread too, so resident
memory creeps up hundreds of megabytes above what is in use. Here, buffers above
192 KiB are mapped and unmapped directly (returned to the OS on free), arenas are
capped at 2, and Arrow allocates through the same system allocator: pyarrow's calls
through :func:`tune_allocators`, and Arrow's C++ code that allocates without being
handed a pool (Acero's group-by, which the profile's categorical columns use) through
``ARROW_DEFAULT_MEMORY_POOL=system``, set by ``ferry_ingest/__init__.py`` because Arrow
reads it only once, when pyarrow loads. Without the latter, saturating the profile of
one free-text column (131,072 mostly distinct strings in the first row group) left
about 40 MB more resident in mimalloc's pages, and a process's peak grew by 10-40 MB
with each of its first uploads of such a table (bench/ingest/README.md).

pyarrow also imports pandas, when it is installed, on its first array conversion,
only to check whether objects are pandas objects. The ingest process never hands
pandas objects to pyarrow, and pandas is no dependency of it, but a shared virtual
environment (``make demo``, the test suite) has it: that import alone is about 40 MB
resident. :func:`keep_pandas_out` lets pyarrow see the environment the service
declares.

:func:`release_free_memory` (glibc ``malloc_trim``) runs after each commit and every
few row groups of a long conversion, so freed heap does not accumulate across requests.

Measured on a 1 GB CSV upload in the shared environment: peak RSS 235-280 MB instead
of about 430 MB, same throughput. The threshold was 256 KiB until the conversion's
threads overlapped more (bench/ingest/README.md); with them, the 1 GB CSV of the peers
benchmark's 10 columns peaked at 301-310 MB on Ceph RGW with 256 KiB, 280-284 MB with
192 KiB (as fast: 20.0-22.1 s against 20.3 s) and 267-269 MB with 128 KiB (15-20 %
slower: mmap, munmap and page faults per block).

:func:`bound_receive_window` keeps gRPC from buffering an upload the process has not
read yet. With gRPC's default BDP probing, the server's HTTP/2 receive window grows
with the bandwidth it measures; on loopback that is hundreds of megabytes per second,
so whenever the event loop falls behind the sender (the process starved of CPU by its
neighbours, e.g. the test suite's torch workers on a 2-core runner) the transport reads
the sender's data ahead into heap slices. The 1 GB upload then peaked anywhere between
250 and 650 MB from one run to the next, all of the extra while receiving: live small
allocations in the glibc arenas (up to 175 MB in use, against about 55 MB normally),
not Arrow memory (under 12 MB). A bare gRPC server reading 4 MiB messages 0.1 s apart
reached 300 MB resident with the probe, 56 MB without it. Without it the window stays
at its default and a message is let in when the servicer asks for it (gRPC then
announces the window that message needs), so in flight there is about one message.
Throughput on loopback is bounded by conversion; over a long, fast network a fixed
window may cost upload speed (not measured yet: bench/ingest runs on loopback).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.abc
import sys
from typing import Any

import grpc.aio
import pyarrow as pa

__all__ = ["bound_receive_window", "keep_pandas_out", "release_free_memory", "tune_allocators"]

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


class _PandasBlocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"{name} is not loaded in the ingest process", name=name)


def keep_pandas_out() -> None:
    """Let pyarrow conclude once that pandas is absent, without importing it.

    pyarrow tries the import a single time and remembers the answer; the import
    system is left as it was, so anything that asks for pandas explicitly still
    gets it.
    """
    if "pandas" in sys.modules:
        return
    blocker = _PandasBlocker()
    sys.meta_path.insert(0, blocker)
    try:
        pa.array([0])  # the first conversion makes pyarrow look for pandas
    finally:
        sys.meta_path.remove(blocker)


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 - glibc only (musl has no mallopt)
    except (OSError, AttributeError):
        return None
    return libc


def release_free_memory() -> None:
    """Hand memory freed by a finished request back to the OS (glibc ``malloc_trim``)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def tune_allocators(mmap_threshold: int = 192 * 1024, arena_max: int = 2) -> None:
    """Apply the settings above; call once, first thing in ``main()``."""
    pa.set_memory_pool(pa.system_memory_pool())
    libc = _libc()
    if libc is None:
        return
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
    mallopt(_M_ARENA_MAX, arena_max)


_NO_BDP_PROBE = ("grpc.http2.bdp_probe", 0)


def bound_receive_window() -> None:
    """Make gRPC servers made from now on in this process run without BDP probing (see above).

    The shared server (:func:`ferry_common.server.start_server`) builds its option list
    itself; the option is added to whatever servers this process creates, once, before
    :func:`ferry_common.server.run`.
    """
    create = grpc.aio.server
    if getattr(create, "_ferry_bounded", False):
        return

    def server(*args: Any, **kwargs: Any) -> grpc.aio.Server:
        kwargs["options"] = [*(kwargs.get("options") or ()), _NO_BDP_PROBE]
        return create(*args, **kwargs)

    server._ferry_bounded = True  # type: ignore[attr-defined]
    grpc.aio.server = server
