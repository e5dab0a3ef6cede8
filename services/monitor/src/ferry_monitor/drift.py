"""Drift of recorded inputs against a training split's profile (``ferry_profile``). Imports no grpc.

What is compared: the inputs RecordInferences stored for one model version in a window
(``inputs``: values by input name, one per row of the request, as serve sends them) are
profiled with :class:`ferry_profile.ProfileBuilder`, column by column, as the reference
column's kind says (numeric columns as float64, categorical ones as text), and compared
with the reference profile by :func:`ferry_profile.compare`:

- numeric features: PSI (default), Kolmogorov-Smirnov or Wasserstein (scaled by the
  reference std); thresholds :data:`THRESHOLDS` (PSI: the model's policy, default 0.2);
- categorical features: Pearson's chi-square test of the live counts against the
  reference proportions; drifted when its p-value is below 0.05.

A feature drifted when its statistic reaches its threshold (chi-square: the p-value falls
below it); the report (dataset level) drifted when any feature did. Input names absent
from the reference (or of another kind there) and reference columns never sent (the
target) are left out. Serve cannot send a null string, so an empty string counts as null
in a categorical feature, as a missing value does in any feature.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

from ferry_profile import DEFAULT_THRESHOLDS, NumericStatistic, Profile, ProfileBuilder, compare

__all__ = [
    "CATEGORICAL_STATISTIC",
    "THRESHOLDS",
    "DriftResult",
    "FeatureResult",
    "NumericStatistic",
    "compare_inputs",
    "live_profile",
]

CATEGORICAL_STATISTIC: Literal["chi_square"] = "chi_square"
THRESHOLDS: Mapping[str, float] = {key: DEFAULT_THRESHOLDS[key] for key in ("psi", "ks", "wasserstein", "chi_square")}
"""Defaults: PSI 0.2 (a policy's ``drift_threshold`` replaces it), KS 0.1, Wasserstein 0.1
(in reference standard deviations), chi-square p-value 0.05."""

_CHUNK_RECORDS = 5_000


@dataclass(frozen=True)
class FeatureResult:
    """One feature's drift.

    Attributes:
        feature: the input name.
        statistic: ``psi``, ``ks``, ``wasserstein`` or ``chi_square``.
        value: the statistic (for ``chi_square``, the test's p-value).
        p_value: the p-value where the test has one (chi-square), else 0.
        threshold: the threshold applied.
        drifted: whether it was crossed.
    """

    feature: str
    statistic: str
    value: float
    p_value: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """The drift of one model version's recorded inputs against its training split."""

    model: str
    version: int
    reference_dataset_version: str
    reference_split: str
    sample_count: int
    features: tuple[FeatureResult, ...]

    @property
    def model_version(self) -> str:
        """``models/{model}/versions/{version}``."""
        return f"models/{self.model}/versions/{self.version}"

    @property
    def drifted(self) -> bool:
        """Whether any feature drifted (the dataset-level verdict)."""
        return any(f.drifted for f in self.features)

    def summary(self) -> str:
        """For an alert: which features drifted and by how much."""
        drifted = [f for f in self.features if f.drifted]
        parts = []
        for f in drifted[:5]:
            if f.statistic == "chi_square":
                parts.append(f"{f.feature} chi-square p {f.value:.3g} < {f.threshold:g}")
            else:
                parts.append(f"{f.feature} {f.statistic} {f.value:.3g} >= {f.threshold:g}")
        more = f"; and {len(drifted) - 5} more" if len(drifted) > 5 else ""
        split = f" split {self.reference_split}" if self.reference_split else ""
        return (
            f"{self.model_version}: input drift in {len(drifted)} of {len(self.features)} features "
            f"({'; '.join(parts)}{more}) over {self.sample_count} samples against "
            f"{self.reference_dataset_version}{split}"
        )


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return None


def _rows(inputs: Mapping[str, Any], names: Iterable[str]) -> tuple[int, dict[str, list[Any]]]:
    """One record's values per wanted input, one per row (a scalar is one row)."""
    columns: dict[str, list[Any]] = {}
    for name in names:
        if name not in inputs:
            continue
        value = inputs[name]
        columns[name] = list(value) if isinstance(value, list) else [value]
    rows = max((len(values) for values in columns.values()), default=0)
    return rows, columns


def live_profile(records: Iterable[str], reference: Profile) -> Profile:
    """The profile of the recorded inputs (JSON objects) over the reference's feature columns.

    Only columns the reference profiles (numeric or categorical) and at least one record
    sends are profiled; every row of every record counts (``row_count``).
    """
    kinds = {
        c.name: "numeric" if c.numeric is not None else "categorical"
        for c in reference.columns
        if c.numeric is not None or c.categorical is not None
    }
    parsed: list[dict[str, Any]] = []
    for text in records:
        value = json.loads(text)
        if isinstance(value, dict):
            parsed.append(value)
    sent = [name for name in kinds if any(name in record for record in parsed)]
    schema = pa.schema([pa.field(n, pa.float64() if kinds[n] == "numeric" else pa.string()) for n in sent])
    builder = ProfileBuilder(schema, parallel=False)
    convert = {name: _number if kinds[name] == "numeric" else _text for name in sent}
    for start in range(0, len(parsed), _CHUNK_RECORDS):
        columns: dict[str, list[Any]] = {name: [] for name in sent}
        for record in parsed[start : start + _CHUNK_RECORDS]:
            rows, values = _rows(record, sent)
            for name in sent:
                mine = values.get(name, [])
                columns[name].extend(convert[name](v) for v in mine)
                columns[name].extend([None] * (rows - len(mine)))
        table = pa.table({name: pa.array(columns[name], type=schema.field(name).type) for name in sent}, schema=schema)
        builder.add(table)
    return builder.result()


def compare_inputs(
    records: Sequence[str],
    reference: Profile,
    *,
    model: str,
    version: int,
    reference_dataset_version: str,
    reference_split: str,
    numeric: NumericStatistic,
    psi_threshold: float,
) -> DriftResult:
    """Profile ``records`` and compare them with ``reference`` (see the module's docstring)."""
    profile = live_profile(records, reference)
    thresholds = {**THRESHOLDS, "psi": psi_threshold}
    report = compare(profile, reference, numeric=numeric, categorical=CATEGORICAL_STATISTIC, thresholds=thresholds)
    features = tuple(
        FeatureResult(
            feature=f.name,
            statistic=f.statistic,
            value=f.value,
            p_value=f.value if f.statistic == "chi_square" else 0.0,
            threshold=f.threshold,
            drifted=f.drifted,
        )
        for f in report.features
    )
    return DriftResult(
        model=model,
        version=version,
        reference_dataset_version=reference_dataset_version,
        reference_split=reference_split,
        sample_count=profile.row_count,
        features=features,
    )
