"""Inference records and feedback: the domain objects and the quality measures of GetPerformance.

A record is one request serve answered (one or more rows: each input and output holds one
value per row). Ground truth arrives later by request id: one value for a one-row request,
or a list with one value per row. Every record of the request id gets it (the primary's or
canary's, and the shadow's, so a shadow version is judged on the same truth).

How a record is judged: an output named ``label`` (class names: train's classifiers) is
compared with the truth as text (``1`` and ``1.0`` are the same class); otherwise an output
named ``prediction`` (train's regressors) gives absolute and squared errors against a
numeric truth. Rows whose truth or prediction is missing, or of the wrong kind, are not
counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Feedback", "InferenceRecord", "Performance", "measure"]


@dataclass(frozen=True)
class InferenceRecord:
    """One sampled inference, as stored (inputs and outputs: JSON objects of values by name)."""

    request_id: str
    deployment: str
    model: str
    version: int
    route: str
    time_ns: int
    latency_ms: float
    inputs_json: str
    outputs_json: str
    shadow_comparison: bytes = b""


@dataclass(frozen=True)
class Feedback:
    """Ground truth for one request id (JSON text: one value, or a list with one per row)."""

    request_id: str
    ground_truth_json: str


@dataclass(frozen=True)
class Performance:
    """Quality over the labeled rows: accuracy for labels, MAE and RMSE for predictions."""

    labeled_count: int = 0
    accuracy: float = 0.0
    mean_absolute_error: float = 0.0
    root_mean_squared_error: float = 0.0


def _rows(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _class(value: Any) -> str | None:
    if isinstance(value, list):
        return _class(value[0]) if len(value) == 1 else None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, list):
        return _number(value[0]) if len(value) == 1 else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def measure(pairs: list[tuple[dict[str, Any], Any]]) -> Performance:
    """Accuracy, MAE and RMSE over (outputs, ground truth) pairs of labeled records."""
    correct = labels = 0
    errors: list[float] = []
    for outputs, truth in pairs:
        if "label" in outputs:
            predicted = _rows(outputs["label"])
            truths = _rows(truth) if len(predicted) > 1 else [truth]
            if len(truths) != len(predicted):
                continue
            for guess, actual in zip(predicted, truths, strict=True):
                expected, got = _class(actual), _class(guess)
                if expected is None or got is None:
                    continue
                labels += 1
                correct += int(expected == got)
        elif "prediction" in outputs:
            predicted = _rows(outputs["prediction"])
            truths = _rows(truth) if len(predicted) > 1 else [truth]
            if len(truths) != len(predicted):
                continue
            for guess, actual in zip(predicted, truths, strict=True):
                truth_value, predicted_value = _number(actual), _number(guess)
                if truth_value is not None and predicted_value is not None:
                    errors.append(predicted_value - truth_value)
    count = labels + len(errors)
    return Performance(
        labeled_count=count,
        accuracy=correct / labels if labels else 0.0,
        mean_absolute_error=sum(abs(e) for e in errors) / len(errors) if errors else 0.0,
        root_mean_squared_error=math.sqrt(sum(e * e for e in errors) / len(errors)) if errors else 0.0,
    )
