"""Test helpers for serve: small real ONNX models shaped like train's exports.

Importable by any test (pytest runs without conftest modules here).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ferry.registry.v1 import registry_pb2

__all__ = ["CLASSES", "TINY_SIGNATURE", "tiny_classifier"]

CLASSES = ["setosa", "versicolor", "virginica"]
TINY_SIGNATURE = registry_pb2.ModelSignature(
    inputs=[
        registry_pb2.TensorSpec(name="x", datatype="FP32", shape=[-1, 1]),
        registry_pb2.TensorSpec(name="color", datatype="BYTES", shape=[-1, 1]),
    ],
    outputs=[
        registry_pb2.TensorSpec(name="probabilities", datatype="FP32", shape=[-1, 3]),
        registry_pb2.TensorSpec(name="label", datatype="BYTES", shape=[-1, 1]),
    ],
)
"""The registry signature of :func:`tiny_classifier`'s models."""


def tiny_classifier(bias: float = 0.0) -> bytes:
    """A classifier built like train's export: string lookup, linear layer, softmax, class names."""
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1]),
        helper.make_tensor_value_info("color", TensorProto.STRING, ["batch", 1]),
    ]
    outputs = [
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3]),
        helper.make_tensor_value_info("label", TensorProto.STRING, ["batch", 1]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([[1.0, -1.0, 0.5]], dtype=np.float32), "w"),
        numpy_helper.from_array(np.array([[0.0, 0.3, -0.2 + bias]], dtype=np.float32), "b"),
        numpy_helper.from_array(np.array([[0.7, -0.4, 0.1]], dtype=np.float32), "wc"),
        numpy_helper.from_array(np.array(CLASSES, dtype=np.object_), "classes"),
    ]
    nodes = [
        helper.make_node(
            "LabelEncoder",
            ["color"],
            ["code"],
            domain="ai.onnx.ml",
            keys_strings=["red", "green", "blue"],
            values_floats=[1.0, 2.0, 3.0],
            default_float=0.0,
        ),
        helper.make_node("MatMul", ["x", "w"], ["xw"]),
        helper.make_node("MatMul", ["code", "wc"], ["cw"]),
        helper.make_node("Add", ["xw", "cw"], ["sum"]),
        helper.make_node("Add", ["sum", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["index"], axis=1, keepdims=1),
        helper.make_node("Gather", ["classes", "index"], ["label"], axis=0),
    ]
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()
