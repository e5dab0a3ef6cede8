"""Mapping between ``ferry.ingest.v1`` messages and the domain objects."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from ferry.ingest.v1 import ingest_pb2
from ferry_common import fields
from ferry_common.errors import InvalidArgument
from ferry_ingest.domain import DataFormat, Dataset, DatasetVersion, Lineage
from ferry_ingest.recipe import (
    Cast,
    Deduplicate,
    Drop,
    FillNull,
    Filter,
    Recipe,
    Rename,
    Select,
    Split,
    SplitPart,
    Step,
)
from ferry_profile import Profile

__all__ = [
    "data_format",
    "dataset_to_proto",
    "format_to_proto",
    "profile_to_proto",
    "recipe_from_proto",
    "recipe_to_proto",
    "version_to_proto",
]

_FORMATS = {
    ingest_pb2.DATA_FORMAT_CSV: DataFormat.CSV,
    ingest_pb2.DATA_FORMAT_PARQUET: DataFormat.PARQUET,
    ingest_pb2.DATA_FORMAT_JSONL: DataFormat.JSONL,
}
_FORMAT_VALUES = {fmt: value for value, fmt in _FORMATS.items()}


def data_format(value: int, field: str, *, required: bool = True) -> DataFormat | None:
    """The domain format of an enum value (INVALID_ARGUMENT when unset and required)."""
    if value in _FORMATS:
        return _FORMATS[value]  # type: ignore[index]  # protobuf enums are ints at run time
    if value == ingest_pb2.DATA_FORMAT_UNSPECIFIED and not required:
        return None
    raise InvalidArgument(
        f"{field}: {value} is not a format (use DATA_FORMAT_CSV, DATA_FORMAT_PARQUET or DATA_FORMAT_JSONL)",
        field=field,
    )


def format_to_proto(fmt: DataFormat | None) -> int:
    return _FORMAT_VALUES[fmt] if fmt is not None else ingest_pb2.DATA_FORMAT_UNSPECIFIED


def _timestamp(value: object) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)  # type: ignore[arg-type]
    return stamp


# Bounds on a recipe's size: it is stored in every version's lineage.
MAX_STEPS = 100
MAX_LIST = 10_000
MAX_VALUE = 10_000


def _enum_word(field: str, value: int, enum: Any, prefix: str) -> str:
    """The lower-case word of an enum value (``gt``); an unknown number is INVALID_ARGUMENT."""
    if value not in enum.values():
        names = ", ".join(v.name for v in enum.DESCRIPTOR.values if not v.name.endswith("_UNSPECIFIED"))
        raise InvalidArgument(f"{field}: {value} is not one of {names}", field=field)
    word: str = enum.Name(value).removeprefix(prefix).lower()
    return word


def _columns(field: str, names: Iterable[str]) -> tuple[str, ...]:
    found = tuple(names)
    if len(found) > MAX_LIST:
        raise InvalidArgument(f"{field}: {len(found)} columns, at most {MAX_LIST}", field=field)
    for index, name in enumerate(found):
        fields.name(f"{field}[{index}]", name)
    return found


def _column(field: str, name: str) -> str:
    # Empty is left to the recipe's own checks, which say which column was expected.
    return fields.name(field, name) if name else name


def recipe_from_proto(recipe: ingest_pb2.Recipe) -> Recipe:
    """The domain recipe; an empty step or a malformed field is INVALID_ARGUMENT naming it."""
    if len(recipe.steps) > MAX_STEPS:
        raise InvalidArgument(f"recipe.steps: {len(recipe.steps)} steps, at most {MAX_STEPS}", field="recipe.steps")
    steps: list[Step] = []
    for index, step in enumerate(recipe.steps):
        kind = step.WhichOneof("step")
        where = f"recipe.steps[{index}].{kind}"
        if kind == "select":
            steps.append(Select(_columns(f"{where}.columns", step.select.columns)))
        elif kind == "drop":
            steps.append(Drop(_columns(f"{where}.columns", step.drop.columns)))
        elif kind == "rename":
            pairs = sorted(step.rename.columns.items())
            _columns(f"{where}.columns", (name for pair in pairs for name in pair))
            steps.append(Rename(tuple(pairs)))
        elif kind == "filter":
            operator: int = step.filter.operator
            word = (
                ""
                if operator == ingest_pb2.FILTER_OPERATOR_UNSPECIFIED
                else _enum_word(f"{where}.operator", operator, ingest_pb2.FilterOperator, "FILTER_OPERATOR_")
            )
            values = tuple(step.filter.values)
            if len(values) > MAX_LIST:
                raise InvalidArgument(
                    f"{where}.values: {len(values)} values, at most {MAX_LIST}", field=f"{where}.values"
                )
            for position, value in enumerate(values):
                fields.text(f"{where}.values[{position}]", value, MAX_VALUE)
            steps.append(
                Filter(
                    _column(f"{where}.column", step.filter.column),
                    word,
                    fields.text(f"{where}.value", step.filter.value, MAX_VALUE),
                    values,
                )
            )
        elif kind == "fill_null":
            strategy: int = step.fill_null.strategy
            word = (
                "value"
                if strategy == ingest_pb2.FILL_STRATEGY_UNSPECIFIED
                else _enum_word(f"{where}.strategy", strategy, ingest_pb2.FillStrategy, "FILL_STRATEGY_")
            )
            steps.append(
                FillNull(
                    _column(f"{where}.column", step.fill_null.column),
                    word,
                    fields.text(f"{where}.value", step.fill_null.value, MAX_VALUE),
                )
            )
        elif kind == "cast":
            type_ = fields.text(f"{where}.type", step.cast.type, 64).strip().lower()
            steps.append(Cast(_column(f"{where}.column", step.cast.column), type_))
        elif kind == "deduplicate":
            steps.append(Deduplicate(_columns(f"{where}.columns", step.deduplicate.columns)))
        elif kind == "split":
            if len(step.split.fractions) > 64:
                raise InvalidArgument(
                    f"{where}.fractions: {len(step.split.fractions)} parts, at most 64", field=f"{where}.fractions"
                )
            if step.split.seed < 0:
                raise InvalidArgument(f"{where}.seed: {step.split.seed} must not be negative", field=f"{where}.seed")
            parts = tuple(SplitPart(p.name, p.fraction) for p in step.split.fractions)
            steps.append(Split(parts, step.split.seed, _column(f"{where}.stratify_column", step.split.stratify_column)))
        else:
            where = f"recipe.steps[{index}]"
            raise InvalidArgument(
                f"{where}: empty step (set one of select, drop, rename, filter, fill_null, cast, deduplicate, split)",
                field=where,
            )
    return Recipe(tuple(steps))


def recipe_to_proto(recipe: Recipe) -> ingest_pb2.Recipe:
    message = ingest_pb2.Recipe()
    for step in recipe.steps:
        out = message.steps.add()
        match step:
            case Select(columns):
                out.select.columns.extend(columns)
            case Drop(columns):
                out.drop.columns.extend(columns)
            case Rename(pairs):
                out.rename.columns.update(dict(pairs))
            case Filter(column, operator, value, values):
                out.filter.column = column
                out.filter.operator = ingest_pb2.FilterOperator.Value(f"FILTER_OPERATOR_{operator.upper()}")  # type: ignore[assignment]
                out.filter.value = value
                out.filter.values.extend(values)
            case FillNull(column, strategy, value):
                out.fill_null.column = column
                out.fill_null.strategy = ingest_pb2.FillStrategy.Value(f"FILL_STRATEGY_{strategy.upper()}")  # type: ignore[assignment]
                out.fill_null.value = value
            case Cast(column, type_):
                out.cast.column, out.cast.type = column, type_
            case Deduplicate(columns):
                out.deduplicate.SetInParent()
                out.deduplicate.columns.extend(columns)
            case Split(parts, seed, stratify):
                out.split.fractions.extend(ingest_pb2.SplitFraction(name=p.name, fraction=p.fraction) for p in parts)
                out.split.seed, out.split.stratify_column = seed, stratify
    return message


def _lineage_to_proto(lineage: Lineage) -> ingest_pb2.DatasetLineage:
    message = ingest_pb2.DatasetLineage(
        parent=lineage.parent,
        source_uri=lineage.source_uri,
        source_query=lineage.source_query,
        source_format=format_to_proto(lineage.source_format),  # type: ignore[arg-type]
    )
    if lineage.recipe is not None:
        message.recipe.CopyFrom(recipe_to_proto(lineage.recipe))
    return message


def version_to_proto(version: DatasetVersion) -> ingest_pb2.DatasetVersion:
    return ingest_pb2.DatasetVersion(
        name=version.name,
        version=version.version,
        sha256=version.sha256,
        row_count=version.row_count,
        size_bytes=version.size_bytes,
        schema=ingest_pb2.Schema(
            fields=[ingest_pb2.Field(name=f.name, type=f.type, nullable=f.nullable) for f in version.schema]
        ),
        uri=version.uri,
        splits=[ingest_pb2.DatasetSplit(name=s.name, row_count=s.row_count, uri=s.uri) for s in version.splits],
        lineage=_lineage_to_proto(version.lineage),
        description=version.description,
        labels=dict(version.labels),
        create_time=_timestamp(version.create_time),
    )


def dataset_to_proto(dataset: Dataset) -> ingest_pb2.Dataset:
    return ingest_pb2.Dataset(
        name=f"datasets/{dataset.dataset_id}",
        description=dataset.description,
        labels=dict(dataset.labels),
        latest_version=dataset.latest_version,
        create_time=_timestamp(dataset.create_time),
        update_time=_timestamp(dataset.update_time),
    )


def profile_to_proto(name: str, split: str, profile: Profile) -> ingest_pb2.Profile:
    message = ingest_pb2.Profile(name=name, split=split, row_count=profile.row_count)
    for column in profile.columns:
        out = message.columns.add(name=column.name, type=column.type, null_count=column.null_count)
        if column.numeric is not None:
            num = column.numeric
            out.numeric.CopyFrom(
                ingest_pb2.NumericProfile(
                    min=num.min,
                    max=num.max,
                    mean=num.mean,
                    std=num.std,
                    quantiles=[ingest_pb2.Quantile(quantile=q, value=v) for q, v in num.quantiles if not math.isnan(v)],
                    histogram=ingest_pb2.Histogram(edges=num.histogram_edges, counts=num.histogram_counts),
                    quantile_relative_error=num.quantile_relative_error,
                )
            )
        if column.categorical is not None:
            cat = column.categorical
            out.categorical.CopyFrom(
                ingest_pb2.CategoricalProfile(
                    distinct_count=cat.distinct_count,
                    top_values=[ingest_pb2.ValueCount(value=v, count=c) for v, c in cat.top_values],
                )
            )
    return message
