"""Merging finished profiles (of the same schema) from what each one keeps."""

from __future__ import annotations

from ferry_profile._categorical import merge_categorical
from ferry_profile._numeric import NumericAccumulator
from ferry_profile._results import ColumnProfile, NumericStats, Profile, ProfileMergeError

__all__ = ["merge_profiles"]


def merge_profiles(first: Profile, second: Profile) -> Profile:
    """The profile of the rows of ``first`` and ``second`` together.

    Row and null counts, min, max, mean and std (Chan et al.) are exact. A numeric
    column's quantiles and histogram come from its merged exact value counts (while the
    two hold at most 4,096 distinct values together), else from the merged DDSketch and
    fine histogram: the same result, within the same stated error, as profiling the
    concatenated rows. A categorical column's distinct count and top values come from
    its merged HLL and frequent-items sketches (see :class:`CategoricalStats`).

    Args:
        first: a profile.
        second: a profile of a table with the same columns (names and types, in order).

    Returns:
        The merged profile.

    Raises:
        ProfileMergeError: the schemas differ, or a profile was written before profiles
            kept their sketches (re-profile the data to merge it).
    """
    mine = [(c.name, c.type) for c in first.columns]
    theirs = [(c.name, c.type) for c in second.columns]
    if mine != theirs:
        raise ProfileMergeError(f"cannot merge profiles of different schemas: {mine} and {theirs}")
    columns = []
    for a, b in zip(first.columns, second.columns, strict=True):
        try:
            columns.append(_merge_column(a, b, first.row_count - a.null_count, second.row_count - b.null_count))
        except ProfileMergeError as exc:
            raise ProfileMergeError(f"column {a.name!r}: {exc}") from exc
    return Profile(row_count=first.row_count + second.row_count, columns=tuple(columns))


def _merge_column(a: ColumnProfile, b: ColumnProfile, seen_a: int, seen_b: int) -> ColumnProfile:
    categorical = a.categorical or b.categorical
    if a.categorical is not None and b.categorical is not None:
        categorical = merge_categorical(a.categorical, b.categorical)
    return ColumnProfile(a.name, a.type, a.null_count + b.null_count, _merge_numeric(a, b, seen_a, seen_b), categorical)


def _merge_numeric(a: ColumnProfile, b: ColumnProfile, seen_a: int, seen_b: int) -> NumericStats | None:
    if a.numeric is None or b.numeric is None:
        return a.numeric or b.numeric  # a column with no values adds nothing
    merged = NumericAccumulator.restore(a.numeric, seen_a)
    merged.merge(NumericAccumulator.restore(b.numeric, seen_b))
    return merged.result()
