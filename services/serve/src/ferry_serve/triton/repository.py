"""Write models into a Triton model repository (explicit model-control mode).

One Triton model per registry model *version*, named :func:`triton_model_name`
(``churn.3``), each with a single version directory ``1/``:

    <repository>/churn.3/config.pbtxt
    <repository>/churn.3/1/model.onnx
    <repository>/churn.3/1/model.py        (backend "python" only)

Why not one Triton model ``churn`` with version directories ``3/``, ``4/``: loading a new
version of a Triton model reloads that model (its version policy changes), so a version swap
would touch the model that is serving. With one name per version, deploying ``churn.4`` never
touches ``churn.3``: it is loaded and warmed beside it, traffic moves, then ``churn.3`` is
unloaded. Names stay valid Triton names because model ids are ``[a-z0-9-]`` and versions numbers.

Writes are atomic: a model is assembled in a hidden staging directory of the same repository
and renamed into place, so Triton never reads half a model.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from ferry_common.errors import InvalidArgument

if TYPE_CHECKING:
    from ferry.registry.v1 import registry_pb2

__all__ = [
    "DATATYPES",
    "STAGING_PREFIX",
    "VERSION_DIR",
    "Backend",
    "Batching",
    "Signature",
    "TensorSpec",
    "model_config",
    "remove_model",
    "remove_staging",
    "render_config",
    "triton_model_name",
    "write_model",
]

Backend = Literal["python", "onnxruntime"]

#: Triton datatype string -> model-config enum name.
DATATYPES: dict[str, str] = {
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
    "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "FP16": "TYPE_FP16",
    "FP32": "TYPE_FP32",
    "FP64": "TYPE_FP64",
    "BF16": "TYPE_BF16",
    "BYTES": "TYPE_STRING",
}

#: The only version directory of every Triton model Ferry writes.
VERSION_DIR = "1"
#: Prefix of in-progress directories; Triton sees them (it lists every directory) but never loads them.
STAGING_PREFIX = ".ferry-staging-"
_TRASH_PREFIX = ".ferry-trash-"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_THREADS_PARAMETER = "onnx_intra_op_threads"  # read by _python_model.py


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor (DESIGN.md "Model signature").

    Attributes:
        name: tensor name, the same in the ONNX graph and in Triton.
        datatype: Triton datatype string (``FP32``, ``INT64``, ``BYTES``...).
        shape: dimensions, ``-1`` for any size; tabular columns are ``(-1, 1)``.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Signature:
    """A model's inputs and outputs."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @classmethod
    def from_registry(cls, proto: registry_pb2.ModelSignature) -> Signature:
        """From ``ferry.registry.v1.ModelSignature`` (validated: see :meth:`validate`)."""
        signature = cls(
            inputs=tuple(TensorSpec(t.name, t.datatype, tuple(int(d) for d in t.shape)) for t in proto.inputs),
            outputs=tuple(TensorSpec(t.name, t.datatype, tuple(int(d) for d in t.shape)) for t in proto.outputs),
        )
        signature.validate()
        return signature

    def validate(self) -> None:
        """Checks what Triton would otherwise reject at load time.

        Raises:
            InvalidArgument: no inputs or outputs, an unnamed or duplicate tensor, an unknown
                datatype, or a dimension below -1.
        """
        for kind, specs in (("inputs", self.inputs), ("outputs", self.outputs)):
            if not specs:
                raise InvalidArgument(f"signature has no {kind}", field=f"signature.{kind}")
            for index, spec in enumerate(specs):
                field = f"signature.{kind}[{index}]"
                if not spec.name:
                    raise InvalidArgument(f"{field}: empty tensor name", field=f"{field}.name")
                if spec.datatype not in DATATYPES:
                    raise InvalidArgument(
                        f"{field} {spec.name!r}: unknown datatype {spec.datatype!r} "
                        f"(one of {', '.join(sorted(DATATYPES))})",
                        field=f"{field}.datatype",
                    )
                if not spec.shape or any(d < -1 for d in spec.shape):
                    raise InvalidArgument(
                        f"{field} {spec.name!r}: bad shape {list(spec.shape)}", field=f"{field}.shape"
                    )
        names = [spec.name for spec in (*self.inputs, *self.outputs)]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise InvalidArgument(f"signature: tensor names used twice: {', '.join(duplicates)}", field="signature")


@dataclass(frozen=True)
class Batching:
    """Triton dynamic batching for one model.

    Attributes:
        max_batch_size: the most rows Triton puts in one execution (>= 1).
        max_queue_delay_microseconds: how long a request may wait for others to join its batch.
        preferred_batch_sizes: batch sizes the batcher aims for (empty: as large as possible).
    """

    max_batch_size: int
    max_queue_delay_microseconds: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()

    def validate(self) -> None:
        """Raises InvalidArgument for a non-positive size, a negative delay or a preferred size over the max."""
        if self.max_batch_size < 1:
            raise InvalidArgument(
                f"batching.max_batch_size must be at least 1, got {self.max_batch_size}",
                field="batching.max_batch_size",
            )
        if self.max_queue_delay_microseconds < 0:
            raise InvalidArgument(
                f"batching.max_queue_delay_microseconds must not be negative, got {self.max_queue_delay_microseconds}",
                field="batching.max_queue_delay_microseconds",
            )
        bad = [size for size in self.preferred_batch_sizes if not 1 <= size <= self.max_batch_size]
        if bad:
            raise InvalidArgument(
                f"batching.preferred_batch_sizes {bad} not within 1..{self.max_batch_size}",
                field="batching.preferred_batch_sizes",
            )


def triton_model_name(model_id: str, version: int) -> str:
    """The Triton model serving ``models/<model_id>/versions/<version>``: ``f"{model_id}.{version}"``."""
    return f"{model_id}.{version}"


def _check_name(triton_name: str) -> None:
    if not _NAME.match(triton_name) or ".." in triton_name:
        raise InvalidArgument(f"invalid Triton model name {triton_name!r}", field="triton_name")


def model_config(
    triton_name: str,
    signature: Signature,
    *,
    backend: Backend,
    batching: Batching | None = None,
    instances: int = 1,
    intra_op_threads: int = 1,
) -> model_config_pb2.ModelConfig:
    """The Triton model configuration for a model.

    Args:
        triton_name: the Triton model name (``churn.3``).
        signature: its inputs and outputs.
        backend: ``python`` (``model.py`` running onnxruntime; the embedded Triton) or
            ``onnxruntime`` (``platform: "onnxruntime_onnx"``; NVIDIA's Triton image).
        batching: dynamic batching, or ``None`` for none (``max_batch_size: 0``, full shapes).
        instances: model instances (python backend: one stub process each).
        intra_op_threads: onnxruntime threads per instance (python backend).

    Raises:
        InvalidArgument: a bad name, signature or batching; with batching, a tensor whose first
            dimension is not ``-1``.
    """
    _check_name(triton_name)
    signature.validate()
    if batching is not None:
        batching.validate()
    if instances < 1:
        raise InvalidArgument(f"instances must be at least 1, got {instances}", field="instances")
    config = model_config_pb2.ModelConfig(name=triton_name, max_batch_size=0)
    if backend == "python":
        config.backend = "python"
        config.instance_group.add(kind=model_config_pb2.ModelInstanceGroup.KIND_CPU, count=instances)
        config.parameters[_THREADS_PARAMETER].string_value = str(max(1, intra_op_threads))
    elif backend == "onnxruntime":
        config.platform = "onnxruntime_onnx"
        config.default_model_filename = "model.onnx"
        if instances > 1:
            config.instance_group.add(count=instances)  # kind left to Triton: GPU where there is one
    else:
        raise InvalidArgument(f"unknown Triton backend {backend!r} (python or onnxruntime)", field="backend")
    if batching is not None:
        config.max_batch_size = batching.max_batch_size
        config.dynamic_batching.max_queue_delay_microseconds = batching.max_queue_delay_microseconds
        config.dynamic_batching.preferred_batch_size.extend(batching.preferred_batch_sizes)
    for spec in signature.inputs:
        tensor = config.input.add(name=spec.name, data_type=_enum(spec.datatype))
        _set_dims(tensor, spec, batching)
    for spec in signature.outputs:
        out = config.output.add(name=spec.name, data_type=_enum(spec.datatype))
        _set_dims(out, spec, batching)
    return config


def _enum(datatype: str) -> int:
    return int(model_config_pb2.DataType.Value(DATATYPES[datatype]))


def _set_dims(
    tensor: model_config_pb2.ModelInput | model_config_pb2.ModelOutput, spec: TensorSpec, batching: Batching | None
) -> None:
    if batching is None:
        tensor.dims.extend(spec.shape)
        return
    if spec.shape[0] != -1:
        raise InvalidArgument(
            f"tensor {spec.name!r} has shape {list(spec.shape)}: batching needs a first dimension of -1",
            field="batching",
        )
    rest = spec.shape[1:]
    if rest:
        tensor.dims.extend(rest)
    else:
        # A tensor that is only the batch dimension: Triton wants one dim, reshaped away.
        tensor.dims.append(1)
        tensor.reshape.SetInParent()


def render_config(
    triton_name: str,
    signature: Signature,
    *,
    backend: Backend,
    batching: Batching | None = None,
    instances: int = 1,
    intra_op_threads: int = 1,
) -> str:
    """``config.pbtxt`` text of :func:`model_config` (same arguments)."""
    config = model_config(
        triton_name,
        signature,
        backend=backend,
        batching=batching,
        instances=instances,
        intra_op_threads=intra_op_threads,
    )
    return str(text_format.MessageToString(config))


def write_model(
    repository: Path,
    triton_name: str,
    onnx_bytes: bytes,
    signature: Signature,
    *,
    backend: Backend,
    batching: Batching | None = None,
    instances: int = 1,
    intra_op_threads: int = 1,
) -> Path:
    """Writes (or replaces) one model in the repository, atomically.

    Args:
        repository: the model repository directory (created if missing).
        triton_name: the Triton model name, see :func:`triton_model_name`.
        onnx_bytes: the ONNX model, one self-contained file.
        signature: its inputs and outputs; ``config.pbtxt`` is generated from it.
        backend: see :func:`model_config`.
        batching: dynamic batching, or ``None``.
        instances: model instances.
        intra_op_threads: onnxruntime threads per instance (python backend).

    Returns:
        The model's directory.

    Raises:
        InvalidArgument: see :func:`model_config`.
    """
    config = render_config(
        triton_name,
        signature,
        backend=backend,
        batching=batching,
        instances=instances,
        intra_op_threads=intra_op_threads,
    )
    repository.mkdir(parents=True, exist_ok=True)
    staging = repository / f"{STAGING_PREFIX}{triton_name}-{uuid.uuid4().hex}"
    target = repository / triton_name
    try:
        version = staging / VERSION_DIR
        version.mkdir(parents=True)
        (version / "model.onnx").write_bytes(onnx_bytes)
        if backend == "python":
            (version / "model.py").write_bytes(
                resources.files("ferry_serve.triton").joinpath("_python_model.py").read_bytes()
            )
        (staging / "config.pbtxt").write_text(config)
        if target.exists():
            # rename(2) cannot replace a non-empty directory: move the old one aside first.
            # Only a model not loaded is ever replaced (names are per version), so the short
            # gap between the two renames is not seen by a load.
            trash = repository / f"{_TRASH_PREFIX}{triton_name}-{uuid.uuid4().hex}"
            os.rename(target, trash)
            os.rename(staging, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def remove_model(repository: Path, triton_name: str) -> None:
    """Deletes a model's directory (unload it from Triton first); absent is fine."""
    _check_name(triton_name)
    target = repository / triton_name
    if not target.exists():
        return
    trash = repository / f"{_TRASH_PREFIX}{triton_name}-{uuid.uuid4().hex}"
    os.rename(target, trash)  # gone from Triton's view at once, however long the delete takes
    shutil.rmtree(trash, ignore_errors=True)


def remove_staging(repository: Path) -> list[str]:
    """Deletes directories left by a write or remove that a crash interrupted.

    Returns:
        The names deleted.
    """
    if not repository.is_dir():
        return []
    removed = []
    for entry in repository.iterdir():
        if entry.is_dir() and entry.name.startswith((STAGING_PREFIX, _TRASH_PREFIX)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed
