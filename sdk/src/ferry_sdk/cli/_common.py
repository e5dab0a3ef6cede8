"""What every ``ferry`` command shares: options, clients, output, errors, progress bars.

A command module uses it like this (every command takes ``ctx: typer.Context``: typer
vendors its own click, so the context is passed, never looked up):

    @app.command(epilog="Example: ferry datasets show churn --output json")
    @handle_errors
    def show(ctx: typer.Context, name: str, output: OutputOption = None) -> None:
        with ingest_client(ctx) as ingest:
            dataset = ingest.get_dataset(name)
        emit(ctx, dataset, lambda console: console.print(dataset.name))

Output (``--output`` / ``-o`` on the root command and on every command; the command's
wins, then the root's, then ``FERRY_OUTPUT``; default ``text``):

- ``text``: rich tables and lines on stdout, progress bars and notes on stderr;
- ``json``: one JSON document on stdout: proto3 JSON with the proto field names
  (snake_case), int64 as strings, enums with their full prefix (DESIGN.md "Wire
  conventions"), nothing else on stdout. No progress bars.

Where the services are (the same variables the services read, through
:func:`ferry_common.settings.load_settings`): ``FERRY_<SERVICE>_ADDRESS`` (default: the
local stack ``ferry up`` starts, ``127.0.0.1:50051``-``50055``), the bearer token
``FERRY_AUTH_TOKEN`` (``FERRY_TOKEN`` is accepted as a shorter spelling), TLS through
``FERRY_TLS_CA_FILE``, the default deadline ``FERRY_CALL_TIMEOUT_SECONDS`` (or the root
``--timeout``). ``FERRY_STATE_DIR`` is where ``ferry up`` keeps its pids and logs.

Exit codes (:func:`handle_errors`):

- ``0``: done;
- ``1``: the call failed: the server's status code, message and offending field are
  printed (stderr in text mode; ``{"error": {"code", "message", "field"}}`` on stdout in
  json mode), or a local input problem (a bad file, a malformed option value);
- ``2``: the command line is wrong (click's usage error);
- ``3``: a service cannot be reached (UNAVAILABLE): the message names the service and
  its address and suggests ``ferry up``;
- ``4``: what the command waited for ended badly: a training job ``FAILED`` or ``CANCELLED``, a
  deployment ``FAILED``;
- ``130``: Ctrl-C while following a job (the job keeps running).
"""

from __future__ import annotations

import enum
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TypeVar

import grpc
import typer
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from ferry_common.settings import Settings, SettingsError, load_settings
from ferry_sdk import errors, stack
from ferry_sdk.ingest import IngestClient
from ferry_sdk.registry import RegistryClient
from ferry_sdk.serve import ServeClient
from ferry_sdk.train import TrainClient

if TYPE_CHECKING:
    from ferry_sdk.monitor import MonitorClient

__all__ = [
    "EXIT_ERROR",
    "EXIT_FAILED",
    "EXIT_UNAVAILABLE",
    "CliError",
    "CliState",
    "OutputFormat",
    "OutputOption",
    "emit",
    "err_console",
    "errors_reported",
    "handle_errors",
    "ingest_client",
    "is_json",
    "labels_text",
    "monitor_client",
    "note",
    "out_console",
    "registry_client",
    "root_callback",
    "serve_client",
    "timestamp",
    "to_json",
    "train_client",
    "transfer_progress",
]

P = ParamSpec("P")
R = TypeVar("R")

EXIT_ERROR = 1
EXIT_UNAVAILABLE = 3
EXIT_FAILED = 4


class OutputFormat(enum.StrEnum):
    """How a command prints its result."""

    text = "text"
    json = "json"


OutputOption = Annotated[
    OutputFormat | None,
    typer.Option(
        "--output",
        "-o",
        help="text (tables) or json (proto3 JSON on stdout); default: the root --output, else FERRY_OUTPUT, else text.",
        show_default=False,
    ),
]
"""Every command's ``--output`` parameter: declare ``output: OutputOption = None``; :func:`emit` reads it."""


class CliError(Exception):
    """A problem found on this side (a bad file or option value): exit 1 with ``code`` and ``field``."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "INVALID_ARGUMENT") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


@dataclass
class CliState:
    """The root command's options, kept as ``ctx.obj`` of the root context."""

    output: OutputFormat = OutputFormat.text
    timeout: float | None = None
    environ: Mapping[str, str] | None = None
    # (service, address) of every client opened, for naming the unreachable one.
    opened: list[tuple[str, str]] | None = None

    def env(self) -> dict[str, str]:
        environ = dict(os.environ if self.environ is None else self.environ)
        if environ.get("FERRY_TOKEN") and not environ.get("FERRY_AUTH_TOKEN"):
            environ["FERRY_AUTH_TOKEN"] = environ["FERRY_TOKEN"]
        return environ


def root_callback(
    ctx: typer.Context,
    output: Annotated[
        OutputFormat,
        typer.Option("--output", "-o", envvar="FERRY_OUTPUT", help="text (tables) or json (proto3 JSON on stdout)."),
    ] = OutputFormat.text,
    timeout: Annotated[
        float | None,
        typer.Option(help="Deadline of each unary call, seconds (default FERRY_CALL_TIMEOUT_SECONDS, 30)."),
    ] = None,
) -> None:
    """Ferry: from a CSV to a monitored production endpoint.

    Services are found through FERRY_<SERVICE>_ADDRESS (default: the local stack `ferry up`
    starts); FERRY_AUTH_TOKEN is sent as a bearer token when set. Exit codes: 0 done, 1 the
    call failed (server's message and field printed), 2 bad usage, 3 a service is
    unreachable, 4 a job or deployment ended FAILED.
    """
    ctx.obj = CliState(output=output, timeout=timeout, opened=[])


def _state(ctx: typer.Context | None) -> CliState:
    root = ctx.find_root() if ctx is not None else None
    obj = root.obj if root is not None else None
    if isinstance(obj, CliState):
        return obj
    state = CliState(opened=[])
    if root is not None:
        root.obj = state
    return state


def _output(ctx: typer.Context | None) -> OutputFormat:
    """The command's ``--output`` if given, else the root's (which already folds in ``FERRY_OUTPUT``)."""
    current: Any = ctx
    while current is not None and current.parent is not None:
        value = current.params.get("output")
        if value is not None:
            return OutputFormat(value)
        current = current.parent
    return _state(ctx).output


def is_json(ctx: typer.Context | None) -> bool:
    """Whether this command prints JSON."""
    return _output(ctx) is OutputFormat.json


out_console = Console(highlight=False, soft_wrap=True)
"""Results in text mode (stdout)."""
err_console = Console(stderr=True, highlight=False)
"""Progress bars, notes and errors in text mode (stderr)."""


# -- clients -----------------------------------------------------------------------


def _settings(ctx: typer.Context, service: str) -> Settings:
    state = _state(ctx)
    settings = load_settings(service, state.env())
    if state.timeout is not None:
        settings = replace(settings, call_timeout_seconds=state.timeout)
    return settings


_C = TypeVar("_C", RegistryClient, IngestClient, TrainClient, ServeClient)


def _open(ctx: typer.Context, service: str, cls: type[_C]) -> _C:
    settings = _settings(ctx, service)
    address = settings.addresses[service]
    client = cls(address, settings=settings)
    state = _state(ctx)
    if state.opened is not None:
        state.opened.append((service, address))
    return client


def registry_client(ctx: typer.Context) -> RegistryClient:
    """A :class:`ferry_sdk.RegistryClient` for this invocation (use as a context manager)."""
    return _open(ctx, "registry", RegistryClient)


def ingest_client(ctx: typer.Context) -> IngestClient:
    """A :class:`ferry_sdk.IngestClient` for this invocation (use as a context manager)."""
    return _open(ctx, "ingest", IngestClient)


def train_client(ctx: typer.Context) -> TrainClient:
    """A :class:`ferry_sdk.TrainClient` for this invocation (use as a context manager)."""
    return _open(ctx, "train", TrainClient)


def serve_client(ctx: typer.Context) -> ServeClient:
    """A :class:`ferry_sdk.ServeClient` for this invocation (use as a context manager)."""
    return _open(ctx, "serve", ServeClient)


def monitor_client(ctx: typer.Context) -> MonitorClient:
    """A ``ferry_sdk.MonitorClient`` for this invocation (use as a context manager)."""
    from ferry_sdk.monitor import MonitorClient

    settings = _settings(ctx, "monitor")
    address = settings.addresses["monitor"]
    client = MonitorClient(address, settings=settings)
    state = _state(ctx)
    if state.opened is not None:
        state.opened.append(("monitor", address))
    return client


# -- output ------------------------------------------------------------------------


def to_json(data: Any) -> Any:
    """``data`` as JSON-ready values: messages as proto3 JSON with proto field names."""
    if isinstance(data, Message):
        return MessageToDict(data, preserving_proto_field_name=True)
    if isinstance(data, Mapping):
        return {str(key): to_json(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [to_json(item) for item in data]
    if isinstance(data, enum.Enum):
        return data.value
    return data


def timestamp(message: Any, field: str) -> str:
    """A message's Timestamp ``field`` as ``YYYY-MM-DD HH:MM:SS`` (UTC), or "" when unset."""
    return getattr(message, field).ToDatetime().strftime("%Y-%m-%d %H:%M:%S") if message.HasField(field) else ""


def labels_text(labels: Mapping[str, str]) -> str:
    """``k=v, k2=v2`` in key order, for tables."""
    return ", ".join(f"{key}={value}" for key, value in sorted(labels.items()))


def emit(ctx: typer.Context, data: Any, render: Callable[[Console], None]) -> None:
    """Print a command's result: ``data`` as JSON on stdout in json mode, else ``render(out_console)``.

    ``data``: a message, a list of messages, or plain dicts/lists/strings/numbers (messages
    nested inside are converted too).
    """
    if is_json(ctx):
        sys.stdout.write(json.dumps(to_json(data), indent=2, sort_keys=False) + "\n")
        sys.stdout.flush()
    else:
        render(out_console)


def note(ctx: typer.Context, message: str) -> None:
    """A line for people on stderr (text mode only): 'uploading...', hints."""
    if not is_json(ctx):
        err_console.print(message)


# -- errors ------------------------------------------------------------------------


def _fail(ctx: typer.Context | None, code: str, message: str, field: str | None, exit_code: int) -> NoReturn:
    if is_json(ctx):
        body = {"error": {"code": code, "message": message, "field": field}}
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        sys.stdout.flush()
    else:
        where = f"\n  field: {field}" if field else ""
        err_console.print(f"[red]error[/red] {code}: {message}{where}", markup=True, highlight=False)
    raise typer.Exit(exit_code)


def _unreachable(ctx: typer.Context | None, error: errors.FerryError) -> str:
    """Name the service(s) that do not answer health checks, else keep the server's message."""
    opened = _state(ctx).opened or []
    down = [(service, address) for service, address in dict.fromkeys(opened) if stack.health(address) == "DOWN"]
    if not down:
        where = ", ".join(f"ferry-{service} at {address}" for service, address in dict.fromkeys(opened))
        return f"{error.message} (from {where})" if where else error.message
    names = ", ".join(f"ferry-{service} at {address}" for service, address in down)
    return (
        f"cannot reach {names}: {error.message}. Is the stack running? Start it with `ferry up` "
        "(or point FERRY_<SERVICE>_ADDRESS at it)."
    )


def _report(ctx: typer.Context | None, error: BaseException) -> NoReturn:
    if isinstance(error, errors.TrainingJobFailed | errors.DeploymentFailed):
        _fail(ctx, "FAILED", error.message, error.field, EXIT_FAILED)
    if isinstance(error, errors.FerryError):
        if error.code == grpc.StatusCode.UNAVAILABLE:
            _fail(ctx, "UNAVAILABLE", _unreachable(ctx, error), error.field, EXIT_UNAVAILABLE)
        _fail(ctx, error.code.name, error.message, error.field, EXIT_ERROR)
    if isinstance(error, CliError):
        _fail(ctx, error.code, error.message, error.field, EXIT_ERROR)
    if isinstance(error, SettingsError):
        _fail(ctx, "INVALID_ARGUMENT", f"settings: {error}", None, EXIT_ERROR)
    if isinstance(error, FileNotFoundError | IsADirectoryError | PermissionError):
        _fail(ctx, "INVALID_ARGUMENT", str(error), None, EXIT_ERROR)
    if isinstance(error, ValueError):  # the SDK's client-side checks (a bad format name...)
        _fail(ctx, "INVALID_ARGUMENT", str(error), None, EXIT_ERROR)
    raise error


@contextmanager
def errors_reported(ctx: typer.Context | None = None) -> Iterator[None]:
    """Turn Ferry errors raised inside into the documented exit codes and messages."""
    try:
        yield
    except (errors.FerryError, CliError, SettingsError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        _report(ctx, e)
    except ValueError as e:
        _report(ctx, e)


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Decorate a command (under ``@app.command``) so errors exit with the documented codes."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        # typer passes its vendored click's Context, not a typer.Context instance: recognise it by shape.
        values = (*args, *kwargs.values())
        ctx: Any = next((v for v in values if hasattr(v, "find_root") and hasattr(v, "params")), None)
        with errors_reported(ctx):
            return command(*args, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover  (errors_reported re-raises or exits)

    return wrapper


# -- progress ----------------------------------------------------------------------


@contextmanager
def transfer_progress(
    ctx: typer.Context, description: str, total: int | None = None
) -> Iterator[Callable[[int, int | None], None]]:
    """A byte-transfer progress bar on stderr (text mode only).

    Yields a callback of the SDK's :class:`ferry_sdk.Progress` shape,
    ``progress(bytes_done, total_or_None)``; it is safe to call from gRPC's threads.
    """
    if is_json(ctx):
        yield lambda done, total: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task(description, total=total)

        def update(done: int, size: int | None) -> None:
            bar.update(task, completed=done, total=size if size is not None else total)

        yield update
