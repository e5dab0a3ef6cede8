"""Runs a validated :class:`~ferry_ingest.recipe.Recipe` over a version's Parquet.

Rows stream through the steps batch by batch. Steps that need to see every row
first take an extra streaming pass over the steps before them:

- ``fill_null`` with ``mean`` (exact), ``median`` (exact: holds that one column's
  values, bounded by ``max_rows``) or ``mode`` (most frequent value, ties broken by
  the smallest value's text); integer columns get the rounded mean or median;
- ``deduplicate`` keeps the first occurrence of each key; it holds the key columns
  of every row (bounded by ``max_rows``, RESOURCE_EXHAUSTED above);
- ``split`` counts the rows (per class of ``stratify_column``), gives each part
  ``fraction * rows`` of them (largest remainders get the leftovers, per class when
  stratified) and then assigns rows in one pass with a seeded multivariate
  hypergeometric draw per batch, which is a uniformly random assignment with exact
  part sizes. The same parent, recipe and seed always give the same parts.

Output: ``data.parquet`` (every row) plus one Parquet per split, each profiled in
the same pass.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ferry_common.errors import InvalidArgument, ResourceExhausted
from ferry_ingest.parquet_output import ParquetOutput
from ferry_ingest.recipe import (
    CAST_TYPES,
    Cast,
    Deduplicate,
    Drop,
    FillNull,
    Filter,
    Recipe,
    Rename,
    Select,
    Split,
    Step,
    parse_value,
    step_kind,
)
from ferry_profile import Profile, ProfileBuilder

__all__ = ["SplitOutput", "TransformOutput", "allocate", "run_recipe"]

READ_BATCH_ROWS = 65_536
_COMPARISONS = {
    "eq": pc.equal,
    "ne": pc.not_equal,
    "lt": pc.less,
    "le": pc.less_equal,
    "gt": pc.greater,
    "ge": pc.greater_equal,
}

Batches = Iterator[pa.RecordBatch]
Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SplitOutput:
    name: str
    path: pathlib.Path
    profile: Profile


@dataclass(frozen=True)
class TransformOutput:
    path: pathlib.Path
    schema: pa.Schema
    profile: Profile
    splits: tuple[SplitOutput, ...] = field(default=())


def allocate(total: int, fractions: list[float]) -> list[int]:
    """Part sizes summing to ``total``: floors, then largest remainders (earlier parts win ties)."""
    exact = [total * f for f in fractions]
    sizes = [math.floor(x) for x in exact]
    order = sorted(range(len(fractions)), key=lambda i: (-(exact[i] - sizes[i]), i))
    for i in order[: total - sum(sizes)]:
        sizes[i] += 1
    return sizes


def _decoded(array: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    return array.dictionary_decode() if pa.types.is_dictionary(array.type) else array


class _Runner:
    """One recipe over one parent file; steps see batches through generators."""

    def __init__(
        self, parent: pathlib.Path, recipe: Recipe, schemas: list[pa.Schema], max_distinct: int, max_rows: int
    ) -> None:
        self.parent = parent
        self.recipe = recipe
        self.schemas = schemas  # the schema each step sees
        self.max_distinct = max_distinct
        self.max_rows = max_rows
        self.prepared: dict[int, object] = {}

    def source(self) -> Batches:
        with pq.ParquetFile(self.parent) as parquet:
            yield from parquet.iter_batches(batch_size=READ_BATCH_ROWS)

    def through(self, count: int) -> Batches:
        """Batches after the first ``count`` steps (preparing barrier steps on the way)."""
        batches = self.source()
        for index, step in enumerate(self.recipe.steps[:count]):
            if isinstance(step, Split):
                break
            batches = self._apply(index, step, batches)
        return batches

    def _where(self, index: int, step: Step, field_: str) -> str:
        return f"recipe.steps[{index}].{step_kind(step)}.{field_}"

    def _apply(self, index: int, step: Step, batches: Batches) -> Batches:
        match step:
            case Select(columns):
                return (b.select(list(columns)) for b in batches)
            case Drop(columns):
                return (b.drop_columns(list(columns)) for b in batches)
            case Rename(pairs):
                mapping = dict(pairs)
                return (b.rename_columns([mapping.get(n, n) for n in b.schema.names]) for b in batches)
            case Filter():
                return self._filter(index, step, batches)
            case FillNull():
                return self._fill(index, step, batches)
            case Cast():
                return self._cast(index, step, batches)
            case Deduplicate():
                return self._deduplicate(index, step, batches)
        raise AssertionError(f"unexpected step {step!r}")

    def _filter(self, index: int, step: Filter, batches: Batches) -> Batches:
        for batch in batches:
            column = _decoded(batch.column(step.column))
            if step.operator == "is_null":
                mask = pc.is_null(column, nan_is_null=True)
            elif step.operator == "not_null":
                mask = pc.invert(pc.is_null(column, nan_is_null=True))
            elif step.operator == "in":
                where = self._where(index, step, "values")
                value_set = pa.array([parse_value(v, column.type, where).as_py() for v in step.values], column.type)
                mask = pc.is_in(column, value_set=value_set)
            else:
                scalar = parse_value(step.value, column.type, self._where(index, step, "value"))
                mask = _COMPARISONS[step.operator](column, scalar)
            yield batch.filter(mask, null_selection_behavior="drop")

    def _fill(self, index: int, step: FillNull, batches: Batches) -> Batches:
        if index not in self.prepared:
            self.prepared[index] = self._fill_value(index, step)
        fill = self.prepared[index]
        for batch in batches:
            position = batch.schema.get_field_index(step.column)
            column = _decoded(batch.column(position))
            if fill is None or (column.null_count == 0 and not pa.types.is_floating(column.type)):
                yield batch
                continue
            assert isinstance(fill, pa.Scalar)
            filled = pc.fill_null(column, fill)
            if pa.types.is_floating(column.type):
                filled = pc.if_else(pc.is_nan(filled), fill, filled)
            yield batch.set_column(position, batch.schema.field(position).with_type(filled.type), filled)

    def _fill_value(self, index: int, step: FillNull) -> pa.Scalar | None:
        if step.strategy == "value":
            column_type = self.schemas[index].field(step.column).type
            if pa.types.is_dictionary(column_type):
                column_type = column_type.value_type
            return parse_value(step.value, column_type, self._where(index, step, "value"))
        batches = self.through(index)
        type_: pa.DataType | None = None
        if step.strategy == "mode":
            counts: dict[object, int] = {}
            for batch in batches:
                column = _decoded(batch.column(step.column))
                type_ = column.type
                pairs = pc.value_counts(pc.drop_null(column))
                values, tallies = pairs.field("values").to_pylist(), pairs.field("counts").to_pylist()
                for value, count in zip(values, tallies, strict=True):
                    if not (isinstance(value, float) and math.isnan(value)):
                        counts[value] = counts.get(value, 0) + count
            if not counts or type_ is None:
                return None
            best = min(counts.items(), key=lambda item: (-item[1], str(item[0])))[0]
            return pa.scalar(best, type_)
        parts: list[Ints] = []
        builder: ProfileBuilder | None = None
        kept = 0
        for batch in batches:
            column = batch.column(step.column)
            type_ = column.type
            if builder is None:
                builder = ProfileBuilder(pa.schema([batch.schema.field(step.column)]), self.max_distinct)
            builder.add(pa.record_batch([column], names=[step.column]))
            if step.strategy == "median":
                values = pc.cast(pc.drop_null(column), pa.float64()).to_numpy(zero_copy_only=False)
                values = values[~np.isnan(values)]
                kept += values.size
                if kept > self.max_rows:
                    raise ResourceExhausted(
                        f"{self._where(index, step, 'strategy')}: median of more than {self.max_rows} values "
                        "(FERRY_INGEST_TRANSFORM_MAX_ROWS)"
                    )
                parts.append(values)
        if builder is None or type_ is None:
            return None
        numeric = builder.result().columns[0].numeric
        if numeric is None or not math.isfinite(numeric.mean):
            return None
        value = float(np.median(np.concatenate(parts))) if step.strategy == "median" else numeric.mean
        if pa.types.is_integer(type_):
            return pa.scalar(round(value)).cast(type_)
        return pa.scalar(value, pa.float64()).cast(type_)

    def _cast(self, index: int, step: Cast, batches: Batches) -> Batches:
        target = CAST_TYPES[step.type]
        for batch in batches:
            position = batch.schema.get_field_index(step.column)
            field_ = batch.schema.field(position)
            try:
                cast = pc.cast(_decoded(batch.column(position)), target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                where = self._where(index, step, "type")
                raise InvalidArgument(
                    f"{where}: cannot cast column {step.column!r} ({field_.type}) to {step.type}: {exc}", field=where
                ) from None
            yield batch.set_column(position, field_.with_type(target), cast)

    def _deduplicate(self, index: int, step: Deduplicate, batches: Batches) -> Batches:
        if index not in self.prepared:
            self.prepared[index] = self._first_rows(index, step)
        kept = self.prepared[index]
        assert isinstance(kept, np.ndarray)
        offset = 0
        for batch in batches:
            ids = np.arange(offset, offset + batch.num_rows, dtype=np.int64)
            offset += batch.num_rows
            position = np.minimum(np.searchsorted(kept, ids), max(kept.size - 1, 0))
            mask = kept[position] == ids if kept.size else np.zeros(ids.size, dtype=bool)
            yield batch.filter(pa.array(mask))

    def _first_rows(self, index: int, step: Deduplicate) -> Ints:
        tables: list[pa.Table] = []
        offset = 0
        names: list[str] = []
        row = "__ferry_row"
        for batch in self.through(index):
            names = list(step.columns) or batch.schema.names
            keys = batch.select(names)
            ids = pa.array(np.arange(offset, offset + batch.num_rows, dtype=np.int64))
            tables.append(pa.Table.from_batches([keys]).append_column(row, ids))
            offset += batch.num_rows
            if offset > self.max_rows:
                where = f"recipe.steps[{index}].deduplicate"
                raise ResourceExhausted(
                    f"{where}: more than {self.max_rows} rows to deduplicate (FERRY_INGEST_TRANSFORM_MAX_ROWS)",
                    field=where,
                )
        if not tables:
            return np.zeros(0, dtype=np.int64)
        table = pa.concat_tables(tables)
        renamed = [f"k{i}" for i in range(len(names))]
        table = table.rename_columns([*renamed, row])
        try:
            firsts = table.group_by(renamed, use_threads=False).aggregate([(row, "min")])
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid) as exc:
            where = f"recipe.steps[{index}].deduplicate.columns"
            raise InvalidArgument(f"{where}: cannot compare rows of these columns ({exc})", field=where) from None
        return np.sort(firsts.column(f"{row}_min").to_numpy())

    # ------------------------------------------------------------------ split

    def split_assigner(self, index: int, step: Split) -> Callable[[pa.RecordBatch], Ints]:
        """A function giving each row of successive batches its part index."""
        fractions = [p.fraction for p in step.fractions]
        rng = np.random.default_rng(step.seed)
        if not step.stratify_column:
            total = sum(b.num_rows for b in self.through(index))
            remaining = np.array(allocate(total, fractions), dtype=np.int64)

            def assign(batch: pa.RecordBatch) -> Ints:
                return _draw(rng, remaining, batch.num_rows)

            return assign
        counts: dict[object, int] = {}
        type_ = pa.null()
        for batch in self.through(index):
            column = _decoded(batch.column(step.stratify_column))
            type_ = column.type
            pairs = pc.value_counts(column)
            for value, count in zip(pairs.field("values").to_pylist(), pairs.field("counts").to_pylist(), strict=True):
                counts[value] = counts.get(value, 0) + count
        classes = sorted(counts, key=lambda v: (v is not None, str(v)))
        quotas = [np.array(allocate(counts[c], fractions), dtype=np.int64) for c in classes]
        known = [c for c in classes if c is not None]
        value_set = pa.array(known, type_)
        null_class = classes.index(None) if None in counts else -1
        shift = 1 if null_class == 0 else 0

        def assign_stratified(batch: pa.RecordBatch) -> Ints:
            column = _decoded(batch.column(step.stratify_column))
            codes = pc.index_in(column, value_set=value_set).to_numpy(zero_copy_only=False)
            codes = (
                np.where(np.isnan(codes), null_class, codes + shift).astype(np.int64)
                if codes.dtype.kind == "f"
                else codes.astype(np.int64) + shift
            )
            labels = np.zeros(batch.num_rows, dtype=np.int64)
            for code in np.unique(codes):
                rows = np.flatnonzero(codes == code)
                labels[rows] = _draw(rng, quotas[int(code)], rows.size)
            return labels

        return assign_stratified


def _draw(rng: np.random.Generator, remaining: Ints, size: int) -> Ints:
    """Part indices for ``size`` rows, drawn without replacement from ``remaining`` (updated)."""
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    drawn = rng.multivariate_hypergeometric(remaining, size)
    remaining -= drawn
    labels = np.repeat(np.arange(remaining.size, dtype=np.int64), drawn)
    rng.shuffle(labels)
    return labels


def run_recipe(
    parent: pathlib.Path, recipe: Recipe, out_dir: pathlib.Path, *, max_distinct: int, max_rows: int
) -> TransformOutput:
    """Apply ``recipe`` (already validated) to the Parquet file ``parent``.

    Raises:
        InvalidArgument: a value fails a step at run time (a cast), naming the step.
        ResourceExhausted: a step would hold more than ``max_rows`` rows.
    """
    with pq.ParquetFile(parent) as parquet:
        schemas = recipe.step_schemas(parquet.schema_arrow)
    schema = schemas[-1]
    runner = _Runner(parent, recipe, schemas, max_distinct, max_rows)
    split = recipe.split
    assign = runner.split_assigner(len(recipe.steps) - 1, split) if split is not None else None
    names = [p.name for p in split.fractions] if split is not None else []
    data = ParquetOutput(out_dir / "data.parquet", schema, max_distinct)
    parts = [ParquetOutput(out_dir / f"split-{name}.parquet", schema, max_distinct) for name in names]
    outputs = [data, *parts]
    try:
        for batch in runner.through(len(recipe.steps)):
            data.write(batch)
            if assign is not None:
                labels = assign(batch)
                for number, part in enumerate(parts):
                    part.write(batch.filter(pa.array(labels == number)))
        profile = data.close()
        splits = tuple(SplitOutput(name, out.path, out.close()) for name, out in zip(names, parts, strict=True))
    except BaseException:
        for output in outputs:
            output.abandon()
        raise
    return TransformOutput(data.path, data.schema, profile, splits)
