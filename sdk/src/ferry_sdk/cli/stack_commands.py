"""``ferry up`` / ``ferry down`` / ``ferry status``: the local stack, one process per service."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from ferry_sdk import stack
from ferry_sdk.cli._common import OutputOption, emit, err_console, is_json


def up(
    ctx: typer.Context,
    services: list[str] = typer.Argument(None, help="Services to start (default: all five)."),
    output: OutputOption = None,
) -> None:
    """Start the local stack (each service its own process) and wait until healthy.

    Logs go to $FERRY_STATE_DIR/logs/<service>.log (default ./.ferry); addresses come from
    FERRY_<SERVICE>_ADDRESS (default 127.0.0.1:50051-50055).
    """
    chosen = services or list(stack.SERVICES)
    for name in chosen:
        if name not in stack.SERVICES:
            raise typer.BadParameter(f"unknown service {name!r}; choose from {', '.join(stack.SERVICES)}")
    quiet = is_json(ctx)
    try:
        if quiet:
            results = stack.start_all(chosen)
        else:
            with err_console.status(f"starting {', '.join(f'ferry-{name}' for name in chosen)}..."):
                results = stack.start_all(chosen)
    except stack.StackError as exc:
        if quiet:
            emit(ctx, {"error": {"code": "UNAVAILABLE", "message": str(exc), "field": None}}, lambda _: None)
        else:
            err_console.print(f"[red]✗[/red] {exc}")
        raise typer.Exit(1) from None

    def render(_: Console) -> None:
        for result in results:
            err_console.print(
                f"[green]✓[/green] ferry-{result.service:<9} {result.address:<22} pid {result.pid}  {result.health}"
            )
        err_console.print(f"logs: {stack.state_dir() / 'logs'}")

    emit(
        ctx,
        {
            "services": [
                {"service": r.service, "address": r.address, "pid": r.pid, "health": r.health} for r in results
            ],
            "logs": str(stack.state_dir() / "logs"),
        },
        render,
    )


def down(
    ctx: typer.Context,
    services: list[str] = typer.Argument(None, help="Services to stop (default: all five)."),
    output: OutputOption = None,
) -> None:
    """Stop the local stack gracefully (SIGTERM to all at once, in-flight calls drain)."""
    if is_json(ctx):
        stopped = stack.stop_many(services or list(stack.SERVICES))
    else:
        with err_console.status("stopping..."):
            stopped = stack.stop_many(services or list(stack.SERVICES))

    def render(_: Console) -> None:
        for name, was_running in stopped.items():
            err_console.print(f"{'[green]✓[/green] stopped' if was_running else '  not running'} ferry-{name}")

    emit(ctx, {"stopped": [{"service": name, "was_running": running} for name, running in stopped.items()]}, render)


def status(ctx: typer.Context, output: OutputOption = None) -> None:
    """Show each service's address, pid and health (exit 1 unless all are SERVING)."""
    items = stack.status()
    healthy = all(item.health == "SERVING" for item in items)

    def render(console: Console) -> None:
        table = Table("service", "address", "pid", "health")
        for item in items:
            colour = "green" if item.health == "SERVING" else "red"
            table.add_row(
                f"ferry-{item.service}", item.address, str(item.pid or "-"), f"[{colour}]{item.health}[/{colour}]"
            )
        console.print(table)

    emit(
        ctx,
        {"services": [{"service": i.service, "address": i.address, "pid": i.pid, "health": i.health} for i in items]},
        render,
    )
    if not healthy:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add up/down/status to the root app."""
    app.command(epilog="Example: ferry up            (then: ferry status, ferry down)")(up)
    app.command(epilog="Example: ferry down serve monitor")(down)
    app.command(epilog="Example: ferry status --output json")(status)
