"""compare(): drift statistics from two profiles against scipy's on the raw values."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from ferry_profile import DEFAULT_THRESHOLDS, PSI_FLOOR, Profile, compare, numeric_cdf
from ferry_profile._drift import chi2_survival

ProfileOf = Callable[..., Profile]  # the conftest fixture
Floats = npt.NDArray[np.float64]


def _psi_by_hand(current: Floats, reference: Floats, cuts: Floats) -> float:
    """PSI over (-inf, c1), [c1, c2), ..., [ck, inf), fractions floored at PSI_FLOOR."""
    bins = cuts.size + 1
    p = np.bincount(np.searchsorted(cuts, current, side="right"), minlength=bins) / current.size
    r = np.bincount(np.searchsorted(cuts, reference, side="right"), minlength=bins) / reference.size
    p, r = np.maximum(p, PSI_FLOOR), np.maximum(r, PSI_FLOOR)
    return float(np.sum((p - r) * np.log(p / r)))


def _cuts(profile: Profile, name: str) -> Floats:
    numeric = profile.column(name).numeric
    assert numeric is not None
    return np.unique([v for _, v in numeric.quantiles])


def _numeric_values(
    profile_of: ProfileOf, current: Floats, reference: Floats
) -> tuple[Profile, Profile, dict[str, float]]:
    mine, theirs = profile_of(pa.table({"x": current})), profile_of(pa.table({"x": reference}))
    values = {s: compare(mine, theirs, numeric=s).feature("x").value for s in ("psi", "ks", "wasserstein")}
    return mine, theirs, values


# Few distinct values: both profiles keep exact value counts, so the statistics are exact.
@pytest.mark.parametrize(("shift", "drifted"), [(10.0, True), (0.0, False)])
def test_exact_numeric_statistics_equal_scipys(profile_of: ProfileOf, shift: float, drifted: bool) -> None:
    rng = np.random.default_rng(31)
    reference = rng.normal(50, 10, 20_000).round(1)
    current = rng.normal(50 + shift, 10, 15_000).round(1)
    _, theirs, values = _numeric_values(profile_of, current, reference)
    assert values["ks"] == pytest.approx(stats.ks_2samp(current, reference).statistic, abs=1e-12)
    assert values["wasserstein"] == pytest.approx(
        stats.wasserstein_distance(current, reference) / reference.std(), rel=1e-9
    )
    assert values["psi"] == pytest.approx(_psi_by_hand(current, reference, _cuts(theirs, "x")), rel=1e-9, abs=1e-12)
    for statistic, value in values.items():
        assert (value >= DEFAULT_THRESHOLDS[statistic]) is drifted, (statistic, value)


# Many distinct values: the CDFs are linear within fine bins; the stated bounds hold.
@pytest.mark.parametrize(("shift", "drifted"), [(0.6, True), (0.0, False)])
def test_sketched_numeric_statistics_are_within_their_bounds(
    profile_of: ProfileOf, shift: float, drifted: bool
) -> None:
    rng = np.random.default_rng(32)
    reference = rng.lognormal(0, 1, 200_000)
    current = rng.lognormal(shift, 1, 100_000)
    mine, theirs, values = _numeric_values(profile_of, current, reference)
    cdfs = [numeric_cdf(p.column("x").numeric) for p in (mine, theirs)]  # type: ignore[arg-type]
    assert all(c is not None and 0 < c.resolution < 0.01 for c in cdfs)
    resolution = sum(c.resolution for c in cdfs if c is not None)
    assert abs(values["ks"] - stats.ks_2samp(current, reference).statistic) <= resolution
    widths = sum(math.ldexp(1.0, p.column("x").numeric.sketch["fine_histogram"]["exponent"]) for p in (mine, theirs))  # type: ignore[union-attr]
    exact_wasserstein = stats.wasserstein_distance(current, reference)
    assert abs(values["wasserstein"] * theirs.column("x").numeric.std - exact_wasserstein) <= widths  # type: ignore[union-attr]
    exact_psi = _psi_by_hand(current, reference, _cuts(theirs, "x"))
    assert values["psi"] == pytest.approx(exact_psi, rel=0.05, abs=1e-3)
    for statistic, value in values.items():
        assert (value >= DEFAULT_THRESHOLDS[statistic]) is drifted, (statistic, value)


def _categories(rng: np.random.Generator, n: int, p: list[float]) -> npt.NDArray[np.str_]:
    return rng.choice(["ant", "bee", "cat", "dog", "eel", "fox"], n, p=p)


@pytest.mark.parametrize(
    ("p", "drifted"),
    [([0.25, 0.2, 0.2, 0.15, 0.1, 0.1], True), ([0.3, 0.25, 0.2, 0.1, 0.1, 0.05], False)],
)
def test_categorical_statistics_equal_scipys(profile_of: ProfileOf, p: list[float], drifted: bool) -> None:
    rng = np.random.default_rng(33)
    reference = _categories(rng, 5_000, [0.3, 0.25, 0.2, 0.1, 0.1, 0.05])
    current = _categories(rng, 2_000, p)
    mine, theirs = profile_of(pa.table({"k": current})), profile_of(pa.table({"k": reference}))
    values, observed = np.unique(current, return_counts=True)
    expected = np.array([np.sum(reference == v) for v in values]) / reference.size
    js = compare(mine, theirs).feature("k")
    assert js.statistic == "jensen_shannon" and js.threshold == 0.1
    assert js.value == pytest.approx(jensenshannon(observed / observed.sum(), expected, base=2), abs=1e-12)
    chi = compare(mine, theirs, categorical="chi_square").feature("k")
    assert chi.value == pytest.approx(stats.chisquare(observed, expected * observed.sum()).pvalue, rel=1e-9, abs=1e-300)
    assert chi.drifted is drifted and (chi.value < 0.05) is drifted
    assert js.drifted is (js.value >= 0.1)


def test_a_new_dominant_value_drifts_and_distinct_values_are_compared_together(profile_of: ProfileOf) -> None:
    rng = np.random.default_rng(34)
    reference = pa.table({"k": _categories(rng, 5_000, [0.3, 0.25, 0.2, 0.1, 0.1, 0.05])})
    current = pa.table(
        {"k": np.concatenate([_categories(rng, 3_000, [0.3, 0.25, 0.2, 0.1, 0.1, 0.05]), ["yak"] * 2_000])}
    )
    for statistic in ("jensen_shannon", "chi_square"):
        assert compare(profile_of(current), profile_of(reference), categorical=statistic).drifted  # type: ignore[arg-type]


def test_report_flags_skips_and_thresholds(profile_of: ProfileOf) -> None:
    rng = np.random.default_rng(35)
    reference = profile_of(
        pa.table({"x": rng.normal(0, 1, 5_000), "k": _categories(rng, 5_000, [1 / 6] * 6), "gone": [1] * 5_000})
    )
    current = profile_of(
        pa.table(
            {
                "x": rng.normal(2, 1, 3_000),
                "k": _categories(rng, 3_000, [1 / 6] * 6),
                "k2": ["a"] * 3_000,
                "gone": pa.array([None] * 3_000, pa.int64()),
            }
        )
    )
    report = compare(current, reference)
    assert [(f.name, f.kind, f.drifted) for f in report.features] == [
        ("x", "numeric", True),
        ("k", "categorical", False),
    ]
    assert report.drifted and report.drifted_share == 0.5
    assert dict(report.skipped) == {"k2": "not in the reference", "gone": "no values here, numeric in the reference"}
    relaxed = compare(current, reference, thresholds={"psi": 100.0})
    assert not relaxed.drifted and relaxed.feature("x").threshold == 100.0
    assert report.to_json_dict()["features"][0] == {
        "name": "x",
        "kind": "numeric",
        "statistic": "psi",
        "value": report.feature("x").value,
        "threshold": 0.2,
        "drifted": True,
    }
    with pytest.raises(ValueError, match="'kl' is not one of psi, ks, wasserstein"):
        compare(current, reference, numeric="kl")  # type: ignore[arg-type]


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 7, 10, 25, 40])
def test_chi_square_survival_matches_scipy(dof: int) -> None:
    for x in (0.0, 0.01, 0.5, 1.0, dof * 0.8, float(dof), dof * 1.5 + 3, 60.0, 300.0):
        assert chi2_survival(x, dof) == pytest.approx(stats.chi2.sf(x, dof), rel=1e-9, abs=1e-300)
