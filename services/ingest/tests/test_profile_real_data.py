"""Profiles of real public datasets (scikit-learn's bundled CSVs) checked against pandas.

The bundled files start with a non-standard header (row and column counts, then class
names), so a proper CSV is made from ``load_*(as_frame=True)``; the class column holds
the class names, so it is a categorical column.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_iris, load_wine

from ferry.ingest.v1 import ingest_pb2 as pb
from ferry_ingest.testing import Ingest

LOADERS = {"wine": load_wine, "iris": load_iris, "breast-cancer": load_breast_cancer}


def _frame(name: str) -> pd.DataFrame:
    bunch = LOADERS[name](as_frame=True)
    frame: pd.DataFrame = bunch.frame.copy()
    frame["target"] = [str(bunch.target_names[i]) for i in bunch.target]
    return frame


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_profile_matches_pandas_and_the_stored_parquet_equals_the_source(ingest: Ingest, name: str) -> None:
    frame = _frame(name)
    version = ingest.upload(name, frame.to_csv(index=False).encode(), chunk_size=4096)
    profile = ingest.stub.GetProfile(pb.GetProfileRequest(name=f"datasets/{name}/versions/latest"))

    assert profile.name == version.name and profile.row_count == len(frame)
    assert [c.name for c in profile.columns] == list(frame.columns)
    for column in profile.columns:
        series = frame[column.name]
        assert column.null_count == series.isna().sum()
        if column.name == "target":
            counts = series.value_counts()
            assert column.categorical.distinct_count == series.nunique()
            assert [(v.value, v.count) for v in column.categorical.top_values] == sorted(
                counts.items(), key=lambda item: (-item[1], item[0])
            )
            continue
        numeric = column.numeric
        # Exact statistics (population std).
        assert numeric.min == series.min() and numeric.max == series.max()
        assert math.isclose(numeric.mean, series.mean(), rel_tol=1e-12)
        assert math.isclose(numeric.std, series.std(ddof=0), rel_tol=1e-9)
        # Quantiles: within the stated relative error (0: exact) of the true order statistics.
        error = numeric.quantile_relative_error
        assert error in (0.0, pytest.approx(0.01))
        exact = series.nunique() <= 4096
        assert (error == 0.0) == exact
        assert [q.quantile for q in numeric.quantiles] == [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
        for q in numeric.quantiles:
            if exact:
                assert q.value == pytest.approx(series.quantile(q.quantile), rel=1e-12, abs=1e-12)
            low = series.quantile(q.quantile, interpolation="lower")
            high = series.quantile(q.quantile, interpolation="higher")
            assert low * (1 - error) - 1e-12 <= q.value <= high * (1 + error) + 1e-12, (column.name, q)
        # Histogram: 20 equal-width bins between min and max, counts as numpy's.
        counts, edges = np.histogram(series, bins=20)
        np.testing.assert_allclose(numeric.histogram.edges, edges, rtol=1e-12)
        assert sum(numeric.histogram.counts) == len(series)
        if exact:
            assert list(numeric.histogram.counts) == list(counts)
        assert np.abs(np.array(numeric.histogram.counts) - counts).max() <= max(2, 0.01 * len(series))

    # The canonical Parquet, read by pyarrow straight from the bucket (or directory).
    stored = ingest.read_from_store(version.uri).to_pandas()
    pd.testing.assert_frame_equal(stored, frame, check_dtype=False, check_exact=True)
