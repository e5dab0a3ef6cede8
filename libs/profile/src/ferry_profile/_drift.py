"""Drift of a profile against a reference profile, feature by feature."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import numpy as np
from datasketches import frequent_items_error_type

from ferry_profile._categorical import frequent_error, frequent_of
from ferry_profile._distribution import ks_statistic, numeric_cdf, wasserstein_distance
from ferry_profile._results import CategoricalStats, ColumnProfile, Floats, NumericStats, Profile

__all__ = [
    "DEFAULT_THRESHOLDS",
    "PSI_FLOOR",
    "CategoricalStatistic",
    "DriftReport",
    "FeatureDrift",
    "NumericStatistic",
    "compare",
]

NumericStatistic = Literal["psi", "ks", "wasserstein"]
CategoricalStatistic = Literal["jensen_shannon", "chi_square"]

DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "psi": 0.2,
    "ks": 0.1,
    "wasserstein": 0.1,
    "jensen_shannon": 0.1,
    "chi_square": 0.05,
}
"""A feature drifted when its value reaches the threshold (``chi_square``: a p-value below it)."""

PSI_FLOOR = 1e-4
"""Bin fractions below this count as this in the PSI (an empty bin would make it infinite)."""


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift statistic.

    Attributes:
        name: the column name.
        kind: ``"numeric"`` or ``"categorical"``.
        statistic: ``psi``, ``ks``, ``wasserstein``, ``jensen_shannon`` or ``chi_square``.
        value: the statistic (for ``chi_square``, the test's p-value).
        threshold: the value at which the feature counts as drifted.
        drifted: ``value >= threshold`` (``chi_square``: ``value < threshold``).
    """

    name: str
    kind: str
    statistic: str
    value: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftReport:
    """Per-feature drift of a profile against a reference.

    Attributes:
        features: one entry per column compared, in the current profile's order.
        skipped: ``(column, reason)`` for each column not compared (missing on one
            side, kinds differ, no values).
    """

    features: tuple[FeatureDrift, ...]
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def drifted(self) -> bool:
        """Whether any feature drifted."""
        return any(f.drifted for f in self.features)

    @property
    def drifted_share(self) -> float:
        """The fraction of compared features that drifted (0 when none was compared)."""
        return sum(f.drifted for f in self.features) / len(self.features) if self.features else 0.0

    def feature(self, name: str) -> FeatureDrift:
        """The entry of column ``name``.

        Raises:
            KeyError: the column was not compared.
        """
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(name)

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``drifted`` and ``drifted_share`` included)."""
        return {
            "drifted": self.drifted,
            "drifted_share": self.drifted_share,
            "features": [asdict(f) for f in self.features],
            "skipped": [{"name": name, "reason": reason} for name, reason in self.skipped],
        }


def compare(
    profile: Profile,
    reference: Profile,
    *,
    numeric: NumericStatistic = "psi",
    categorical: CategoricalStatistic = "jensen_shannon",
    thresholds: Mapping[str, float] | None = None,
) -> DriftReport:
    """Compare ``profile`` with ``reference`` column by column (matched by name).

    Numeric statistics work on each side's distribution as its profile keeps it (exact
    value counts, else fine histogram bins, see :class:`Cdf`):

    - ``psi``: population stability index over the bins cut at the reference's
      quantiles (:data:`QUANTILES`, duplicates dropped; outer bins open),
      ``sum((p - r) * ln(p / r))`` with fractions floored at :data:`PSI_FLOOR`.
    - ``ks``: the two-sample Kolmogorov-Smirnov statistic (largest CDF gap).
    - ``wasserstein``: the first Wasserstein distance divided by the reference's std
      (unitless; undivided when that std is 0).

    Categorical statistics compare the frequencies of the values whose counts both
    profiles know (every value while a column has at most 768 distinct values and did
    not saturate, else the top values), plus one bucket for all other values:

    - ``jensen_shannon``: the Jensen-Shannon distance (base 2, between 0 and 1).
    - ``chi_square``: the p-value of Pearson's chi-square test of the current counts
      against the reference's proportions (a value the reference never saw gets a
      reference count of 0.5).

    Args:
        profile: the current data's profile.
        reference: the reference profile (for monitor: the training split's).
        numeric: the statistic for numeric columns.
        categorical: the statistic for categorical columns.
        thresholds: overrides of :data:`DEFAULT_THRESHOLDS`, by statistic.

    Returns:
        The report; ``report.drifted`` is true when any feature drifted.

    Raises:
        ValueError: an unknown statistic.
    """
    for name, allowed in ((numeric, NumericStatistic), (categorical, CategoricalStatistic)):
        if name not in get_args(allowed):
            raise ValueError(f"statistic {name!r} is not one of {', '.join(get_args(allowed))}")
    limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    features: list[FeatureDrift] = []
    skipped: list[tuple[str, str]] = []
    theirs = {c.name: c for c in reference.columns}
    for column in profile.columns:
        ref = theirs.get(column.name)
        if ref is None:
            skipped.append((column.name, "not in the reference"))
            continue
        value: float | None
        statistic: str
        if column.numeric is not None and ref.numeric is not None:
            kind, statistic = "numeric", numeric
            value = _numeric(column.numeric, ref.numeric, numeric)
        elif column.categorical is not None and ref.categorical is not None:
            kind, statistic = "categorical", categorical
            value = _categorical(column, profile.row_count, ref, reference.row_count, categorical)
        else:
            skipped.append((column.name, _why_not(column, ref)))
            continue
        if value is None:
            skipped.append((column.name, "no finite values"))
            continue
        limit = limits[statistic]
        drifted = value < limit if statistic == "chi_square" else value >= limit
        features.append(FeatureDrift(column.name, kind, statistic, value, limit, drifted))
    names = {c.name for c in profile.columns}
    skipped += [(c.name, "not in the profile") for c in reference.columns if c.name not in names]
    return DriftReport(tuple(features), tuple(skipped))


def _why_not(column: ColumnProfile, ref: ColumnProfile) -> str:
    def kind(c: ColumnProfile) -> str:
        return "numeric" if c.numeric else "categorical" if c.categorical else "no values"

    return f"{kind(column)} here, {kind(ref)} in the reference"


# ----------------------------------------------------------------------------- numeric


def _numeric(current: NumericStats, reference: NumericStats, statistic: str) -> float | None:
    mine, theirs = numeric_cdf(current), numeric_cdf(reference)
    if mine is None or theirs is None:
        return None
    if statistic == "ks":
        return ks_statistic(mine, theirs)
    if statistic == "wasserstein":
        distance = wasserstein_distance(mine, theirs)
        return distance / reference.std if reference.std > 0 else distance
    cuts = np.unique(np.array([v for _, v in reference.quantiles if math.isfinite(v)], dtype=np.float64))
    return psi(mine.masses(cuts), theirs.masses(cuts))


def psi(current: Floats, reference: Floats) -> float:
    """The population stability index of two bin-fraction vectors (floored at :data:`PSI_FLOOR`)."""
    p = np.maximum(current, PSI_FLOOR)
    r = np.maximum(reference, PSI_FLOOR)
    return float(np.sum((p - r) * np.log(p / r)))


# ----------------------------------------------------------------------------- categorical


def _categorical(current: ColumnProfile, rows: int, reference: ColumnProfile, ref_rows: int, statistic: str) -> float:
    assert current.categorical is not None and reference.categorical is not None
    mine, mine_complete = _known_counts(current.categorical)
    theirs, theirs_complete = _known_counts(reference.categorical)
    # A value is compared on its own only where both sides know its count; the rest of
    # either side's values share one bucket.
    values = sorted(
        v for v in mine.keys() | theirs.keys() if (v in mine or mine_complete) and (v in theirs or theirs_complete)
    )
    observed = _with_rest([mine.get(v, 0) for v in values], rows - current.null_count)
    expected = _with_rest([theirs.get(v, 0) for v in values], ref_rows - reference.null_count)
    present = (observed > 0) | (expected > 0)
    observed, expected = observed[present], expected[present]
    if statistic == "chi_square":
        return chi_square_p_value(observed, expected)
    return jensen_shannon_distance(observed / observed.sum(), expected / expected.sum())


def _known_counts(stats: CategoricalStats) -> tuple[dict[str, int], bool]:
    """The values whose exact counts the profile knows, and whether that is all of them."""
    known = dict(stats.top_values) if stats.top_values_max_error == 0 else {}
    frequent = frequent_of(stats)
    if frequent is not None:
        if stats.untracked_count == 0 and frequent_error(frequent) == 0:
            items = frequent.get_frequent_items(frequent_items_error_type.NO_FALSE_NEGATIVES, 0)
            return {value: int(count) for value, count, _, _ in items}, True
        return known, False
    # Older profiles keep the top values only: complete when there are no more values.
    return known, stats.distinct_exact and stats.untracked_count == 0 and stats.distinct_count == len(known)


def _with_rest(counts: list[int], total: int) -> Floats:
    rest = max(total - sum(counts), 0)
    return np.array([*counts, rest], dtype=np.float64)


def jensen_shannon_distance(p: Floats, q: Floats) -> float:
    """The Jensen-Shannon distance (base 2) of two probability vectors."""
    m = (p + q) / 2

    def divergence(x: Floats) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / m[mask])))

    return math.sqrt(max((divergence(p) + divergence(q)) / 2, 0.0))


def chi_square_p_value(observed: Floats, reference: Floats) -> float:
    """Pearson's chi-square test of ``observed`` counts against ``reference``'s proportions."""
    if observed.size < 2:
        return 1.0
    expected = np.where(reference > 0, reference, 0.5)
    expected = expected / expected.sum() * observed.sum()
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    return chi2_survival(statistic, observed.size - 1)


def chi2_survival(x: float, dof: int) -> float:
    """P(X >= x) for X chi-square with ``dof`` (a positive integer) degrees of freedom.

    Closed forms for integer degrees of freedom: ``erfc(sqrt(x / 2))`` for 1 and
    ``exp(-x / 2)`` for 2, then ``Q(k + 2) = Q(k) + (x / 2)**(k / 2) exp(-x / 2) / Gamma(k / 2 + 1)``.
    """
    if x <= 0:
        return 1.0
    half = x / 2
    total = math.erfc(math.sqrt(half)) if dof % 2 else math.exp(-half)
    for k in range(2 - dof % 2, dof - 1, 2):  # k = 1, 3, ... or 2, 4, ...
        total += math.exp(k / 2 * math.log(half) - half - math.lgamma(k / 2 + 1))
    return min(max(total, 0.0), 1.0)
