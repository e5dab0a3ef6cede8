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
    with console.status(f"starting {', '.join(f'ferry-{name}' for name in chosen)}..."):
        try:
            results = stack.start_all(chosen)
        except stack.StackError as exc:
            console.print(f"[red]✗[/red] {exc}")
            raise typer.Exit(1) from None
    for result in results:
        console.print(
            f"[green]✓[/green] ferry-{result.service:<9} {result.address:<22} pid {result.pid}  {result.health}"
        )
    console.print(f"logs: {stack.state_dir() / 'logs'}")


@app.command()
def down(services: list[str] = typer.Argument(None, help="Services to stop (default: all five).")) -> None:
    """Stop the local stack gracefully (SIGTERM to all at once, in-flight calls drain)."""
    with console.status("stopping..."):
        stopped = stack.stop_many(services or list(stack.SERVICES))
    for name, was_running in stopped.items():
        console.print(f"{'[green]✓[/green] stopped' if was_running else '  not running'} ferry-{name}")


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
