"""Where a job's checkpoints live in the object store, and how they get there and back.

A job's checkpoints are objects under ``training-jobs/<job_id>/checkpoints/``:
``epoch=<N>.ckpt`` per finished epoch (``N`` from 0, as Lightning and
``EpochMetrics.epoch`` count) and ``last.ckpt``, each with a ``.json`` beside it
holding that epoch's metrics. The metrics travel with the checkpoint because a
job resumed from the checkpoint of its final epoch trains nothing, and Lightning
then has no metrics to hand back: the sidecar gives them.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from ferry_common.errors import FailedPrecondition
from ferry_common.objectstore import ObjectStore

__all__ = [
    "JOBS_PREFIX",
    "CheckpointStore",
    "StoredCheckpoint",
    "checkpoint_prefix",
    "object_key",
]

JOBS_PREFIX = "training-jobs"
_METRICS_SUFFIX = ".json"


def checkpoint_prefix(job_id: str) -> str:
    """``training-jobs/<job_id>/checkpoints``: the key prefix of a job's checkpoints."""
    return f"{JOBS_PREFIX}/{job_id}/checkpoints"


def object_key(objects: ObjectStore, reference: str) -> str:
    """The key of a checkpoint given by key or by URI (what ``objects.uri`` returned).

    Args:
        objects: The store the checkpoint is in.
        reference: ``training-jobs/...`` or a URI such as ``s3://bucket/training-jobs/...``
            or ``file:///state/objects/training-jobs/...``.

    Returns:
        The object key.

    Raises:
        FailedPrecondition: A URI outside this store's ``training-jobs/``.
    """
    if "://" not in reference:
        return reference.lstrip("/")
    base = objects.uri(JOBS_PREFIX)
    if reference.startswith(base + "/"):
        tail = reference[len(base) :]
        # A file URI percent-encodes what a key keeps as is ("epoch%3D1.ckpt").
        for candidate in (JOBS_PREFIX + tail, JOBS_PREFIX + unquote(tail)):
            if objects.uri(candidate) == reference:
                return candidate
    raise FailedPrecondition(f"checkpoint {reference!r} is not under {base}/ in this object store")


@dataclass(frozen=True)
class StoredCheckpoint:
    """A checkpoint uploaded for one epoch.

    Attributes:
        epoch: Epoch number, from 0.
        key: Object key of ``epoch=<N>.ckpt``.
        uri: Its URI, as reported to the job.
    """

    epoch: int
    key: str
    uri: str


class CheckpointStore:
    """Uploads a job's local checkpoints and fetches one back to resume from."""

    def __init__(self, objects: ObjectStore, job_id: str) -> None:
        """Checkpoints of ``job_id`` in ``objects``."""
        self._objects = objects
        self.prefix = checkpoint_prefix(job_id)

    def key(self, filename: str) -> str:
        """Object key of a checkpoint file name (``epoch=3.ckpt``, ``last.ckpt``)."""
        return f"{self.prefix}/{filename}"

    def upload_epoch(self, epoch: int, local_dir: pathlib.Path, metrics: Mapping[str, float]) -> StoredCheckpoint:
        """Uploads ``epoch=<N>.ckpt`` and ``last.ckpt`` from ``local_dir``, each with its metrics.

        ``epoch=<N>.ckpt`` goes first and ``last.ckpt`` last, so ``last.ckpt`` is never
        newer than the numbered checkpoints already stored.

        Args:
            epoch: The finished epoch, from 0.
            local_dir: Where Lightning wrote the epoch's checkpoints.
            metrics: The epoch's metrics.

        Returns:
            Where the numbered checkpoint is.
        """
        payload = json.dumps({"epoch": epoch, "metrics": _finite(metrics)}, sort_keys=True).encode()
        key = self.key(f"epoch={epoch}.ckpt")
        info = self._objects.put_file(key, local_dir / f"epoch={epoch}.ckpt")
        self._objects.put_chunks(_metrics_key(key), [payload])
        last = self.key("last.ckpt")
        self._objects.put_chunks(_metrics_key(last), [payload])
        self._objects.put_file(last, local_dir / "last.ckpt")
        return StoredCheckpoint(epoch=epoch, key=key, uri=info.uri)

    def fetch(self, reference: str, directory: pathlib.Path) -> tuple[pathlib.Path, dict[str, float]]:
        """Downloads a checkpoint (key or URI) and the metrics stored beside it.

        Args:
            reference: The checkpoint's key or URI.
            directory: Where to put the local copy.

        Returns:
            The local checkpoint file and its epoch's metrics (empty when none were stored).

        Raises:
            NotFound: The checkpoint does not exist.
            FailedPrecondition: A URI outside this store.
        """
        key = object_key(self._objects, reference)
        directory.mkdir(parents=True, exist_ok=True)
        local = directory / key.rsplit("/", 1)[-1]
        self._objects.download(key, local)
        metrics: dict[str, float] = {}
        sidecar = _metrics_key(key)
        if self._objects.exists(sidecar):
            data = b"".join(self._objects.iter_chunks(sidecar))
            metrics = {str(k): float(v) for k, v in json.loads(data)["metrics"].items() if v is not None}
        return local, metrics


def _metrics_key(checkpoint_key: str) -> str:
    return checkpoint_key.removesuffix(".ckpt") + _METRICS_SUFFIX


def _finite(metrics: Mapping[str, float]) -> dict[str, float | None]:
    # JSON has no NaN; a non-finite value is stored as null (the run fails on it anyway).
    return {name: (value if math.isfinite(value) else None) for name, value in metrics.items()}
