"""``ferry datasets``: upload, import, list, show, profile, transform and download datasets."""

from __future__ import annotations

import pathlib
import re
from typing import Annotated, Any

import typer
import yaml
from google.protobuf import json_format
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ferry.ingest.v1 import ingest_pb2 as pb
from ferry_sdk.cli._common import (
    CliError,
    OutputOption,
    emit,
    err_console,
    handle_errors,
    ingest_client,
    is_json,
    labels_text,
    note,
    timestamp,
    transfer_progress,
)

app = typer.Typer(help="Datasets and their versions (ferry-ingest).", no_args_is_help=True)

_ID_CHARS = re.compile(r"[^a-z0-9-]+")


def _default_id(path: pathlib.Path) -> str:
    """A dataset id from a file name: ``Churn data.csv`` -> ``churn-data``."""
    stem = _ID_CHARS.sub("-", path.name.split(".")[0].lower()).strip("-")
    if not stem or not stem[0].isalpha():
        stem = f"d-{stem}".strip("-")
    return stem[:63].rstrip("-")


def parse_labels(labels: list[str] | None, option: str = "--label") -> dict[str, str]:
    """``["team=risk", "env=dev"]`` -> ``{"team": "risk", "env": "dev"}``."""
    result: dict[str, str] = {}
    for item in labels or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{option} {item!r} is not KEY=VALUE", field=option)
        result[key] = value
    return result


def parse_split(split: str) -> list[dict[str, Any]]:
    """``train=0.8,validation=0.2`` -> split fractions (the ``split`` recipe step's ``fractions``)."""
    fractions = []
    for part in split.split(","):
        name, sep, value = part.strip().partition("=")
        try:
            fraction = float(value)
        except ValueError:
            fraction = -1.0
        if not sep or not name or fraction <= 0:
            raise CliError(f"--split {split!r}: {part!r} is not NAME=FRACTION (such as train=0.8)", field="--split")
        fractions.append({"name": name, "fraction": fraction})
    return fractions


def _split_recipe(split: str, stratify: str | None, seed: int) -> dict[str, Any]:
    step: dict[str, Any] = {"fractions": parse_split(split), "seed": str(seed)}
    if stratify:
        step["stratify_column"] = stratify
    return {"steps": [{"split": step}]}


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def render_version(console: Console, version: pb.DatasetVersion) -> None:
    """A dataset version as a few lines and a schema table."""
    console.print(f"[bold]{version.name}[/bold]")
    console.print(f"  rows       {version.row_count}")
    console.print(f"  size       {_size(version.size_bytes)} (Parquet)")
    console.print(f"  sha256     {version.sha256}")
    if version.splits:
        console.print("  splits     " + ", ".join(f"{s.name} ({s.row_count} rows)" for s in version.splits))
    if version.lineage.parent:
        console.print(f"  parent     {version.lineage.parent}")
    if version.lineage.source_uri:
        console.print(f"  source     {version.lineage.source_uri}")
    if version.description:
        console.print(f"  description {version.description}")
    if version.labels:
        console.print("  labels     " + labels_text(version.labels))
    table = Table("column", "type", "nullable", box=None, pad_edge=False)
    for field in version.schema.fields:
        table.add_row(field.name, field.type, "yes" if field.nullable else "no")
    console.print(table)


@app.command(
    epilog="Example: ferry datasets upload churn.csv --name churn --split train=0.8,validation=0.2 --stratify churned"
)
@handle_errors
def upload(
    ctx: typer.Context,
    file: Annotated[
        pathlib.Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV, Parquet or JSON Lines file."),
    ],
    name: Annotated[str | None, typer.Option(help="Dataset id (default: from the file name).")] = None,
    format: Annotated[
        str | None, typer.Option(help="csv, parquet or jsonl (default: from the extension or the first bytes).")
    ] = None,
    description: Annotated[str, typer.Option(help="Free text kept on the version.")] = "",
    label: Annotated[list[str] | None, typer.Option(help="KEY=VALUE label (repeatable).")] = None,
    delimiter: Annotated[str | None, typer.Option(help="CSV delimiter (default ',').")] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="Also split the rows, e.g. train=0.8,validation=0.2: the file goes to <name>-raw and the split "
            "version (what training reads) to <name>."
        ),
    ] = None,
    stratify: Annotated[
        str | None, typer.Option(help="With --split: keep this column's class shares per split.")
    ] = None,
    seed: Annotated[int, typer.Option(help="With --split: the seed of the random assignment.")] = 0,
    raw_name: Annotated[
        str | None, typer.Option(help="With --split: dataset id of the unsplit upload (default <name>-raw).")
    ] = None,
    request_id: Annotated[str, typer.Option(help="Idempotency key.")] = "",
    output: OutputOption = None,
) -> None:
    """Upload a file as a new dataset version (the same bytes again return the existing version).

    Prints the version: rows, size, schema (and splits with --split).
    """
    dataset_id = name or _default_id(file)
    labels = parse_labels(label)
    recipe = _split_recipe(split, stratify, seed) if split else None
    if stratify and not split:
        raise CliError("--stratify needs --split", field="--stratify")
    upload_id = (raw_name or f"{dataset_id}-raw") if recipe else dataset_id
    with ingest_client(ctx) as ingest:
        with transfer_progress(ctx, f"uploading {file.name}", file.stat().st_size) as progress:
            version = ingest.upload_dataset(
                upload_id,
                file,
                format=format,
                description=description,
                labels=labels,
                request_id=request_id,
                csv_delimiter=delimiter,
                progress=progress,
            )
        if recipe is not None:
            note(ctx, f"uploaded {version.name} ({version.row_count} rows); splitting into {dataset_id}...")
            version = ingest.transform_dataset(
                version.name,
                dataset_id,
                recipe,
                description=description,
                labels=labels,
                request_id=f"{request_id}-split" if request_id else "",
            )
    emit(ctx, version, lambda console: render_version(console, version))


@app.command(
    "import",
    epilog='Example: ferry datasets import --sql sqlite:///shop.db --query "SELECT * FROM orders" --name orders',
)
@handle_errors
def import_(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Dataset id of the new version.")],
    sql: Annotated[str | None, typer.Option(help="SQLAlchemy URL of the database (the server must allow it).")] = None,
    connection: Annotated[
        str | None, typer.Option(help="A connection name configured on the server, instead of --sql.")
    ] = None,
    query: Annotated[str | None, typer.Option(help="The SQL query (with --sql or --connection).")] = None,
    uri: Annotated[
        str | None, typer.Option(help="An object to import instead: s3://bucket/key or file:///path.")
    ] = None,
    format: Annotated[str | None, typer.Option(help="With --uri: csv, parquet or jsonl.")] = None,
    description: Annotated[str, typer.Option(help="Free text kept on the version.")] = "",
    label: Annotated[list[str] | None, typer.Option(help="KEY=VALUE label (repeatable).")] = None,
    request_id: Annotated[str, typer.Option(help="Idempotency key.")] = "",
    output: OutputOption = None,
) -> None:
    """Import a dataset version from a SQL query or an object, server-side (rows streamed as they are read)."""
    if uri is None and query is None:
        raise CliError("give --query (with --sql or --connection) or --uri", field="--query")
    if query is not None and sql is None and connection is None:
        raise CliError("--query needs --sql URL or --connection NAME", field="--sql")
    labels = parse_labels(label)
    with ingest_client(ctx) as ingest:
        if is_json(ctx):
            version = ingest.import_dataset(
                name,
                uri=uri,
                format=format,
                query=query,
                connection=connection,
                url=sql,
                description=description,
                labels=labels,
                request_id=request_id,
            )
        else:
            columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
            with Progress(*columns, console=err_console) as bar:
                task = bar.add_task(f"importing into {name}", total=None)

                def progress(message: pb.ImportProgress) -> None:
                    bar.update(task, description=f"importing into {name}: {message.rows} rows, {_size(message.bytes)}")

                version = ingest.import_dataset(
                    name,
                    uri=uri,
                    format=format,
                    query=query,
                    connection=connection,
                    url=sql,
                    description=description,
                    labels=labels,
                    request_id=request_id,
                    progress=progress,
                )
    emit(ctx, version, lambda console: render_version(console, version))


@app.command("list", epilog="Example: ferry datasets list --filter labels.team=risk --output json")
@handle_errors
def list_(
    ctx: typer.Context,
    filter: Annotated[str, typer.Option(help="labels.KEY=VALUE AND ...")] = "",
    output: OutputOption = None,
) -> None:
    """List datasets (id, latest version, labels)."""
    with ingest_client(ctx) as ingest:
        datasets = list(ingest.list_datasets(filter=filter))

    def render(console: Console) -> None:
        table = Table("dataset", "latest", "labels", "updated")
        for dataset in datasets:
            table.add_row(
                dataset.name,
                str(dataset.latest_version),
                labels_text(dataset.labels),
                timestamp(dataset, "update_time"),
            )
        console.print(table)

    emit(ctx, datasets, render)


@app.command(epilog="Example: ferry datasets show churn      (or: ferry datasets show datasets/churn/versions/1)")
@handle_errors
def show(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="A dataset (churn, datasets/churn) or a version (datasets/churn/versions/1).")
    ],
    output: OutputOption = None,
) -> None:
    """Show a dataset and its versions, or one version (schema, splits, lineage)."""
    with ingest_client(ctx) as ingest:
        if "/versions/" in name:
            version = ingest.get_dataset_version(name)
            emit(ctx, version, lambda console: render_version(console, version))
            return
        dataset = ingest.get_dataset(name)
        versions = list(ingest.list_dataset_versions(dataset.name))

    def render(console: Console) -> None:
        console.print(f"[bold]{dataset.name}[/bold]  latest version {dataset.latest_version}")
        if dataset.description:
            console.print(f"  {dataset.description}")
        table = Table("version", "rows", "size", "splits", "parent", "created")
        for v in versions:
            table.add_row(
                str(v.version),
                str(v.row_count),
                _size(v.size_bytes),
                ", ".join(s.name for s in v.splits),
                v.lineage.parent,
                timestamp(v, "create_time"),
            )
        console.print(table)

    emit(ctx, {"dataset": dataset, "versions": versions}, render)


def _render_profile(console: Console, profile: pb.Profile) -> None:
    title = profile.name + (f" (split {profile.split})" if profile.split else "")
    console.print(f"[bold]{title}[/bold]  {profile.row_count} rows")
    table = Table("column", "type", "nulls", "min", "mean", "max", "distinct / top values")
    for column in profile.columns:
        if column.HasField("numeric"):
            numeric = column.numeric
            table.add_row(
                column.name,
                column.type,
                str(column.null_count),
                f"{numeric.min:.4g}",
                f"{numeric.mean:.4g}",
                f"{numeric.max:.4g}",
                "",
            )
        else:
            categorical = column.categorical
            top = ", ".join(f"{v.value} ({v.count})" for v in categorical.top_values[:3])
            table.add_row(
                column.name, column.type, str(column.null_count), "", "", "", f"{categorical.distinct_count}: {top}"
            )
    console.print(table)


@app.command(epilog="Example: ferry datasets profile datasets/churn/versions/1 --split train")
@handle_errors
def profile(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A version: datasets/churn/versions/1 (or .../versions/latest).")],
    split: Annotated[str, typer.Option(help="Only this split.")] = "",
    output: OutputOption = None,
) -> None:
    """Column statistics of a version or one split: nulls, min/mean/max, distinct and top values."""
    with ingest_client(ctx) as ingest:
        result = ingest.get_profile(name, split=split)
    emit(ctx, result, lambda console: _render_profile(console, result))


def load_recipe(path: pathlib.Path) -> pb.Recipe:
    """A recipe file (YAML or JSON, proto3 JSON shape: ``steps: [{split: {...}}]``; a bare list is the steps)."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise CliError(f"--recipe {str(path)!r} is not YAML: {error}", field="--recipe") from None
    if isinstance(loaded, list):
        loaded = {"steps": loaded}
    if not isinstance(loaded, dict) or "steps" not in loaded:
        raise CliError(
            f"--recipe {str(path)!r}: expected a mapping with 'steps' (or a list of steps)", field="--recipe"
        )
    try:
        return json_format.ParseDict(loaded, pb.Recipe())
    except json_format.ParseError as error:
        raise CliError(f"--recipe {str(path)!r}: {error}", field="--recipe") from None


@app.command(
    epilog="Example: ferry datasets transform datasets/churn-raw/versions/1 --recipe clean.yaml --name churn-clean"
)
@handle_errors
def transform(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="The parent version: datasets/churn/versions/1.")],
    recipe: Annotated[
        pathlib.Path,
        typer.Option(exists=True, dir_okay=False, readable=True, help="Recipe file (YAML or JSON): steps: [...]"),
    ],
    name: Annotated[str, typer.Option(help="Dataset id of the new version.")],
    description: Annotated[str, typer.Option(help="Free text kept on the version.")] = "",
    label: Annotated[list[str] | None, typer.Option(help="KEY=VALUE label (repeatable).")] = None,
    request_id: Annotated[str, typer.Option(help="Idempotency key.")] = "",
    output: OutputOption = None,
) -> None:
    """Apply a recipe (select, drop, rename, filter, fill_null, cast, deduplicate, split) to a version.

    A recipe file looks like:

        steps:
          - drop: {columns: [customer_id]}
          - filter: {column: country, operator: FILTER_OPERATOR_EQ, value: NL}
          - split: {fractions: [{name: train, fraction: 0.8}, {name: validation, fraction: 0.2}], seed: 7}
    """
    steps = load_recipe(recipe)
    with ingest_client(ctx) as ingest:
        version = ingest.transform_dataset(
            source, name, steps, description=description, labels=parse_labels(label), request_id=request_id
        )
    emit(ctx, version, lambda console: render_version(console, version))


@app.command(epilog="Example: ferry datasets download datasets/churn/versions/1 churn.parquet --split train")
@handle_errors
def download(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A version: datasets/churn/versions/1.")],
    path: Annotated[pathlib.Path, typer.Argument(dir_okay=False, help="Where to write the rows.")],
    format: Annotated[str, typer.Option(help="parquet or csv.")] = "parquet",
    split: Annotated[str, typer.Option(help="Only this split.")] = "",
    column: Annotated[list[str] | None, typer.Option(help="Only this column (repeatable).")] = None,
    output: OutputOption = None,
) -> None:
    """Download a version's rows (or one split's) as Parquet or CSV."""
    with ingest_client(ctx) as ingest:
        version = ingest.get_dataset_version(name)
        # The stored Parquet's size is the total only when that file is what comes back.
        whole = format.lower() == "parquet" and not split and not column
        with transfer_progress(ctx, f"downloading {version.name}", version.size_bytes if whole else None) as progress:
            written = ingest.read_dataset(
                version.name, path, columns=column or (), split=split, format=format, progress=progress
            )
    size = written.stat().st_size
    emit(
        ctx,
        {"dataset_version": version.name, "path": str(written), "size_bytes": str(size)},
        lambda console: console.print(f"wrote {written} ({_size(size)})"),
    )
