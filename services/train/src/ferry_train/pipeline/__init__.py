"""Training and export core of the train service, free of grpc.

The worker calls, in order: :func:`fit_preprocessor` on the training split,
:func:`build_mlp` (or a custom LightningModule), :func:`fit`,
:func:`export_onnx` and :func:`verify_export`.
"""

from ferry_train.pipeline.custom import build_custom, check_entry_point
from ferry_train.pipeline.export import (
    ExportedModel,
    ModelSignature,
    TensorSpec,
    export_onnx,
    signature_of,
)
from ferry_train.pipeline.fit import (
    EpochCallback,
    FitConfig,
    FitResult,
    TrainerResources,
    fit,
)
from ferry_train.pipeline.model import TabularMlp, build_mlp
from ferry_train.pipeline.preprocess import (
    ColumnKind,
    FittedPreprocessor,
    Task,
    fit_preprocessor,
    raw_features,
)
from ferry_train.pipeline.verify import (
    PREDICTION_ATOL,
    PREDICTION_RTOL,
    PROBABILITY_ATOL,
    ExportMismatchError,
    VerificationReport,
    onnx_feeds,
    predict_onnx,
    predict_torch,
    verify_export,
)

__all__ = [
    "PREDICTION_ATOL",
    "PREDICTION_RTOL",
    "PROBABILITY_ATOL",
    "ColumnKind",
    "EpochCallback",
    "ExportMismatchError",
    "ExportedModel",
    "FitConfig",
    "FitResult",
    "FittedPreprocessor",
    "ModelSignature",
    "TabularMlp",
    "Task",
    "TensorSpec",
    "TrainerResources",
    "VerificationReport",
    "build_custom",
    "build_mlp",
    "check_entry_point",
    "export_onnx",
    "fit",
    "fit_preprocessor",
    "onnx_feeds",
    "predict_onnx",
    "predict_torch",
    "raw_features",
    "signature_of",
    "verify_export",
]
