"""Profiles of real public datasets (scikit-learn's bundled tables) checked against pandas."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.datasets import load_breast_cancer, load_iris, load_wine

from ferry_profile import QUANTILES, Profile

LOADERS = {"wine": load_wine, "iris": load_iris, "breast-cancer": load_breast_cancer}


def _frame(name: str) -> pd.DataFrame:
    bunch = LOADERS[name](as_frame=True)
    frame: pd.DataFrame = bunch.frame.copy()
    frame["target"] = [str(bunch.target_names[i]) for i in bunch.target]  # a categorical column
    return frame


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_profile_matches_pandas(profile_of: Callable[..., Profile], name: str) -> None:
    frame = _frame(name)
    profile = profile_of(pa.Table.from_pandas(frame, preserve_index=False), batch_rows=64)

    assert profile.row_count == len(frame)
    assert [c.name for c in profile.columns] == list(frame.columns)
    for column in profile.columns:
        series = frame[column.name]
        assert column.null_count == series.isna().sum()
        if column.name == "target":
            assert column.categorical is not None
            counts = series.value_counts()
            assert column.categorical.distinct_count == series.nunique()
            assert list(column.categorical.top_values) == sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            continue
        numeric = column.numeric
        assert numeric is not None
        # Exact statistics (population std).
        assert numeric.min == series.min() and numeric.max == series.max() and numeric.count == len(series)
        assert math.isclose(numeric.mean, series.mean(), rel_tol=1e-12)
        assert math.isclose(numeric.std, series.std(ddof=0), rel_tol=1e-9)
        # Quantiles: within the stated relative error (0: exact) of the true order statistics.
        error = numeric.quantile_relative_error
        exact = series.nunique() <= 4096
        assert error == (0.0 if exact else 0.01)
        assert [q for q, _ in numeric.quantiles] == list(QUANTILES)
        for q, value in numeric.quantiles:
            if exact:
                assert value == pytest.approx(series.quantile(q), rel=1e-12, abs=1e-12)
            low = series.quantile(q, interpolation="lower")
            high = series.quantile(q, interpolation="higher")
            assert low * (1 - error) - 1e-12 <= value <= high * (1 + error) + 1e-12, (column.name, q)
        # Histogram: 20 equal-width bins between min and max, counts as numpy's.
        counts, edges = np.histogram(series, bins=20)
        np.testing.assert_allclose(numeric.histogram_edges, edges, rtol=1e-12)
        assert list(numeric.histogram_counts) == list(counts)
