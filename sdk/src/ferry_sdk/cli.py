"""The ``ferry`` command line."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from ferry_sdk import stack

app = typer.Typer(help="Ferry: from a CSV to a monitored production endpoint.", no_args_is_help=True)
console = Console(stderr=True)


@app.command()
def up(services: list[str] = typer.Argument(None, help="Services to start (default: all five).")) -> None:
    """Start the local stack (each service its own process) and wait until healthy."""
    chosen = services or list(stack.SERVICES)
    for name in chosen:
        if name not in stack.SERVICES:
            raise typer.BadParameter(f"unknown service {name!r}; choose from {', '.join(stack.SERVICES)}")
        with console.status(f"starting ferry-{name}..."):
            try:
                result = stack.start(name)
            except stack.StackError as exc:
                console.print(f"[red]✗[/red] {exc}")
                raise typer.Exit(1) from None
        console.print(f"[green]✓[/green] ferry-{name:<9} {result.address:<22} pid {result.pid}  {result.health}")
    console.print(f"logs: {stack.state_dir() / 'logs'}")


@app.command()
def down(services: list[str] = typer.Argument(None, help="Services to stop (default: all five).")) -> None:
    """Stop the local stack gracefully (SIGTERM, in-flight calls drain)."""
    for name in reversed(services or list(stack.SERVICES)):
        stopped = stack.stop(name)
        console.print(f"{'[green]✓[/green] stopped' if stopped else '  not running'} ferry-{name}")


@app.command()
def status() -> None:
    """Show each service's address, pid and health."""
    table = Table("service", "address", "pid", "health")
    healthy = True
    for item in stack.status():
        colour = "green" if item.health == "SERVING" else "red"
        healthy &= item.health == "SERVING"
        table.add_row(
            f"ferry-{item.service}", item.address, str(item.pid or "-"), f"[{colour}]{item.health}[/{colour}]"
        )
    Console().print(table)
    if not healthy:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
