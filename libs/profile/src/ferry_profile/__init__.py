"""Dataset profiles: one streaming pass, bounded memory, mergeable, comparable.

Self-contained (pyarrow, numpy, ddsketch, datasketches; no grpc, no service code): ingest
computes profiles with it and monitor compares live data with a training reference.

- Build: feed Arrow record batches to a :class:`ProfileBuilder`, then call
  :meth:`ProfileBuilder.result`. Builders of the same schema merge
  (:meth:`ProfileBuilder.merge`), so batches may be profiled apart.
- Merge finished profiles: :func:`merge_profiles`.
- Serialize: :meth:`Profile.to_json_dict` / :meth:`Profile.from_json_dict` (the
  ``profile.json`` form; files written by older versions still load).
- Compare with a reference: :func:`compare` returns a :class:`DriftReport`.

Semantics per column (nulls excluded everywhere; a floating-point NaN counts as null):

- ``null_count``, ``row_count``: exact.
- Numeric columns (integers, floats, decimals): ``min`` and ``max`` exact (they may be
  infinite); ``count`` (finite values) exact; ``mean`` and population ``std`` exact up
  to floating-point rounding, over the finite values, merged batch by batch with Chan
  et al.'s parallel algorithm.
- ``quantiles`` (0.01 ... 0.99) and ``histogram`` (20 equal-width bins between the
  exact min and max, numpy's convention: half-open bins, the last one closed) are
  exact, as numpy computes them (linear interpolation), while a column has at most
  4,096 distinct values: their counts are kept (``quantile_relative_error`` 0).
- Past that, quantiles come from a DDSketch (logarithmic mapping, mergeable) over
  the finite values: each is within ``quantile_relative_error`` (1 %) of a true value
  of rank ``q * (n - 1)``, relative to that value's magnitude. min and max are unknown
  until the pass ends, so for the histogram values are counted exactly into at most
  16,384 fine bins of a power-of-two width (halved in resolution whenever the range
  outgrows them), which are then folded into the 20 final bins. Only the fine bin
  straddling each final edge (narrower than 1/4,096 of the range) is uncertain: its
  count is split in proportion to the overlap, so a final count is off by at most
  the count of two fine bins. Integer-valued columns (a fine bin at most 1 wide,
  every value on a fine-bin edge) are folded exactly.
- Categorical columns (strings, booleans, dictionaries): values are counted exactly
  while a column has at most ``max_distinct`` distinct values; ``distinct_count``
  and ``top_values`` (20, most frequent first, ties by value) are then exact. Past
  that bound the column is *saturated*: the ``max_distinct`` most frequent values
  seen so far stay tracked and their counts stay exact from then on, values first
  seen later are only counted as a whole (``untracked_count``), and
  ``distinct_count`` becomes an HLL estimate (Apache DataSketches, 2**14 registers:
  about 0.8 % relative standard error), flagged by ``distinct_exact: false``.
- Other types (temporal, binary, nested): only ``null_count``.

Each profile also keeps what a merge needs (``sketch``): a numeric column's DDSketch
buckets, fine histogram and, while few, exact value counts; a categorical column's HLL
sketch and a frequent-items sketch (2**10 slots: exact up to 768 distinct values, else
each count off by at most 0.34 % of the column's values).
"""

from ferry_profile._builder import ProfileBuilder
from ferry_profile._categorical import FREQUENT_ITEMS_LG_K, HLL_LG_K
from ferry_profile._distribution import Cdf, numeric_cdf
from ferry_profile._drift import (
    DEFAULT_THRESHOLDS,
    PSI_FLOOR,
    CategoricalStatistic,
    DriftReport,
    FeatureDrift,
    NumericStatistic,
    compare,
)
from ferry_profile._merge import merge_profiles
from ferry_profile._numeric import EXACT_VALUES, FINE_BINS
from ferry_profile._results import (
    HISTOGRAM_BINS,
    QUANTILES,
    RELATIVE_ACCURACY,
    TOP_VALUES,
    CategoricalStats,
    ColumnProfile,
    NumericStats,
    Profile,
    ProfileMergeError,
    column_kind,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "EXACT_VALUES",
    "FINE_BINS",
    "FREQUENT_ITEMS_LG_K",
    "HISTOGRAM_BINS",
    "HLL_LG_K",
    "PSI_FLOOR",
    "QUANTILES",
    "RELATIVE_ACCURACY",
    "TOP_VALUES",
    "CategoricalStatistic",
    "CategoricalStats",
    "Cdf",
    "ColumnProfile",
    "DriftReport",
    "FeatureDrift",
    "NumericStatistic",
    "NumericStats",
    "Profile",
    "ProfileBuilder",
    "ProfileMergeError",
    "column_kind",
    "compare",
    "merge_profiles",
    "numeric_cdf",
]
