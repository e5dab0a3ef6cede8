"""``ferry predict``: send rows from a CSV or JSON file to a deployment, print or write the answers."""

from __future__ import annotations

import json
import pathlib
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from ferry_sdk.cli._common import CliError, OutputOption, emit, handle_errors, note, serve_client

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["predict", "read_rows", "register", "split_target"]

_FORMATS = ("csv", "json", "jsonl")


def split_target(target: str) -> tuple[str, str]:
    """``churn`` -> (``churn``, ``""``); ``churn@production`` -> alias; ``churn@3`` -> version 3."""
    deployment, sep, version = target.partition("@")
    deployment = deployment.removeprefix("deployments/")
    if not deployment or (sep and not version):
        raise CliError(f"{target!r} is not DEPLOYMENT, DEPLOYMENT@ALIAS or DEPLOYMENT@VERSION", field="DEPLOYMENT")
    return deployment, version


def _format(path: pathlib.Path, given: str | None) -> str:
    if given:
        chosen = given.lower()
        if chosen not in _FORMATS:
            raise CliError(f"--format {given!r} is not one of {', '.join(_FORMATS)}", field="--format")
        return chosen
    suffix = path.suffix.lower().lstrip(".")
    if suffix == "ndjson":
        return "jsonl"
    if suffix not in _FORMATS:
        raise CliError(
            f"{path}: cannot tell the format from the extension {path.suffix!r}; give --format csv, json or jsonl",
            field="--input",
        )
    return suffix


def read_rows(path: pathlib.Path, format: str | None = None) -> pd.DataFrame:
    """The rows of a CSV file (header row), a JSON file (a list of objects, or an object of columns,
    or ``{"rows": [...]}``) or JSON Lines (one object per line)."""
    import pandas as pd

    chosen = _format(path, format)
    try:
        if chosen == "csv":
            return pd.read_csv(path)
        if chosen == "jsonl":
            return pd.read_json(path, lines=True, orient="records", dtype=False)
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise CliError(f"{path}: not valid {chosen.upper()}: {error}", field="--input") from None
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        data = data["rows"]
    if isinstance(data, list) and all(isinstance(row, dict) for row in data):
        return pd.DataFrame.from_records(data)
    if isinstance(data, dict) and all(isinstance(column, list) for column in data.values()):
        lengths = {len(column) for column in data.values()}
        if len(lengths) > 1:
            raise CliError(f"{path}: the columns have different lengths ({sorted(lengths)})", field="--input")
        return pd.DataFrame(data)
    raise CliError(
        f'{path}: JSON input is a list of row objects, an object of equal-length columns, or {{"rows": [...]}}',
        field="--input",
    )


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON objects (NaN as null, numpy values as plain numbers)."""
    records: list[dict[str, Any]] = json.loads(frame.to_json(orient="records", double_precision=15))
    return records


def _write(frame: pd.DataFrame, path: pathlib.Path, details: dict[str, Any]) -> None:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix in (".jsonl", ".ndjson"):
        frame.to_json(path, orient="records", lines=True, double_precision=15)
    elif suffix == ".json":
        path.write_text(json.dumps({**details, "predictions": _records(frame)}, indent=2) + "\n", encoding="utf-8")
    else:
        raise CliError(f"--out {path}: write .csv, .json or .jsonl", field="--out")


def predict(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            metavar="DEPLOYMENT[@ALIAS|@VERSION]",
            help="Deployment id; @production asks a version by alias, @3 by number; bare: the traffic split.",
            show_default=False,
        ),
    ],
    input: Annotated[
        pathlib.Path,
        typer.Option(
            "--input",
            "-i",
            exists=True,
            dir_okay=False,
            readable=True,
            help="Rows: .csv (header row), .json (list of objects or object of columns) or .jsonl.",
        ),
    ],
    out: Annotated[
        pathlib.Path | None,
        typer.Option("--out", help="Write the rows with their predictions to .csv, .json or .jsonl instead."),
    ] = None,
    format: Annotated[
        str | None, typer.Option("--format", help="Input format csv, json or jsonl (default: the extension).")
    ] = None,
    request_id: Annotated[
        str, typer.Option("--request-id", help="Request id (monitor's feedback matches on it); default: generated.")
    ] = "",
    output: OutputOption = None,
) -> None:
    """Send every row of a file to a deployment in one request; print or write the rows with the answers.

    Each input of the model's signature is read from the column of that name (numbers
    converted to the input's type, empty cells sent as NaN or ""); other columns are not sent
    and come back as they were. The answer adds one column per output: label, prediction,
    probability_<class>. The version that answered and the request id are printed with them
    (stderr in text mode; "model_version", "request_id" in JSON).

    --output json prints {"deployment", "model_version", "request_id", "predictions": [rows]}.
    """
    deployment, version = split_target(target)
    frame = read_rows(input, format)
    if frame.empty:
        raise CliError(f"{input}: no rows to send", field="--input")
    chosen_id = request_id or uuid.uuid4().hex
    with serve_client(ctx) as serve:
        result = serve.predict(deployment, frame, version=version, request_id=chosen_id)
    details = {
        "deployment": f"deployments/{deployment}",
        "model_version": int(result.attrs["model_version"]),
        "request_id": str(result.attrs["request_id"]),
    }
    summary = (
        f"{len(result)} row(s) answered by deployments/{deployment} version {details['model_version']} "
        f"(request {details['request_id']})"
    )
    if out is not None:
        _write(result, out, details)
        emit(
            ctx, {**details, "rows": len(result), "out": str(out)}, lambda console: console.print(f"{summary} -> {out}")
        )
        return

    def render(console: Console) -> None:
        # pandas' layout: every column name whole, however wide the table (no wrapping).
        table = result.to_string(index=False, na_rep="", float_format=lambda value: f"{value:.6g}")
        console.print(table, markup=False)
        note(ctx, summary)

    emit(ctx, {**details, "predictions": _records(result)}, render)


def register(app: typer.Typer) -> None:
    """Add ``ferry predict`` to the root app."""
    app.command(
        name="predict",
        epilog=(
            "Example: ferry predict churn@production --input rows.csv"
            "   (--out scored.csv writes the rows with their predictions; --output json prints them as JSON)"
        ),
    )(handle_errors(predict))
