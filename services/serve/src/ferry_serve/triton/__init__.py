"""Serve's Triton layer: find and run Triton, write its model repository, load and warm models.

- :mod:`~ferry_serve.triton.locate`: the ``tritonserver`` inside the ``nvidia-pytriton`` wheel.
- :mod:`~ferry_serve.triton.repository`: signature types, ``config.pbtxt`` generation, atomic
  model writes (one Triton model per registry model version: ``churn.3``).
- :mod:`~ferry_serve.triton.server`: :class:`EmbeddedTriton` (supervised child process) and
  :class:`ExternalTriton` (``FERRY_SERVE_TRITON_URL``).
- :mod:`~ferry_serve.triton.control`: :class:`TritonControl` (load, unload, ready, warm, index).
"""

from __future__ import annotations

from ferry_serve.triton.control import ModelState, TritonControl
from ferry_serve.triton.locate import TritonInstallation, locate_triton, prepare_backends, triton_environment
from ferry_serve.triton.repository import (
    DATATYPES,
    Backend,
    Batching,
    Signature,
    TensorSpec,
    model_config,
    remove_model,
    remove_staging,
    render_config,
    triton_model_name,
    write_model,
)
from ferry_serve.triton.server import EmbeddedTriton, ExternalTriton, OnRestart, TritonServer, TritonStartError

__all__ = [
    "DATATYPES",
    "Backend",
    "Batching",
    "EmbeddedTriton",
    "ExternalTriton",
    "ModelState",
    "OnRestart",
    "Signature",
    "TensorSpec",
    "TritonControl",
    "TritonInstallation",
    "TritonServer",
    "TritonStartError",
    "locate_triton",
    "model_config",
    "prepare_backends",
    "remove_model",
    "remove_staging",
    "render_config",
    "triton_environment",
    "triton_model_name",
    "write_model",
]
