"""Serve's own settings, read once from the ``FERRY_SERVE_*`` variables (README "Settings")."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import cast

from ferry_common.settings import Settings, SettingsError
from ferry_serve.triton import Backend

__all__ = ["ServeConfig"]

_BACKENDS = ("python", "onnxruntime")


@dataclass(frozen=True)
class ServeConfig:
    """Serve-specific configuration.

    Attributes:
        database_url: SQLAlchemy URL of serve's database (``<state>/serve.db`` by default).
        model_repository: Triton's model repository (shared with an external Triton).
        triton_url: an external Triton's gRPC ``host:port``; empty starts the embedded one.
        triton_backend: ``python`` (the embedded Triton runs ONNX through onnxruntime in its
            python backend) or ``onnxruntime`` (NVIDIA's image, native backend).
        max_request_bytes: the largest ModelInfer request accepted (RESOURCE_EXHAUSTED above).
        poll_ms: how often the deployments table is read for changes made by other replicas.
        drain_seconds: how long a replaced version may finish its in-flight requests before it
            is unloaded anyway.
        sample_queue: inference samples waiting for monitor; more are dropped (and counted).
        shadow_concurrency: shadow requests in flight at once; more are dropped (and counted).
        db_threads: threads (and pooled connections) for database reads.
        triton_ready_seconds: how long a start waits for Triton (an external GPU Triton may
            take minutes to come up).
        retry_max_ms: the longest wait between retries of a deployment whose apply failed
            because the registry (or its download) or Triton could not be reached; the first
            retry comes after 500 ms, each further one waits twice as long up to this.
    """

    database_url: str
    model_repository: pathlib.Path
    triton_url: str = ""
    triton_backend: Backend = "python"
    max_request_bytes: int = 16 * 1024 * 1024
    poll_ms: int = 500
    drain_seconds: float = 30.0
    sample_queue: int = 10_000
    shadow_concurrency: int = 64
    db_threads: int = 4
    triton_ready_seconds: int = 60
    retry_max_ms: int = 10_000

    @classmethod
    def from_settings(cls, settings: Settings) -> ServeConfig:
        """Read and validate the ``FERRY_SERVE_*`` variables.

        Raises:
            SettingsError: a variable is malformed; the message names it and its value.
        """
        backend = settings.get_str("FERRY_SERVE_TRITON_BACKEND", "python")
        if backend not in _BACKENDS:
            raise SettingsError(f"FERRY_SERVE_TRITON_BACKEND={backend!r}: use one of {', '.join(_BACKENDS)}")
        repository = settings.get_str("FERRY_SERVE_MODEL_REPOSITORY", "")
        return cls(
            database_url=settings.resolved_database_url(),
            model_repository=pathlib.Path(repository) if repository else settings.state_dir / "triton" / "models",
            triton_url=settings.get_str("FERRY_SERVE_TRITON_URL", ""),
            triton_backend=cast(Backend, backend),
            max_request_bytes=settings.get_int("FERRY_SERVE_MAX_REQUEST_BYTES", 16 * 1024 * 1024, minimum=1024),
            poll_ms=settings.get_int("FERRY_SERVE_POLL_MS", 500, minimum=10),
            drain_seconds=settings.get_int("FERRY_SERVE_DRAIN_SECONDS", 30, minimum=0),
            sample_queue=settings.get_int("FERRY_SERVE_SAMPLE_QUEUE", 10_000, minimum=1),
            shadow_concurrency=settings.get_int("FERRY_SERVE_SHADOW_CONCURRENCY", 64, minimum=1),
            db_threads=settings.get_int("FERRY_SERVE_DB_THREADS", 4, minimum=1),
            triton_ready_seconds=settings.get_int("FERRY_SERVE_TRITON_READY_TIMEOUT_SECONDS", 60, minimum=1),
            retry_max_ms=settings.get_int("FERRY_SERVE_RETRY_MAX_MS", 10_000, minimum=500),
        )
