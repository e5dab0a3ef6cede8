"""One self-contained ONNX file: raw feature columns in, predictions out.

The graph is three parts joined with :func:`onnx.compose.merge_models`:

1. the fitted ColumnTransformer converted by skl2onnx (imputers, scaler and
   one-hot encoder as ``ai.onnx.ml`` operators), one input per raw column;
2. the network exported by :func:`torch.onnx.export`, with the softmax inside
   for classification;
3. for classification, ArgMax and a Gather from a constant string tensor that
   turn probabilities into class names.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnx.compose
import onnx.version_converter
import torch
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import convert_sklearn  # type: ignore[import-untyped]
from skl2onnx.common.data_types import (  # type: ignore[import-untyped]
    FloatTensorType,
    StringTensorType,
)
from torch import nn

from ferry_train.pipeline.preprocess import ColumnKind, FittedPreprocessor, Task

__all__ = [
    "ML_OPSET",
    "OPSET",
    "ExportedModel",
    "ModelSignature",
    "TensorSpec",
    "export_onnx",
    "signature_of",
]

# torch's exporter and skl2onnx must agree, as merge_models refuses two
# versions of one domain. 18 is the oldest the dynamo exporter writes natively
# and one skl2onnx 1.20 fully supports; ai.onnx.ml 3 carries string imputing.
OPSET = 18
ML_OPSET = 3
_NET_PREFIX = "net/"
_NET_INPUT = "encoded"
_NET_OUTPUT = "network_output"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor, in Triton's terms.

    Attributes:
        name: Tensor name.
        datatype: Triton datatype string (``FP32``, ``BYTES``, ...).
        shape: Dimensions; ``-1`` for any size.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        """``{name, datatype, shape}`` as the registry stores it."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ModelSignature:
    """The inputs and outputs of an exported model."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def as_dict(self) -> dict[str, list[dict[str, Any]]]:
        """``{"inputs": [...], "outputs": [...]}`` of :meth:`TensorSpec.as_dict`."""
        return {
            "inputs": [spec.as_dict() for spec in self.inputs],
            "outputs": [spec.as_dict() for spec in self.outputs],
        }


@dataclass(frozen=True)
class ExportedModel:
    """The serialized ONNX model and its signature."""

    onnx_bytes: bytes
    signature: ModelSignature


class _ServingHead(nn.Module):
    """The trained network plus what serving adds: softmax for classification."""

    def __init__(self, network: nn.Module, task: Task) -> None:
        super().__init__()
        self.network = network
        self.task = task

    def forward(self, encoded: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.network(encoded)
        if self.task is Task.CLASSIFICATION:
            return torch.softmax(output, dim=1)
        return output


def signature_of(preprocessor: FittedPreprocessor) -> ModelSignature:
    """The signature (DESIGN.md "Model signature") of an exported model."""
    inputs = tuple(
        TensorSpec(name, "FP32" if kind is ColumnKind.NUMERIC else "BYTES", (-1, 1))
        for name, kind in preprocessor.features
    )
    if preprocessor.task is Task.CLASSIFICATION:
        outputs: tuple[TensorSpec, ...] = (
            TensorSpec("probabilities", "FP32", (-1, len(preprocessor.classes))),
            TensorSpec("label", "BYTES", (-1, 1)),
        )
    else:
        outputs = (TensorSpec("prediction", "FP32", (-1, 1)),)
    return ModelSignature(inputs=inputs, outputs=outputs)


def export_onnx(preprocessor: FittedPreprocessor, network: nn.Module) -> ExportedModel:
    """Exports pre-processing and network as one ONNX model.

    Args:
        preprocessor: The pre-processing fitted on the training split.
        network: The trained module; ``forward`` maps the encoded matrix to
            logits (classification) or predictions (regression).

    Returns:
        The model bytes (no external data) and its signature.
    """
    pre = _preprocessing_graph(preprocessor)
    net = _network_graph(preprocessor, network)
    # ir_version must match too; take the newer so neither part loses anything.
    ir_version = max(pre.ir_version, net.ir_version)
    pre.ir_version = ir_version
    net.ir_version = ir_version
    net = onnx.compose.add_prefix(net, _NET_PREFIX)
    merged = onnx.compose.merge_models(
        pre,
        net,
        io_map=[(pre.graph.output[0].name, _NET_PREFIX + _NET_INPUT)],
    )
    _add_outputs(merged, preprocessor)
    onnx.checker.check_model(merged, full_check=True)
    buffer = io.BytesIO()
    # One file, one object, one sha256: small tabular models fit in 2 GB.
    onnx.save_model(merged, buffer, save_as_external_data=False)
    return ExportedModel(onnx_bytes=buffer.getvalue(), signature=signature_of(preprocessor))


def _preprocessing_graph(preprocessor: FittedPreprocessor) -> onnx.ModelProto:
    """The ColumnTransformer as ONNX, one ``[-1, 1]`` input per raw column."""
    initial_types: list[tuple[str, Any]] = [
        (name, FloatTensorType([None, 1]) if kind is ColumnKind.NUMERIC else StringTensorType([None, 1]))
        for name, kind in preprocessor.features
    ]
    model = convert_sklearn(
        preprocessor.column_transformer,
        initial_types=initial_types,
        target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
    )
    # skl2onnx writes the lowest opsets its operators need (opset 11 / ml 1 for a purely
    # numeric ColumnTransformer) whatever target_opset asks, and merge_models refuses to
    # join graphs of different opsets: lift both to the network's.
    versions = {entry.domain: entry.version for entry in model.opset_import}
    if versions.get("", OPSET) < OPSET:
        model = onnx.version_converter.convert_version(model, OPSET)
    for entry in model.opset_import:
        if entry.domain == "ai.onnx.ml" and entry.version < ML_OPSET:
            entry.version = ML_OPSET  # its Imputer, Scaler, OneHotEncoder are unchanged since version 1
    return model  # type: ignore[no-any-return]


def _network_graph(preprocessor: FittedPreprocessor, network: nn.Module) -> onnx.ModelProto:
    """The network (plus softmax) exported by torch, batch dimension dynamic."""
    head = _ServingHead(network, preprocessor.task).eval().to("cpu", torch.float32)
    example = torch.zeros(2, preprocessor.n_encoded, dtype=torch.float32)
    batch = torch.export.Dim("batch")
    program = torch.onnx.export(
        head,
        (example,),
        input_names=[_NET_INPUT],
        output_names=[_NET_OUTPUT],
        dynamic_shapes=({0: batch},),
        opset_version=OPSET,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    assert program is not None
    return program.model_proto


def _add_outputs(model: onnx.ModelProto, preprocessor: FittedPreprocessor) -> None:
    """Renames the network's output and, for classification, adds ``label``."""
    graph = model.graph
    network_output = _NET_PREFIX + _NET_OUTPUT
    del graph.output[:]
    if preprocessor.task is Task.REGRESSION:
        graph.node.append(helper.make_node("Identity", [network_output], ["prediction"]))
        graph.output.append(helper.make_tensor_value_info("prediction", TensorProto.FLOAT, ["batch", 1]))
        return
    n_classes = len(preprocessor.classes)
    graph.node.append(helper.make_node("Identity", [network_output], ["probabilities"]))
    graph.initializer.append(numpy_helper.from_array(np.array(preprocessor.classes, dtype=np.object_), "class_names"))
    # keepdims gives [rows, 1] indices, so Gather yields the [rows, 1] label.
    graph.node.append(helper.make_node("ArgMax", ["probabilities"], ["class_index"], axis=1, keepdims=1))
    graph.node.append(helper.make_node("Gather", ["class_names", "class_index"], ["label"], axis=0))
    graph.output.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_classes]))
    graph.output.append(helper.make_tensor_value_info("label", TensorProto.STRING, ["batch", 1]))
