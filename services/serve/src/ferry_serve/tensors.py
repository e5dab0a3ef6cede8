"""Triton tensors on the wire: checking requests against a signature, decoding for samples.

Only the check runs on the request path, and it reads sizes, never values. Decoding
(numpy arrays from ``raw_*_contents`` or the typed ``contents``) runs off the request
path, for monitor samples and shadow comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2
from tritonclient.utils import deserialize_bytes_tensor

from ferry_common.errors import InvalidArgument
from ferry_common.names import shorten

__all__ = ["MAX_ECHOED_CHARS", "RequestSpecs", "check_inputs", "decode_inputs", "decode_outputs", "to_json_values"]

ITEM_BYTES = {
    "BOOL": 1,
    "UINT8": 1,
    "INT8": 1,
    "UINT16": 2,
    "INT16": 2,
    "FP16": 2,
    "BF16": 2,
    "UINT32": 4,
    "INT32": 4,
    "FP32": 4,
    "UINT64": 8,
    "INT64": 8,
    "FP64": 8,
}
_NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "INT8": np.int8,
    "UINT16": np.uint16,
    "INT16": np.int16,
    "FP16": np.float16,
    "UINT32": np.uint32,
    "INT32": np.int32,
    "FP32": np.float32,
    "UINT64": np.uint64,
    "INT64": np.int64,
    "FP64": np.float64,
}
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "UINT64": "uint64_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


# Triton's shared-memory parameters: serve registers no region (its shared-memory RPCs
# answer UNIMPLEMENTED), so a tensor naming one can only fail, and Triton's NOT_FOUND for
# the region would read as a version being swapped (UNAVAILABLE: retry) to the gateway.
_SHARED_MEMORY_PARAMETERS = ("shared_memory_region", "shared_memory_offset", "shared_memory_byte_size")
# Triton quotes request ids, parameter keys and output names whole in its errors, and the
# gateway passes its message on: longer ones would not fit a client's trailers (8 KB).
MAX_ECHOED_CHARS = 256


class RequestSpecs(dict[str, tuple[str, tuple[int, ...]]]):
    """What a ModelInfer request is checked against: input name -> (datatype, shape), and
    ``outputs``: output name -> datatype."""

    def __init__(
        self, inputs: Mapping[str, tuple[str, tuple[int, ...]]], outputs: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(inputs)
        self.outputs: Mapping[str, str] = dict(outputs or {})


def _check_parameters(parameters: Mapping[str, Any], field: str) -> None:
    for key in parameters:
        if len(key) > MAX_ECHOED_CHARS:
            raise InvalidArgument(
                f"{field}: key {shorten(key)} is longer than {MAX_ECHOED_CHARS} characters",
                field=field,
            )
    for key in _SHARED_MEMORY_PARAMETERS:
        if key in parameters:
            raise InvalidArgument(
                f"{field}: {key!r}: this gateway serves no shared memory; send the tensor's data in the request",
                field=field,
            )


def _check_outputs(request: service_pb2.ModelInferRequest, outputs: Mapping[str, str], where: str) -> None:
    for index, output in enumerate(request.outputs):
        field = f"outputs[{index}]"
        if output.name not in outputs:
            raise InvalidArgument(
                f"{field}.name: {shorten(output.name)} is not an output of {where} (outputs: {', '.join(outputs)})",
                field=f"{field}.name",
            )
        if not output.parameters:
            continue
        _check_parameters(output.parameters, f"{field}.parameters")
        # Asked to classify a BYTES output, the bundled tritonserver dies of SIGFPE, taking
        # every deployment down until it is restarted (found by services/serve/tests/test_fuzz.py).
        if "classification" in output.parameters and outputs.get(output.name) == "BYTES":
            raise InvalidArgument(
                f"{field}.parameters: 'classification' of output {shorten(output.name)}: it is BYTES; "
                "only numeric outputs can be ranked",
                field=f"{field}.parameters",
            )


def check_inputs(
    request: service_pb2.ModelInferRequest,
    specs: RequestSpecs,
    where: str,
) -> None:
    """Refuse a request whose inputs do not match the signature (names, datatypes, shapes, sizes).

    ``where`` names the deployment and version for the message. Errors name the field
    (``inputs[1].datatype``) and the tensor. The requested outputs are checked too (names
    of the signature, no ``classification`` of a BYTES output); shared-memory parameters
    are refused, and the request id and parameter keys are at most
    :data:`MAX_ECHOED_CHARS` characters (Triton quotes them in its errors).
    """
    if len(request.id) > MAX_ECHOED_CHARS:
        raise InvalidArgument(f"id: {shorten(request.id)} is longer than {MAX_ECHOED_CHARS} characters", field="id")
    if request.parameters:
        _check_parameters(request.parameters, "parameters")
    if request.outputs:
        _check_outputs(request, specs.outputs, where)
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(
            f"raw_input_contents: {len(raw)} buffers for {len(request.inputs)} inputs", field="raw_input_contents"
        )
    seen: set[str] = set()
    for index, tensor in enumerate(request.inputs):
        spec = specs.get(tensor.name)
        if spec is None:
            raise InvalidArgument(
                f"inputs[{index}].name: {shorten(tensor.name)} is not an input of {where} (inputs: {', '.join(specs)})",
                field=f"inputs[{index}].name",
            )
        if tensor.name in seen:
            raise InvalidArgument(
                f"inputs[{index}].name: {tensor.name!r} is given twice", field=f"inputs[{index}].name"
            )
        seen.add(tensor.name)
        if tensor.parameters:
            _check_parameters(tensor.parameters, f"inputs[{index}].parameters")
        datatype, shape = spec
        if tensor.datatype != datatype:
            raise InvalidArgument(
                f"inputs[{index}].datatype: input {tensor.name!r} of {where} is {datatype}, "
                f"not {shorten(tensor.datatype)}",
                field=f"inputs[{index}].datatype",
            )
        dims = list(tensor.shape)
        if len(dims) != len(shape) or any(d < 0 or (s != -1 and d != s) for d, s in zip(dims, shape, strict=False)):
            raise InvalidArgument(
                f"inputs[{index}].shape: input {tensor.name!r} of {where} has shape {list(shape)} "
                f"(-1: any size), not {dims[:8]}",
                field=f"inputs[{index}].shape",
            )
        size = ITEM_BYTES.get(datatype)
        if raw and size is not None:
            expected = math.prod(dims) * size
            if len(raw[index]) != expected:
                raise InvalidArgument(
                    f"inputs[{index}]: input {tensor.name!r} holds {len(raw[index])} bytes; shape {dims} of "
                    f"{datatype} needs {expected}",
                    field=f"inputs[{index}]",
                )
    missing = [name for name in specs if name not in seen]
    if missing:
        raise InvalidArgument(f"inputs: {where} needs {', '.join(repr(m) for m in missing[:10])} too", field="inputs")


def _decode(datatype: str, shape: list[int], raw: bytes | None, contents: Any) -> np.ndarray[Any, Any]:
    if raw is not None:
        if datatype == "BYTES":
            array = np.asarray(deserialize_bytes_tensor(raw))
        else:
            array = np.frombuffer(raw, dtype=_NUMPY.get(datatype, np.uint8))
    else:
        field = _CONTENTS_FIELD.get(datatype)
        values = list(getattr(contents, field)) if field else []
        array = np.array(values, dtype=object if datatype == "BYTES" else _NUMPY.get(datatype, np.float64))
    try:
        shaped: np.ndarray[Any, Any] = array.reshape(shape)
    except ValueError:
        return np.asarray(array)
    return shaped


def decode_inputs(request: service_pb2.ModelInferRequest) -> dict[str, np.ndarray[Any, Any]]:
    raw = request.raw_input_contents
    return {
        tensor.name: _decode(tensor.datatype, list(tensor.shape), raw[i] if raw else None, tensor.contents)
        for i, tensor in enumerate(request.inputs)
    }


def decode_outputs(response: service_pb2.ModelInferResponse) -> dict[str, np.ndarray[Any, Any]]:
    raw = response.raw_output_contents
    return {
        tensor.name: _decode(tensor.datatype, list(tensor.shape), raw[i] if raw else None, tensor.contents)
        for i, tensor in enumerate(response.outputs)
    }


def to_json_values(array: np.ndarray[Any, Any]) -> list[Any]:
    """A tensor as JSON values, row by row (``[-1, 1]`` columns become flat lists)."""
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.dtype == object:
        return (
            [
                value.decode("utf-8", "replace") if isinstance(value, bytes) else _json_scalar(value)
                for value in array.reshape(-1).tolist()
            ]
            if array.ndim <= 1
            else [to_json_values(row) for row in array]
        )
    values: list[Any] = array.tolist()
    return [_clean(v) for v in values]


def _json_scalar(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value
