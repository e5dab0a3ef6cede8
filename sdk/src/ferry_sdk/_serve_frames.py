"""Rows as Triton tensors and back, for ``ServeClient.predict`` (both client flavours).

numpy, pandas and tritonclient are imported here only, so ``import ferry_sdk`` needs none
of them (``pip install 'ferry-sdk[serve]'`` brings them).

Tabular models take one ``[-1, 1]`` tensor per raw feature column (DESIGN "serve"), so a
request is built column by column from the deployment's signature (Triton's
``ModelMetadata``): numeric inputs in their declared type (FP32 for train's exports, NaN
kept), ``BYTES`` inputs as UTF-8 with ``None``/NaN as ``""``. Columns that are not inputs
are not sent, but stay in the result. A missing input is left for serve to report (its
error names the tensor). Every tensor goes in ``raw_input_contents``, as tritonclient sends
them.

The answer is the input frame with the outputs joined, one column per ``[-1, 1]`` output
(strings decoded, floats as float64) and one per class for ``[-1, K]`` outputs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from ferry_common.names import shorten
from ferry_sdk import errors

__all__ = [
    "PROBABILITIES",
    "Signature",
    "TensorMeta",
    "infer_request",
    "inference_stub",
    "metadata_request",
    "result_frame",
    "to_frame",
]

PROBABILITIES = "probabilities"
LABEL = "label"


def _numpy_dtype(datatype: str) -> Any:
    """numpy's type for a fixed-size Triton datatype (tritonclient's table); None for BYTES or unknown."""
    from tritonclient.utils import triton_to_np_dtype

    return None if datatype == "BYTES" else triton_to_np_dtype(datatype)


# Where a response that does not use raw_output_contents keeps each datatype's values.
_CONTENTS = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


@dataclass(frozen=True)
class TensorMeta:
    """One tensor of a signature: name, Triton datatype, shape (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Signature:
    """A deployment's inputs and outputs, from Triton's ``ModelMetadata`` as serve answers it.

    Attributes:
        version: the version whose signature this is (what serve's primary route served).
    """

    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]
    version: str

    @classmethod
    def from_metadata(cls, metadata: Any) -> Signature:
        def tensors(items: Any) -> tuple[TensorMeta, ...]:
            return tuple(TensorMeta(t.name, t.datatype, tuple(int(d) for d in t.shape)) for t in items)

        version = metadata.versions[0] if metadata.versions else ""
        return cls(tensors(metadata.inputs), tensors(metadata.outputs), version)

    def describe(self, deployment: str) -> str:
        """``deployment 'iris' (signature of version 2)``, for messages."""
        where = f"deployment {deployment!r}"
        return f"{where} (signature of version {self.version})" if self.version else where


def inference_stub(channel: Any) -> Any:
    """Triton's generated ``GRPCInferenceService`` stub on a client's channel (sync or aio)."""
    return service_pb2_grpc.GRPCInferenceServiceStub(channel)


def metadata_request(deployment: str, version: str) -> service_pb2.ModelMetadataRequest:
    return service_pb2.ModelMetadataRequest(name=deployment, version=version)


def to_frame(inputs: Any) -> pd.DataFrame:
    """A DataFrame of ``inputs``: a DataFrame as is, or a mapping of column -> 1-D (or ``[n, 1]``) values."""
    if isinstance(inputs, pd.DataFrame):
        return inputs
    if not isinstance(inputs, Mapping):
        raise TypeError(
            f"predict takes a pandas DataFrame or a mapping of column -> values, not {type(inputs).__name__}"
        )
    columns: dict[str, Any] = {}
    for name, values in inputs.items():
        array = np.asarray(values)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise ValueError(f"column {name!r}: give one value per row (shape [n] or [n, 1]), not shape {array.shape}")
        columns[str(name)] = array
    return pd.DataFrame(columns)


def _invalid(index: int, spec: TensorMeta, where: str, problem: str) -> errors.InvalidArgument:
    field = f"inputs[{index}]"
    return errors.InvalidArgument(f"{field}: input {spec.name!r} ({spec.datatype}) of {where}: {problem}", field=field)


def _row_label(frame: pd.DataFrame, position: int) -> str:
    return shorten(frame.index[position])


def _numbers(frame: pd.DataFrame, index: int, spec: TensorMeta, where: str) -> np.ndarray[Any, Any]:
    dtype = _numpy_dtype(spec.datatype)
    if dtype is None:
        raise _invalid(index, spec, where, "predict cannot build this datatype from a column")
    series = frame[spec.name]
    try:
        numbers = pd.to_numeric(series, errors="raise")
    except (ValueError, TypeError):
        bad = next((i for i, value in enumerate(series.tolist()) if not _is_number(value)), 0)
        raise _invalid(
            index,
            spec,
            where,
            f"column {spec.name!r} holds {shorten(series.iloc[bad])} (row {_row_label(frame, bad)}), not a number",
        ) from None
    if np.issubdtype(dtype, np.floating):
        values: np.ndarray[Any, Any] = numbers.to_numpy(dtype=np.float64, na_value=np.nan).astype(dtype)
        return values
    missing = numbers.isna().to_numpy()
    if missing.any():
        row = _row_label(frame, int(np.argmax(missing)))
        raise _invalid(
            index, spec, where, f"column {spec.name!r} has a missing value (row {row}); {spec.datatype} has no NaN"
        )
    integers: np.ndarray[Any, Any] = numbers.to_numpy().astype(dtype)
    return integers


def _is_number(value: Any) -> bool:
    try:
        pd.to_numeric(pd.Series([value]), errors="raise")
    except (ValueError, TypeError):
        return False
    return True


def _utf8(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return b""
    return str(value).encode("utf-8")


def _strings(frame: pd.DataFrame, spec: TensorMeta) -> np.ndarray[Any, Any]:
    return np.array([_utf8(value) for value in frame[spec.name].tolist()], dtype=np.object_)


def infer_request(
    deployment: str,
    frame: pd.DataFrame,
    signature: Signature,
    *,
    version: str,
    request_id: str,
) -> service_pb2.ModelInferRequest:
    """A ``ModelInferRequest`` holding the frame's input columns, each ``[rows, 1]``.

    Raises:
        errors.InvalidArgument: no rows, a column name given twice, or values that do not fit
            the input's datatype (``field`` ``inputs[i]``, the message names the tensor).
    """
    where = signature.describe(deployment)
    if len(frame) == 0:
        raise errors.InvalidArgument(f"inputs: no rows to send to {where}", field="inputs")
    request = service_pb2.ModelInferRequest(model_name=deployment, model_version=version, id=request_id)
    rows = len(frame)
    for spec in signature.inputs:
        if spec.name not in frame.columns:
            continue  # serve names every missing input in one error
        index = len(request.inputs)
        if not isinstance(frame[spec.name], pd.Series):
            raise _invalid(index, spec, where, f"column {spec.name!r} appears more than once")
        if spec.datatype == "BYTES":
            array = _strings(frame, spec)
            serialized = serialize_byte_tensor(array)
            raw = serialized.item() if serialized.size > 0 else b""
        else:
            raw = _numbers(frame, index, spec, where).tobytes()
        shape = [rows] if len(spec.shape) == 1 else [rows, 1]
        request.inputs.add(name=spec.name, datatype=spec.datatype, shape=shape)
        request.raw_input_contents.append(raw)
    return request


def _decode(tensor: Any, raw: bytes | None) -> np.ndarray[Any, Any]:
    shape = [int(d) for d in tensor.shape]
    if raw is not None:
        if tensor.datatype == "BYTES":
            array = np.asarray(deserialize_bytes_tensor(raw), dtype=np.object_)
        else:
            array = np.frombuffer(raw, dtype=_numpy_dtype(tensor.datatype) or np.uint8)
    else:
        field = _CONTENTS.get(tensor.datatype)
        values = list(getattr(tensor.contents, field)) if field else []
        array = np.array(values, dtype=np.object_ if tensor.datatype == "BYTES" else _numpy_dtype(tensor.datatype))
    if tensor.datatype == "BYTES":
        array = np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in array], dtype=np.object_)
    elif np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    return array.reshape(shape)


def _classes(width: int, probabilities: np.ndarray[Any, Any], labels: np.ndarray[Any, Any] | None) -> list[str] | None:
    """Class names read off the rows: each column's label where it is some row's argmax, if every column has one."""
    if labels is None or labels.shape[0] != probabilities.shape[0]:
        return None
    answered = np.isfinite(probabilities).all(axis=1)  # a row of NaN inputs has no meaningful argmax
    named: dict[int, str] = {}
    argmax = np.argmax(probabilities[answered], axis=1).tolist()
    for column, label in zip(argmax, labels.reshape(-1)[answered].tolist(), strict=True):
        if named.setdefault(column, label) != label:
            return None  # the label is not a function of the argmax: no names to give
    if len(named) != width or len(set(named.values())) != width:
        return None
    return [named[column] for column in range(width)]


def _columns(name: str, array: np.ndarray[Any, Any], classes: list[str] | None) -> dict[str, Any]:
    if array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1):
        return {name: array.reshape(-1)}
    if array.ndim == 2:
        if name == PROBABILITIES and classes is not None:
            return {f"probability_{label}": array[:, k] for k, label in enumerate(classes)}
        return {f"{name}_{k}": array[:, k] for k in range(array.shape[1])}
    return {name: list(array)}  # higher rank: one array per row


CLASSES_PARAMETER = "ferry.classes"


def _served_classes(response: service_pb2.ModelInferResponse) -> list[str] | None:
    """The class names serve sends with a classifier's answer (JSON list), when it does."""
    if CLASSES_PARAMETER not in response.parameters:
        return None
    try:
        value = json.loads(response.parameters[CLASSES_PARAMETER].string_param)
    except ValueError:
        return None
    return [str(item) for item in value] if isinstance(value, list) else None


def result_frame(
    frame: pd.DataFrame,
    response: service_pb2.ModelInferResponse,
    *,
    classes: Sequence[str] | None,
) -> pd.DataFrame:
    """The input frame with the outputs joined (same index), and the answer's details in ``attrs``.

    Columns: a ``[-1, 1]`` output is one column (strings decoded to ``str``, floats as
    float64); ``probabilities`` ``[-1, K]`` is ``probability_<class>`` per class when the
    class names are known (``classes``, else the names serve sends with the answer (the
    ``ferry.classes`` response parameter, from the version's ``classes`` param), else read off
    the rows through the ``label`` output when every class is some row's answer), else
    ``probabilities_<k>``; another ``[-1, K]``
    output is ``<name>_<k>``. An output named like an input column is added as ``<name>_output``.
    ``attrs``: ``deployment``, ``model_version`` (int), ``request_id``.
    """
    raw = response.raw_output_contents
    outputs = {tensor.name: _decode(tensor, raw[i] if raw else None) for i, tensor in enumerate(response.outputs)}
    rows = len(frame)
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != rows:
            raise errors.Internal(f"output {name!r} has shape {list(array.shape)}, not one row per input row ({rows})")
    names: list[str] | None = None
    probabilities = outputs.get(PROBABILITIES)
    if probabilities is not None and probabilities.ndim == 2 and probabilities.shape[1] > 1:
        width = probabilities.shape[1]
        served = _served_classes(response)
        if classes is not None:
            names = [str(c) for c in classes]
            if len(names) != width:
                raise ValueError(f"classes: {len(names)} names for {width} columns of {PROBABILITIES!r}")
        elif served is not None and len(served) == width:
            names = served
        else:
            names = _classes(width, probabilities, outputs.get(LABEL))
    columns: dict[str, Any] = {}
    for name, array in outputs.items():
        for column, values in _columns(name, array, names).items():
            columns[f"{column}_output" if column in frame.columns else column] = values
    result = pd.concat([frame, pd.DataFrame(columns, index=frame.index)], axis=1)
    result.attrs = {
        "deployment": response.model_name,
        "model_version": int(response.model_version) if response.model_version.isdigit() else response.model_version,
        "request_id": response.id,
    }
    return result
