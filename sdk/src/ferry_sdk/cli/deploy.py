"""``ferry deploy``: create, update, promote, list, show and delete deployments (ferry-serve)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ferry.serve.v1 import serve_pb2 as pb
from ferry_sdk._serve_messages import failed_error, state_name
from ferry_sdk.cli._common import (
    CliError,
    OutputOption,
    emit,
    handle_errors,
    note,
    registry_client,
    serve_client,
)

app = typer.Typer(
    help="Deployments: a registry model served through Triton (ferry-serve).",
    no_args_is_help=True,
    epilog="Example: ferry deploy create churn --model models/churn --alias production",
)

# How long promote waits for serve to route the promoted version as primary.
PROMOTE_WAIT_SECONDS = 120.0

_ROUTES = {pb.ROUTE_PRIMARY: "primary", pb.ROUTE_CANARY: "canary", pb.ROUTE_SHADOW: "shadow"}


def parse_target(value: str, option: str) -> str | int:
    """``production`` -> the alias; ``3`` -> version 3 (aliases start with a letter)."""
    text = value.strip()
    if text.isdigit():
        version = int(text)
        if version < 1:
            raise CliError(f"{option} {value!r}: a version number starts at 1", field=option)
        return version
    if not text or not text[0].isalpha():
        raise CliError(f"{option} {value!r} is neither an alias (production) nor a version number (3)", field=option)
    return text


def _percent(value: int | None, option: str) -> int | None:
    if value is not None and not 0 <= value <= 100:
        raise CliError(f"{option} {value}: a percent is 0-100", field=option)
    return value


def target_text(target: pb.TrafficTarget) -> str:
    """``alias production`` / ``version 3``."""
    if target.WhichOneof("target") == "version":
        return f"version {target.version}"
    return f"alias {target.alias}"


def split_text(split: pb.TrafficSplit) -> str:
    return f"{target_text(split.target)} at {split.percent}%"


def short_target(target: pb.TrafficTarget) -> str:
    """``production`` / ``v3`` (table cells)."""
    return f"v{target.version}" if target.WhichOneof("target") == "version" else target.alias


def short_split(deployment: pb.Deployment, route: str) -> str:
    """``v3 10%`` / ``staging 10%`` / ``-`` (table cells)."""
    if not deployment.HasField(route):
        return "-"
    split: pb.TrafficSplit = getattr(deployment, route)
    return f"{short_target(split.target)} {split.percent}%"


def served_text(deployment: pb.Deployment) -> str:
    """``2 (primary), 3 (canary, loading)``."""
    parts = []
    for served in deployment.served_versions:
        route = _ROUTES.get(served.route, "?")
        parts.append(f"{served.version} ({route}{'' if served.ready else ', loading'})")
    return ", ".join(parts) or "-"


def render_deployment(console: Console, deployment: pb.Deployment) -> None:
    """A deployment as a few lines: routes, what is loaded, state."""
    console.print(f"[bold]{deployment.name}[/bold]  {state_name(deployment.state)}")
    console.print(f"  model      {deployment.model}")
    console.print(f"  primary    {target_text(deployment.primary)}")
    if deployment.HasField("canary"):
        console.print(f"  canary     {split_text(deployment.canary)}")
    if deployment.HasField("shadow"):
        console.print(f"  shadow     {split_text(deployment.shadow)}")
    console.print(f"  serving    {served_text(deployment)}")
    if deployment.batching.enabled:
        batching = deployment.batching
        console.print(
            f"  batching   up to {batching.max_batch_size or 'default'} rows, "
            f"{batching.max_queue_delay_microseconds or 'default'} us queue delay"
        )
    console.print(f"  sampling   {deployment.sample_rate * 100:g}% of requests to monitor")
    if deployment.message:
        console.print(f"  message    {deployment.message}")


def _batching(enabled: bool | None, max_batch_size: int | None, max_queue_delay_us: int | None) -> Any:
    """``None`` (not given), ``False`` (off) or a mapping of the ``Batching`` fields."""
    if enabled is False:
        if max_batch_size is not None or max_queue_delay_us is not None:
            raise CliError("--no-batching with batch sizes: give one or the other", field="--no-batching")
        return False
    if enabled is None and max_batch_size is None and max_queue_delay_us is None:
        return None
    fields: dict[str, bool | int] = {"enabled": True}
    if max_batch_size is not None:
        fields["max_batch_size"] = max_batch_size
    if max_queue_delay_us is not None:
        fields["max_queue_delay_microseconds"] = max_queue_delay_us
    return fields


def _ready_or_failed(deployment: pb.Deployment) -> pb.Deployment:
    """The deployment when it is not FAILED; else the error (exit code 4, the reason printed)."""
    if deployment.state == pb.Deployment.STATE_FAILED:
        raise failed_error(deployment)
    return deployment


CanaryOption = Annotated[
    str | None,
    typer.Option("--canary", help="Canary target: an alias (staging) or a version number (3)."),
]
ShadowOption = Annotated[
    str | None,
    typer.Option("--shadow", help="Shadow target: an alias or a version number; gets a copy of requests."),
]
ShadowPercentOption = Annotated[
    int | None,
    typer.Option("--shadow-percent", help="Share of requests copied to the shadow, 0-100 (default 100 for a new one)."),
]
BatchingOption = Annotated[
    bool | None,
    typer.Option("--batching/--no-batching", help="Triton's dynamic batching on or off.", show_default=False),
]
MaxBatchOption = Annotated[
    int | None, typer.Option("--max-batch-size", help="Largest batch (turns batching on; default 32).")
]
QueueDelayOption = Annotated[
    int | None,
    typer.Option("--max-queue-delay-us", help="Longest wait to fill a batch, microseconds (default 500)."),
]
SampleRateOption = Annotated[
    float | None,
    typer.Option("--sample-rate", help="Fraction of requests whose inputs and outputs go to monitor (default 1)."),
]


@app.command(
    epilog=(
        "Example: ferry deploy create churn --model models/churn --alias production"
        "   (then: ferry deploy update churn --canary 4 --percent 10)"
    )
)
@handle_errors
def create(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(help="Deployment id: the name clients predict with (churn).")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Registry model (churn or models/churn); default the id.")
    ] = None,
    alias: Annotated[
        str | None,
        typer.Option("--alias", help="Alias the primary route follows (default production); moves when it moves."),
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="A fixed version for the primary route instead of an alias.")
    ] = None,
    canary: CanaryOption = None,
    percent: Annotated[int | None, typer.Option("--percent", help="Canary share of requests, 0-100.")] = None,
    shadow: ShadowOption = None,
    shadow_percent: ShadowPercentOption = None,
    batching: BatchingOption = None,
    max_batch_size: MaxBatchOption = None,
    max_queue_delay_us: QueueDelayOption = None,
    sample_rate: SampleRateOption = None,
    output: OutputOption = None,
) -> None:
    """Create a deployment and load its versions; returns once they serve (or failed: exit 4).

    The primary route follows an alias (--alias, default production: when the alias moves,
    serve loads the new version and switches with no failed request) or a fixed --version.
    A canary (--canary TARGET --percent P) answers P% of the requests that name no version;
    a shadow (--shadow TARGET [--shadow-percent P]) gets a copy of them, its answers
    compared and discarded.
    """
    if alias is not None and version is not None:
        raise CliError("give --alias or --version, not both", field="--version")
    if (canary is None) != (percent is None):
        raise CliError("a canary needs both --canary TARGET and --percent P", field="--percent")
    if shadow is None and shadow_percent is not None:
        raise CliError("--shadow-percent needs --shadow TARGET", field="--shadow")
    name = deployment.removeprefix("deployments/")
    arguments: dict[str, Any] = {"model": model or name}
    if version is not None:
        arguments["primary_version"] = version
    elif alias is not None:
        arguments["primary_alias"] = alias
    if canary is not None and percent is not None:
        arguments["canary"] = (parse_target(canary, "--canary"), _percent(percent, "--percent"))
    if shadow is not None:
        share = _percent(shadow_percent, "--shadow-percent")
        arguments["shadow"] = (parse_target(shadow, "--shadow"), 100 if share is None else share)
    chosen = _batching(batching, max_batch_size, max_queue_delay_us)
    if chosen is not None:
        arguments["batching"] = chosen
    if sample_rate is not None:
        arguments["sample_rate"] = sample_rate
    note(ctx, f"creating deployments/{name} (loading and warming its versions)...")
    with serve_client(ctx) as serve:
        created = _ready_or_failed(serve.create_deployment(name, **arguments))
    emit(ctx, created, lambda console: render_deployment(console, created))


@app.command(
    epilog=(
        "Example: ferry deploy update churn --canary 4 --percent 10"
        "   (--percent 50 alone moves the share; --no-canary removes it; --shadow 5 copies all requests to 5)"
    )
)
@handle_errors
def update(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(help="Deployment (churn or deployments/churn).")],
    primary: Annotated[
        str | None, typer.Option("--primary", help="New primary target: an alias to follow or a version number.")
    ] = None,
    canary: CanaryOption = None,
    percent: Annotated[
        int | None,
        typer.Option(
            "--percent",
            help="Canary share, 0-100. With --canary: the new canary's share (default: the current canary's). "
            "Alone: changes only the share of the existing canary.",
        ),
    ] = None,
    no_canary: Annotated[bool, typer.Option("--no-canary", help="Remove the canary.")] = False,
    shadow: ShadowOption = None,
    shadow_percent: ShadowPercentOption = None,
    no_shadow: Annotated[bool, typer.Option("--no-shadow", help="Remove the shadow.")] = False,
    batching: BatchingOption = None,
    max_batch_size: MaxBatchOption = None,
    max_queue_delay_us: QueueDelayOption = None,
    sample_rate: SampleRateOption = None,
    etag: Annotated[
        str, typer.Option("--etag", help="Refuse (ABORTED) unless the deployment's etag is still this.")
    ] = "",
    output: OutputOption = None,
) -> None:
    """Change the routes, batching or sampling of a deployment; nothing not named changes.

    New versions are loaded and warmed before traffic moves; a version that fails to load
    leaves traffic where it was and the deployment FAILED with the reason (exit 4).
    """
    _percent(percent, "--percent")
    _percent(shadow_percent, "--shadow-percent")
    if no_canary and (canary is not None or percent is not None):
        raise CliError("--no-canary with --canary/--percent: give one or the other", field="--no-canary")
    if no_shadow and (shadow is not None or shadow_percent is not None):
        raise CliError("--no-shadow with --shadow/--shadow-percent: give one or the other", field="--no-shadow")
    changes: dict[str, Any] = {}
    if primary is not None:
        changes["primary"] = parse_target(primary, "--primary")
    chosen = _batching(batching, max_batch_size, max_queue_delay_us)
    if chosen is not None:
        changes["batching"] = chosen
    if sample_rate is not None:
        changes["sample_rate"] = sample_rate
    name = deployment.removeprefix("deployments/")
    with serve_client(ctx) as serve:
        current: pb.Deployment | None = None
        if no_canary:
            changes["canary"] = None
        elif canary is not None:
            share = percent
            if share is None:
                current = serve.get_deployment(name)
                if not current.HasField("canary"):
                    raise CliError(f"deployments/{name} has no canary yet: give --percent P", field="--percent")
                share = current.canary.percent
            changes["canary"] = (parse_target(canary, "--canary"), share)
        elif percent is not None:
            changes["canary_percent"] = percent
        if no_shadow:
            changes["shadow"] = None
        elif shadow is not None:
            changes["shadow"] = (parse_target(shadow, "--shadow"), 100 if shadow_percent is None else shadow_percent)
        elif shadow_percent is not None:
            changes["shadow_percent"] = shadow_percent
        if not changes:
            raise CliError(
                "nothing to change: give --primary, --canary/--percent, --no-canary, --shadow/--shadow-percent, "
                "--no-shadow, --batching/--no-batching, --max-batch-size or --sample-rate"
            )
        updated = _ready_or_failed(serve.update_deployment(name, etag=etag, **changes))
    emit(ctx, updated, lambda console: render_deployment(console, updated))


def _canary_version(deployment: pb.Deployment, resolve: Any) -> int:
    """The version the canary answers with: its fixed version, else what its alias resolves to now."""
    target = deployment.canary.target
    if target.WhichOneof("target") == "version":
        return int(target.version)
    return int(resolve(f"{deployment.model}/aliases/{target.alias}").version)


def _primary_version(deployment: pb.Deployment) -> int | None:
    for served in deployment.served_versions:
        if served.route == pb.ROUTE_PRIMARY:
            return int(served.version)
    return None


@app.command(
    epilog=(
        "Example: ferry deploy promote churn   (alias production -> the canary's version, canary removed; "
        "--pin sets the deployment's primary to that version instead)"
    )
)
@handle_errors
def promote(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(help="Deployment with a canary (churn).")],
    pin: Annotated[
        bool,
        typer.Option(
            "--pin", help="Set the deployment's primary to the canary's fixed version; leave the registry alias alone."
        ),
    ] = False,
    reason: Annotated[str, typer.Option("--reason", help="Kept in the registry's alias audit log.")] = "",
    output: OutputOption = None,
) -> None:
    """Make the canary's version the primary, then remove the canary.

    What "the canary's version" is: the canary's fixed version, or the version its alias
    points at now. Then:

    - primary follows an alias (production) and no --pin: the registry moves that alias to
    the canary's version with compare-and-set (expected: the version the primary serves now,
    so a concurrent release is refused with ABORTED, nothing changed). Serve follows the
    alias, as every deployment following it does; then the canary is removed.

    - primary is a fixed version, or --pin: one UpdateDeployment sets the primary to the
    canary's version and removes the canary together.

    Traffic never goes back to the old version on the way: the canary's version serves the
    primary route before the canary is removed. Refused (FAILED_PRECONDITION, field canary)
    when the deployment has no canary.
    """
    name = deployment.removeprefix("deployments/")
    with serve_client(ctx) as serve:
        current = serve.get_deployment(name)
        if not current.HasField("canary"):
            raise CliError(
                f"deployments/{name} has no canary to promote "
                f"(add one: ferry deploy update {name} --canary V --percent P)",
                field="canary",
                code="FAILED_PRECONDITION",
            )
        follows = current.primary.WhichOneof("target") == "alias"
        with registry_client(ctx) as registry:
            version = _canary_version(current, registry.resolve_alias)
            if follows and not pin:
                alias = f"{current.model}/aliases/{current.primary.alias}"
                serving = _primary_version(current)
                registry.set_alias(
                    alias,
                    version,
                    expected_version=serving,
                    reason=reason or f"ferry deploy promote {name}: canary version {version}",
                )
                note(ctx, f"{alias} -> version {version} (was {serving}); removing the canary...")
        if follows and not pin:
            promoted = _after_alias_move(serve, name, version)
        else:
            promoted = serve.update_deployment(name, primary=version, canary=None, etag=current.etag)
        promoted = _ready_or_failed(promoted)
    emit(ctx, promoted, lambda console: render_deployment(console, promoted))


def _after_alias_move(serve: Any, name: str, version: int) -> pb.Deployment:
    """Remove the canary after the alias moved to ``version``; the deployment once its primary serves it.

    Serve resolves aliases when it applies an update, so this update already routes the
    primary to ``version``; the wait covers a serve that applies the alias event first.
    """
    deadline = time.monotonic() + PROMOTE_WAIT_SECONDS
    updated: pb.Deployment = serve.update_deployment(name, canary=None)
    while updated.state != pb.Deployment.STATE_FAILED and _primary_version(updated) != version:
        if time.monotonic() > deadline:
            raise CliError(
                f"deployments/{name}: the primary still serves version {_primary_version(updated)}, "
                f"not {version}, {PROMOTE_WAIT_SECONDS:.0f} s after the alias moved",
                field="primary",
                code="DEADLINE_EXCEEDED",
            )
        time.sleep(0.5)
        updated = serve.get_deployment(name)
    return updated


@app.command(name="list", epilog="Example: ferry deploy list --output json")
@handle_errors
def list_(
    ctx: typer.Context,
    page_size: Annotated[int, typer.Option("--page-size", help="Deployments per call (0: serve's default).")] = 0,
    output: OutputOption = None,
) -> None:
    """List deployments: routes, versions served, state."""
    with serve_client(ctx) as serve:
        deployments = list(serve.list_deployments(page_size=page_size))

    def render(console: Console) -> None:
        table = Table("deployment", "model", "primary", "canary", "shadow", "serving", "state", box=None)
        for item in deployments:
            table.add_row(
                item.name.removeprefix("deployments/"),
                item.model.removeprefix("models/"),
                short_target(item.primary),
                short_split(item, "canary"),
                short_split(item, "shadow"),
                served_text(item),
                state_name(item.state),
            )
        console.print(table)

    emit(ctx, {"deployments": deployments}, render)


@app.command(epilog="Example: ferry deploy show churn --output json")
@handle_errors
def show(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(help="Deployment (churn or deployments/churn).")],
    output: OutputOption = None,
) -> None:
    """Show a deployment: model, routes, versions loaded, batching, sampling, state."""
    with serve_client(ctx) as serve:
        found = serve.get_deployment(deployment)
    emit(ctx, found, lambda console: render_deployment(console, found))


@app.command(epilog="Example: ferry deploy delete churn")
@handle_errors
def delete(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(help="Deployment (churn or deployments/churn).")],
    output: OutputOption = None,
) -> None:
    """Delete a deployment: routing stops at once; its versions unload after in-flight calls drain."""
    name = deployment.removeprefix("deployments/")
    with serve_client(ctx) as serve:
        serve.delete_deployment(name)
    emit(ctx, {"deleted": f"deployments/{name}"}, lambda console: console.print(f"deleted deployments/{name}"))
