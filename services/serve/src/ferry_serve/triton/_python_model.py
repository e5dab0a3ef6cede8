"""Triton python-backend model that runs the version directory's ``model.onnx`` with onnxruntime.

Copied as ``model.py`` into every version directory that :func:`write_model` writes with
``backend="python"``; it runs inside Triton's Python backend stub, not in Ferry's process, so
it imports nothing from Ferry. Tensors are matched by name: Triton's config and the ONNX graph
are generated from the same signature.

Strings: Triton hands BYTES tensors over as numpy object arrays of ``bytes``; onnxruntime wants
``str`` for ``tensor(string)`` inputs and returns ``str``, which go back as UTF-8 ``bytes``.

With dynamic batching Triton may pass several requests to one ``execute``: they are run as one
onnxruntime call (rows concatenated, outputs split back) when their shapes allow it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

_THREADS_PARAMETER = "onnx_intra_op_threads"


def _to_onnx(array: Any, onnx_type: str) -> Any:
    if onnx_type == "tensor(string)":
        flat = [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in array.ravel()]
        return np.array(flat, dtype=object).reshape(array.shape)
    return array


def _to_triton(array: Any) -> Any:
    if array.dtype == object or array.dtype.kind == "U":
        flat = [item if isinstance(item, bytes) else str(item).encode("utf-8") for item in array.ravel()]
        return np.array(flat, dtype=object).reshape(array.shape)
    return array


class TritonPythonModel:
    """One onnxruntime session per model instance."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = config.get("parameters", {})
        threads = int(parameters.get(_THREADS_PARAMETER, {}).get("string_value", "1"))
        options = ort.SessionOptions()
        # Triton runs one stub per instance and many instances side by side: a small pool
        # per session keeps a host from being oversubscribed.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        self.input_types = {node.name: node.type for node in self.session.get_inputs()}
        self.output_names = [output["name"] for output in config["output"]]
        self.batched = int(config.get("max_batch_size", 0)) > 0

    def execute(self, requests: list[Any]) -> list[Any]:
        if self.batched and len(requests) > 1:
            try:
                return self._execute_together(requests)
            except Exception:
                pass  # a request that does not stack (or is bad): run each alone, so errors stay per request
        return [self._execute_one(request) for request in requests]

    def _inputs(self, request: Any) -> dict[str, Any]:
        feeds = {}
        for name, onnx_type in self.input_types.items():
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise KeyError(f"input {name!r} is missing")
            feeds[name] = _to_onnx(tensor.as_numpy(), onnx_type)
        return feeds

    def _respond(self, names: list[str], results: list[Any]) -> Any:
        tensors = [
            pb_utils.Tensor(name, _to_triton(np.asarray(value))) for name, value in zip(names, results, strict=True)
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def _execute_one(self, request: Any) -> Any:
        try:
            results = self.session.run(self.output_names, self._inputs(request))
            return self._respond(self.output_names, results)
        except Exception as error:  # one bad request must not fail the others of its batch
            return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(error)))

    def _execute_together(self, requests: list[Any]) -> list[Any]:
        feeds = [self._inputs(request) for request in requests]
        rows = [len(next(iter(feed.values()))) for feed in feeds]
        merged = {name: np.concatenate([feed[name] for feed in feeds], axis=0) for name in self.input_types}
        results = self.session.run(self.output_names, merged)
        bounds = np.cumsum(rows)[:-1]
        pieces = [np.split(np.asarray(result), bounds, axis=0) for result in results]
        return [self._respond(self.output_names, [piece[i] for piece in pieces]) for i in range(len(requests))]

    def finalize(self) -> None:
        self.session = None
