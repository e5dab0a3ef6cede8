"""Checks an exported ONNX model against the PyTorch pipeline it came from.

Both sides start from the same raw rows: onnxruntime runs the whole graph on
the raw columns; the reference runs scikit-learn's transform and the module's
forward. A mismatch means serving would answer differently from training, so
the job must fail rather than register the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pandas as pd
import torch
from torch import nn

from ferry_train.pipeline.preprocess import ColumnKind, FittedPreprocessor, Task, raw_features

__all__ = [
    "PREDICTION_ATOL",
    "PREDICTION_RTOL",
    "PROBABILITY_ATOL",
    "ExportMismatchError",
    "Predictions",
    "VerificationReport",
    "onnx_feeds",
    "predict_onnx",
    "predict_torch",
    "verify_export",
]

# Both sides compute in float32; they differ only by operation order (fused
# kernels, ONNX's scaler as (x - mean) * (1 / scale)), which stays within a few
# float32 ulps. Probabilities lie in [0, 1], so an absolute bound fits.
PROBABILITY_ATOL = 1e-5
# Regression predictions carry the target's units (grams, dollars): a relative
# bound, with an absolute floor for predictions near zero.
PREDICTION_RTOL = 1e-5
PREDICTION_ATOL = 1e-5


class ExportMismatchError(Exception):
    """The ONNX model's outputs differ from the PyTorch pipeline's."""


@dataclass(frozen=True)
class Predictions:
    """Outputs of one model on some rows.

    Attributes:
        values: ``probabilities`` ``[rows, K]`` or ``prediction`` ``[rows, 1]``, float32.
        labels: Class names ``[rows, 1]`` (classification), else None.
    """

    values: npt.NDArray[np.float32]
    labels: npt.NDArray[np.object_] | None


@dataclass(frozen=True)
class VerificationReport:
    """How close the two pipelines were.

    Attributes:
        rows: Rows compared.
        max_abs_diff: Largest absolute difference of the float outputs.
        labels_equal: Rows whose labels matched (all of them, or it raised).
    """

    rows: int
    max_abs_diff: float
    labels_equal: int


def onnx_feeds(preprocessor: FittedPreprocessor, frame: pd.DataFrame) -> dict[str, npt.NDArray[np.generic]]:
    """Raw rows as the exported model's inputs, one ``[rows, 1]`` array per column.

    Numeric columns are float32 with NaN for missing; string columns are
    ``object`` arrays of ``str`` with ``""`` for missing (what Triton's BYTES
    tensors carry).
    """
    raw = raw_features(frame, preprocessor.features)
    feeds: dict[str, npt.NDArray[np.generic]] = {}
    for name, kind in preprocessor.features:
        dtype = np.float32 if kind is ColumnKind.NUMERIC else np.object_
        feeds[name] = raw[name].to_numpy(dtype=dtype).reshape(-1, 1)
    return feeds


def predict_onnx(onnx_bytes: bytes, preprocessor: FittedPreprocessor, frame: pd.DataFrame) -> Predictions:
    """Runs the exported model in onnxruntime on raw rows."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    outputs = session.run(None, onnx_feeds(preprocessor, frame))
    named = {meta.name: value for meta, value in zip(session.get_outputs(), outputs, strict=True)}
    if preprocessor.task is Task.CLASSIFICATION:
        return Predictions(
            values=np.asarray(named["probabilities"], dtype=np.float32),
            labels=np.asarray(named["label"], dtype=np.object_),
        )
    return Predictions(values=np.asarray(named["prediction"], dtype=np.float32), labels=None)


def predict_torch(preprocessor: FittedPreprocessor, network: nn.Module, frame: pd.DataFrame) -> Predictions:
    """Runs the training-time pipeline: scikit-learn transform, then the module."""
    encoded = torch.from_numpy(preprocessor.transform(frame))
    network = network.eval().to("cpu", torch.float32)
    with torch.no_grad():
        output = network(encoded)
    if preprocessor.task is Task.REGRESSION:
        return Predictions(values=output.numpy().astype(np.float32), labels=None)
    probabilities = torch.softmax(output, dim=1).numpy().astype(np.float32)
    classes = np.asarray(preprocessor.classes, dtype=np.object_)
    return Predictions(values=probabilities, labels=classes[probabilities.argmax(axis=1)].reshape(-1, 1))


def verify_export(
    onnx_bytes: bytes,
    preprocessor: FittedPreprocessor,
    network: nn.Module,
    frame: pd.DataFrame,
) -> VerificationReport:
    """Compares onnxruntime on raw rows with the PyTorch pipeline.

    Args:
        onnx_bytes: The exported model.
        preprocessor: The fitted pre-processing.
        network: The trained module.
        frame: Raw rows, typically the validation split.

    Returns:
        How close the outputs were.

    Raises:
        ExportMismatchError: Outputs beyond the tolerances above, or any label differs.
    """
    exported = predict_onnx(onnx_bytes, preprocessor, frame)
    reference = predict_torch(preprocessor, network, frame)
    if exported.values.shape != reference.values.shape:
        raise ExportMismatchError(f"ONNX output shape {exported.values.shape} != PyTorch {reference.values.shape}")
    diff = np.abs(exported.values.astype(np.float64) - reference.values.astype(np.float64))
    max_diff = float(diff.max(initial=0.0))
    if preprocessor.task is Task.CLASSIFICATION:
        bound = np.full_like(diff, PROBABILITY_ATOL)
        what = f"probabilities (atol {PROBABILITY_ATOL})"
    else:
        bound = PREDICTION_ATOL + PREDICTION_RTOL * np.abs(reference.values.astype(np.float64))
        what = f"prediction (rtol {PREDICTION_RTOL}, atol {PREDICTION_ATOL})"
    # NaN compares false, so a NaN on either side counts as a mismatch.
    bad = ~(diff <= bound)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ExportMismatchError(
            f"ONNX {what} differ from PyTorch on {int(bad.any(axis=1).sum())} of "
            f"{len(frame)} rows; first row {row}: ONNX {exported.values[row].tolist()} "
            f"vs PyTorch {reference.values[row].tolist()}"
        )
    labels_equal = 0
    if reference.labels is not None:
        assert exported.labels is not None
        same = exported.labels.reshape(-1) == reference.labels.reshape(-1)
        if not same.all():
            row = int(np.argmin(same))
            raise ExportMismatchError(
                f"ONNX labels differ from PyTorch on {int((~same).sum())} of {len(frame)} "
                f"rows; first row {row}: ONNX {exported.labels[row, 0]!r} vs PyTorch "
                f"{reference.labels[row, 0]!r}"
            )
        labels_equal = int(same.sum())
    return VerificationReport(rows=len(frame), max_abs_diff=max_diff, labels_equal=labels_equal)
