"""Tabular pre-processing fitted on the training split only.

Numeric columns are imputed with their median and standardised; string columns
are imputed with their most frequent value and one-hot encoded, unseen
categories becoming all zeros. The same fitted ColumnTransformer is later
converted into the ONNX graph (:mod:`ferry_train.pipeline.export`), so what a
served model does to a raw row is exactly what training did.

Raw values have one canonical form, :func:`raw_features`, shared by fitting,
training, export checks and serving: numeric columns as float32 with NaN for a
missing value (what an FP32 tensor can carry), string columns as ``str`` with
``""`` for a missing value (a BYTES tensor has no null).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler

from ferry_common.errors import InvalidArgument

__all__ = [
    "MISSING_STRING",
    "ColumnKind",
    "FittedPreprocessor",
    "Task",
    "fit_preprocessor",
    "raw_features",
]

# A BYTES tensor cannot hold a null, so the empty string stands for "missing"
# on the wire and in the imputer alike.
MISSING_STRING = ""


class Task(enum.Enum):
    """What the model predicts."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class ColumnKind(enum.Enum):
    """How a raw feature column is carried and encoded."""

    NUMERIC = "numeric"
    STRING = "string"


@dataclass(frozen=True)
class FittedPreprocessor:
    """Pre-processing fitted on a training split, plus the target's encoding.

    Attributes:
        task: Classification or regression.
        target: Name of the target column.
        features: Raw feature columns in input order, with how each is carried.
        column_transformer: The fitted scikit-learn ColumnTransformer.
        classes: Class names, index ``i`` is label ``i`` (classification only).
        n_encoded: Width of the encoded feature matrix the network consumes.
    """

    task: Task
    target: str
    features: tuple[tuple[str, ColumnKind], ...]
    column_transformer: ColumnTransformer
    classes: tuple[str, ...]
    n_encoded: int

    @property
    def feature_names(self) -> list[str]:
        """Raw feature column names in input order."""
        return [name for name, _ in self.features]

    @property
    def n_outputs(self) -> int:
        """Width of the network's output: classes, or 1 for regression."""
        return len(self.classes) if self.task is Task.CLASSIFICATION else 1

    def transform(self, frame: pd.DataFrame) -> npt.NDArray[np.float32]:
        """Encodes raw rows into the float32 matrix the network consumes.

        Args:
            frame: Rows holding at least the feature columns.

        Returns:
            An ``[rows, n_encoded]`` float32 array.
        """
        raw = raw_features(frame, self.features)
        return np.asarray(self.column_transformer.transform(raw), dtype=np.float32)

    def labelled_rows(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows whose target is known: the only ones to train or score on."""
        return frame[frame[self.target].notna()]

    def encode_split(
        self, frame: pd.DataFrame, *, split_field: str
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.generic]]:
        """Encoded features and targets of a split's labelled rows.

        Args:
            frame: Rows of one split (raw, as read from the dataset).
            split_field: Request field naming the split, for errors.

        Returns:
            ``(features, targets)`` as :meth:`transform` and :meth:`encode_target` give.

        Raises:
            InvalidArgument: The split has no labelled row, or a class unknown
                to the training split.
        """
        rows = self.labelled_rows(frame)
        if rows.empty:
            raise InvalidArgument(
                f"{split_field}: no rows with a value in target {self.target!r}",
                field=split_field,
            )
        return self.transform(rows), self.encode_target(rows, split_field=split_field)

    def encode_target(self, frame: pd.DataFrame, *, split_field: str) -> npt.NDArray[np.generic]:
        """Encodes the target column: class indices (int64) or values (float32).

        Args:
            frame: Rows of one split; rows with a null target must already be dropped.
            split_field: Request field naming the split, for errors.

        Returns:
            ``[rows]`` int64 class indices, or ``[rows, 1]`` float32 values.

        Raises:
            InvalidArgument: A class that the training split does not have.
        """
        column = frame[self.target]
        if self.task is Task.REGRESSION:
            values: npt.NDArray[np.float32] = column.to_numpy(dtype=np.float32).reshape(-1, 1)
            return values
        names = column.astype(str)
        unknown = sorted(set(names) - set(self.classes))
        if unknown:
            raise InvalidArgument(
                f"{split_field}: target {self.target!r} has classes {unknown[:5]} "
                f"that the training split lacks (known: {list(self.classes)})",
                field=split_field,
            )
        index = {name: i for i, name in enumerate(self.classes)}
        indices: npt.NDArray[np.int64] = names.map(index).to_numpy(dtype=np.int64)
        return indices


def raw_features(frame: pd.DataFrame, features: Sequence[tuple[str, ColumnKind]]) -> pd.DataFrame:
    """Puts raw feature columns in the form a served model receives them.

    Args:
        frame: Rows holding at least the feature columns.
        features: Column names and kinds, as in :attr:`FittedPreprocessor.features`.

    Returns:
        A new frame: numeric columns float32 (NaN = missing), string columns
        ``object`` of ``str`` (``""`` = missing).
    """
    columns: dict[str, pd.Series] = {}
    for name, kind in features:
        column = frame[name]
        if kind is ColumnKind.NUMERIC:
            columns[name] = pd.to_numeric(column, errors="coerce").astype(np.float32)
        else:
            text = column.astype(object).where(column.notna(), MISSING_STRING)
            columns[name] = text.map(str).astype(object)
    return pd.DataFrame(columns, index=frame.index)


def fit_preprocessor(
    train: pd.DataFrame,
    *,
    target: str,
    features: Sequence[str],
    task: Task,
) -> FittedPreprocessor:
    """Validates the columns and fits the pre-processing on the training split.

    Args:
        train: The training split.
        target: Target column.
        features: Feature columns; empty means every column but the target.
        task: Classification or regression.

    Returns:
        The fitted pre-processing.

    Raises:
        InvalidArgument: Unknown or unusable columns (the error names the
            request field), a non-numeric regression target, or a
            classification target with fewer than two classes.
    """
    if target not in train.columns:
        raise InvalidArgument(
            f"training_job.target: column {target!r} not found (columns: {list(map(str, train.columns))})",
            field="training_job.target",
        )
    kinds = _feature_kinds(train, target, features)
    train = train[train[target].notna()]
    if train.empty:
        raise InvalidArgument(
            f"training_job.target: column {target!r} has no values in the training split",
            field="training_job.target",
        )
    classes = _target_classes(train[target], target, task)
    numeric = [name for name, kind in kinds if kind is ColumnKind.NUMERIC]
    strings = [name for name, kind in kinds if kind is ColumnKind.STRING]
    transformers: list[tuple[str, Pipeline, list[str]]] = []
    if numeric:
        transformers.append(
            (
                "numeric",
                Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
                numeric,
            )
        )
    if strings:
        transformers.append(
            (
                "categorical",
                Pipeline(
                    [
                        (
                            "impute",
                            SimpleImputer(
                                missing_values=MISSING_STRING,
                                strategy="most_frequent",
                            ),
                        ),
                        (
                            "encode",
                            OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                        ),
                    ]
                ),
                strings,
            )
        )
    # Dense output: the network takes a dense matrix, and skl2onnx emits one.
    column_transformer = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
    encoded = column_transformer.fit_transform(raw_features(train, kinds))
    return FittedPreprocessor(
        task=task,
        target=target,
        features=tuple(kinds),
        column_transformer=column_transformer,
        classes=classes,
        n_encoded=int(np.asarray(encoded).shape[1]),
    )


def _feature_kinds(train: pd.DataFrame, target: str, features: Sequence[str]) -> list[tuple[str, ColumnKind]]:
    """Resolves the feature list and how each column is carried."""
    if features:
        named = [(name, f"training_job.features[{i}]") for i, name in enumerate(features)]
    else:
        named = [(str(name), "training_job.features") for name in train.columns if name != target]
    if not named:
        raise InvalidArgument(
            f"training_job.features: no feature columns besides target {target!r}",
            field="training_job.features",
        )
    seen: set[str] = set()
    kinds: list[tuple[str, ColumnKind]] = []
    for name, field in named:
        if name not in train.columns:
            raise InvalidArgument(
                f"{field}: column {name!r} not found (columns: {list(map(str, train.columns))})",
                field=field,
            )
        if name == target:
            raise InvalidArgument(f"{field}: column {name!r} is the target", field=field)
        if name in seen:
            raise InvalidArgument(f"{field}: column {name!r} is listed twice", field=field)
        seen.add(name)
        column = train[name]
        if column.notna().sum() == 0:
            # An all-null column has no median or mode to impute with.
            raise InvalidArgument(f"{field}: column {name!r} has no values in the training split", field=field)
        kinds.append((name, _column_kind(column, name, field)))
    return kinds


def _column_kind(column: pd.Series, name: str, field: str) -> ColumnKind:
    """Numeric (bools included) or string; anything else is refused."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return ColumnKind.NUMERIC
    if (
        pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    ):
        return ColumnKind.STRING
    raise InvalidArgument(f"{field}: column {name!r} has type {dtype}, expected numbers or strings", field=field)


def _target_classes(column: pd.Series, target: str, task: Task) -> tuple[str, ...]:
    """Class names for classification (sorted, as LabelEncoder orders them)."""
    field = "training_job.target"
    if task is Task.REGRESSION:
        if pd.api.types.is_bool_dtype(column.dtype) or not pd.api.types.is_numeric_dtype(column.dtype):
            raise InvalidArgument(
                f"{field}: regression needs a numeric target, column {target!r} has type {column.dtype}",
                field=field,
            )
        return ()
    classes = LabelEncoder().fit(column.astype(str)).classes_
    if len(classes) < 2:
        raise InvalidArgument(
            f"{field}: classification needs at least two classes, column {target!r} "
            f"has only {[str(c) for c in classes]} in the training split",
            field=field,
        )
    return tuple(str(c) for c in classes)
