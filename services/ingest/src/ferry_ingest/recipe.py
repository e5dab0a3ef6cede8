"""Pre-processing recipes: their domain form, validation and canonical JSON.

A recipe is an ordered list of steps (select, drop, rename, filter, fill_null, cast,
deduplicate, split). :meth:`Recipe.validate` checks every step against the schema
it will see (column names, value types, fractions) before any data is read, and
names the step and field of a mistake: ``recipe.steps[2].filter.column: column
'agee' not found``. :meth:`Recipe.canonical_json` is the stable text hashed into a
transformed version's content hash: sorted keys, no whitespace, every field
present with its default, operators and strategies as lower-case words. It is
built from these dataclasses, never from protobuf's JSON printer, so it does not
move with library upgrades.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ferry_common.errors import InvalidArgument
from ferry_common.names import ID_PATTERN, shorten

__all__ = [
    "CAST_TYPES",
    "FILL_STRATEGIES",
    "FILTER_OPERATORS",
    "Cast",
    "Deduplicate",
    "Drop",
    "FillNull",
    "Filter",
    "Recipe",
    "Rename",
    "Select",
    "Split",
    "SplitPart",
    "Step",
    "content_hash",
    "parse_value",
]

FILTER_OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "is_null", "not_null")
FILL_STRATEGIES = ("value", "mean", "median", "mode")
CAST_TYPES: Mapping[str, pa.DataType] = {
    "int64": pa.int64(),
    "int32": pa.int32(),
    "double": pa.float64(),
    "float64": pa.float64(),
    "float": pa.float32(),
    "float32": pa.float32(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us"),
}


@dataclass(frozen=True)
class Select:
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Drop:
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Rename:
    columns: tuple[tuple[str, str], ...]  # (old, new), sorted by old name


@dataclass(frozen=True)
class Filter:
    column: str
    operator: str
    value: str = ""
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class FillNull:
    column: str
    strategy: str = "value"
    value: str = ""


@dataclass(frozen=True)
class Cast:
    column: str
    type: str


@dataclass(frozen=True)
class Deduplicate:
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class SplitPart:
    name: str
    fraction: float


@dataclass(frozen=True)
class Split:
    fractions: tuple[SplitPart, ...]
    seed: int = 0
    stratify_column: str = ""


Step = Select | Drop | Rename | Filter | FillNull | Cast | Deduplicate | Split

_KIND: Mapping[type, str] = {
    Select: "select",
    Drop: "drop",
    Rename: "rename",
    Filter: "filter",
    FillNull: "fill_null",
    Cast: "cast",
    Deduplicate: "deduplicate",
    Split: "split",
}


def step_kind(step: Step) -> str:
    return _KIND[type(step)]


def _step_json(step: Step) -> dict[str, Any]:
    body: dict[str, Any]
    match step:
        case Select(columns) | Drop(columns) | Deduplicate(columns):
            body = {"columns": list(columns)}
        case Rename(columns):
            body = {"columns": dict(columns)}
        case Filter(column, operator, value, values):
            body = {"column": column, "operator": operator, "value": value, "values": list(values)}
        case FillNull(column, strategy, value):
            body = {"column": column, "strategy": strategy, "value": value}
        case Cast(column, type_):
            body = {"column": column, "type": type_}
        case Split(fractions, seed, stratify):
            body = {
                "fractions": [{"name": p.name, "fraction": p.fraction} for p in fractions],
                "seed": seed,
                "stratify_column": stratify,
            }
    return {step_kind(step): body}


def _step_from_json(data: Mapping[str, Any]) -> Step:
    ((kind, body),) = data.items()
    if kind == "select":
        return Select(tuple(body["columns"]))
    if kind == "drop":
        return Drop(tuple(body["columns"]))
    if kind == "deduplicate":
        return Deduplicate(tuple(body["columns"]))
    if kind == "rename":
        return Rename(tuple(sorted(body["columns"].items())))
    if kind == "filter":
        return Filter(body["column"], body["operator"], body["value"], tuple(body["values"]))
    if kind == "fill_null":
        return FillNull(body["column"], body["strategy"], body["value"])
    if kind == "cast":
        return Cast(body["column"], body["type"])
    if kind == "split":
        parts = tuple(SplitPart(p["name"], float(p["fraction"])) for p in body["fractions"])
        return Split(parts, int(body["seed"]), body["stratify_column"])
    raise ValueError(f"unknown recipe step {kind!r}")


def parse_value(text: str, type_: pa.DataType, where: str) -> pa.Scalar:
    """``text`` as a scalar of ``type_`` (numbers, booleans, timestamps, strings)."""
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return pa.scalar(text, type_)
    if pa.types.is_dictionary(type_):
        return parse_value(text, type_.value_type, where)
    try:
        return pa.scalar(text.strip(), pa.string()).cast(type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise InvalidArgument(f"{where}: {text!r} is not a valid {type_} value", field=where) from None


def _numeric(type_: pa.DataType) -> bool:
    return bool(pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_))


@dataclass(frozen=True)
class Recipe:
    """An ordered list of steps."""

    steps: tuple[Step, ...]

    def to_json_dict(self) -> dict[str, Any]:
        return {"steps": [_step_json(step) for step in self.steps]}

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> Recipe:
        return cls(tuple(_step_from_json(step) for step in data["steps"]))

    def canonical_json(self) -> str:
        return json.dumps(self.to_json_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @property
    def split(self) -> Split | None:
        return self.steps[-1] if self.steps and isinstance(self.steps[-1], Split) else None

    def validate(self, schema: pa.Schema) -> pa.Schema:
        """Check every step against the schema it sees; return the output schema.

        Raises:
            InvalidArgument: naming ``recipe.steps[i].<step>.<field>`` and the bad value.
        """
        return self.step_schemas(schema)[-1]

    def step_schemas(self, schema: pa.Schema) -> list[pa.Schema]:
        """The schema each step sees, then the output schema (validating on the way)."""
        if not self.steps:
            raise InvalidArgument("recipe.steps: a recipe needs at least one step", field="recipe.steps")
        schemas = [schema]
        for index, step in enumerate(self.steps):
            schemas.append(_validate_step(index, step, schemas[-1], last=index == len(self.steps) - 1))
        return schemas


def content_hash(parent_sha256: str, recipe: Recipe) -> str:
    """sha256 of the parent's hash followed by the canonical recipe JSON (DESIGN.md)."""
    return hashlib.sha256((parent_sha256 + recipe.canonical_json()).encode()).hexdigest()


def _validate_step(index: int, step: Step, schema: pa.Schema, *, last: bool) -> pa.Schema:
    kind = step_kind(step)
    prefix = f"recipe.steps[{index}].{kind}"

    def column(name: str, field: str = "column") -> pa.Field:
        where = f"{prefix}.{field}"
        if not name:
            raise InvalidArgument(f"{where}: a column name is required", field=where)
        if name not in schema.names:
            raise InvalidArgument(
                f"{where}: column {name!r} not found (columns: {', '.join(schema.names)})", field=where
            )
        return schema.field(name)

    def columns(names: tuple[str, ...], *, required: bool) -> None:
        where = f"{prefix}.columns"
        if required and not names:
            raise InvalidArgument(f"{where}: at least one column is required", field=where)
        if len(set(names)) != len(names):
            raise InvalidArgument(f"{where}: a column is listed twice", field=where)
        for name in names:
            column(name, "columns")

    match step:
        case Select(names):
            columns(names, required=True)
            return pa.schema([schema.field(n) for n in names])
        case Drop(names):
            columns(names, required=True)
            if len(names) == len(schema.names):
                raise InvalidArgument(f"{prefix}.columns: cannot drop every column", field=f"{prefix}.columns")
            return pa.schema([f for f in schema if f.name not in names])
        case Rename(pairs):
            if not pairs:
                raise InvalidArgument(f"{prefix}.columns: nothing to rename", field=f"{prefix}.columns")
            mapping = dict(pairs)
            for old, new in pairs:
                column(old, "columns")
                if not new.strip():
                    where = f"{prefix}.columns[{old!r}]"
                    raise InvalidArgument(f"{where}: the new name is empty", field=where)
            renamed = [mapping.get(n, n) for n in schema.names]
            duplicates = sorted({n for n in renamed if renamed.count(n) > 1})
            if duplicates:
                where = f"{prefix}.columns"
                raise InvalidArgument(f"{where}: renaming makes duplicate columns {duplicates}", field=where)
            return pa.schema([f.with_name(mapping.get(f.name, f.name)) for f in schema])
        case Filter(name, operator, value, values):
            type_ = column(name).type
            if operator not in FILTER_OPERATORS:
                where = f"{prefix}.operator"
                raise InvalidArgument(f"{where}: an operator is required ({', '.join(FILTER_OPERATORS)})", field=where)
            if operator == "in":
                if not values:
                    raise InvalidArgument(f"{prefix}.values: IN needs values", field=f"{prefix}.values")
                for i, item in enumerate(values):
                    parse_value(item, type_, f"{prefix}.values[{i}]")
            elif operator not in ("is_null", "not_null"):
                parse_value(value, type_, f"{prefix}.value")
            return schema
        case FillNull(name, strategy, value):
            type_ = column(name).type
            if strategy in ("mean", "median") and not _numeric(type_):
                where = f"{prefix}.strategy"
                raise InvalidArgument(f"{where}: {strategy} needs a numeric column; {name!r} is {type_}", field=where)
            if strategy == "value":
                parse_value(value, type_, f"{prefix}.value")
            return schema
        case Cast(name, type_name):
            field = column(name)
            if type_name not in CAST_TYPES:
                where = f"{prefix}.type"
                raise InvalidArgument(f"{where}: {type_name!r} is not one of {', '.join(CAST_TYPES)}", field=where)
            return schema.set(schema.get_field_index(name), field.with_type(CAST_TYPES[type_name]))
        case Deduplicate(names):
            columns(names, required=False)
            return schema
        case Split(parts, _seed, stratify):
            _validate_split(prefix, parts, last=last)
            if stratify:
                column(stratify, "stratify_column")
            return schema
    raise InvalidArgument(f"recipe.steps[{index}]: unknown step", field=f"recipe.steps[{index}]")


def _validate_split(prefix: str, parts: tuple[SplitPart, ...], *, last: bool) -> None:
    if not last:
        raise InvalidArgument(f"{prefix}: split must be the last step", field=prefix)
    where = f"{prefix}.fractions"
    if not parts:
        raise InvalidArgument(f"{where}: at least one part is required", field=where)
    names = [p.name for p in parts]
    for i, part in enumerate(parts):
        if not ID_PATTERN.fullmatch(part.name):
            field = f"{where}[{i}].name"
            raise InvalidArgument(f"{field}: {shorten(part.name)} is not a valid split name (like train)", field=field)
        if not (0 < part.fraction <= 1) or not math.isfinite(part.fraction):
            field = f"{where}[{i}].fraction"
            raise InvalidArgument(f"{field}: {part.fraction} is not in (0, 1]", field=field)
    if len(set(names)) != len(names):
        raise InvalidArgument(f"{where}: split names must be unique ({', '.join(names)})", field=where)
    total = math.fsum(p.fraction for p in parts)
    if abs(total - 1.0) > 1e-6:
        raise InvalidArgument(f"{where}: fractions sum to {total:g}, not 1", field=where)
