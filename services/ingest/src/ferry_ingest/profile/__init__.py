"""Dataset profiles computed in one streaming pass with bounded memory.

This module is self-contained (pyarrow, numpy, ddsketch; no grpc, no service code) so
that monitor can reuse it for drift references. Feed Arrow record batches to a
:class:`ProfileBuilder`, then call :meth:`ProfileBuilder.result`. Builders of the
same schema merge (:meth:`ProfileBuilder.merge`), so batches may be profiled apart.

Semantics per column (nulls excluded everywhere; a floating-point NaN counts as null):

- ``null_count``, ``row_count``: exact.
- Numeric columns (integers, floats, decimals): ``min`` and ``max`` exact (they may be
  infinite); ``mean`` and population ``std`` exact up to floating-point rounding, over
  the finite values, merged batch by batch with Chan et al.'s parallel algorithm.
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
  ``distinct_count`` becomes a HyperLogLog estimate (about 0.8 % standard error),
  flagged by ``distinct_exact: false`` in the JSON form.
- Other types (temporal, binary, nested): only ``null_count``.
"""

from ferry_ingest.profile._builder import ProfileBuilder
from ferry_ingest.profile._results import (
    HISTOGRAM_BINS,
    QUANTILES,
    RELATIVE_ACCURACY,
    TOP_VALUES,
    CategoricalStats,
    ColumnProfile,
    NumericStats,
    Profile,
    column_kind,
)

__all__ = [
    "HISTOGRAM_BINS",
    "QUANTILES",
    "RELATIVE_ACCURACY",
    "TOP_VALUES",
    "CategoricalStats",
    "ColumnProfile",
    "NumericStats",
    "Profile",
    "ProfileBuilder",
    "column_kind",
]
