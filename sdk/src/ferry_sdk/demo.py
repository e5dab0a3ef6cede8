"""``make demo``: start the local stack on embedded defaults, walk the lifecycle, stop it.

Each step prints what a user wants to see. Later steps of the lifecycle join as the
services behind them land.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.table import Table

from ferry_sdk import stack

console = Console()


def main() -> int:
    os.environ.setdefault("FERRY_STATE_DIR", os.path.abspath(".ferry/demo"))
    console.rule("[bold]Ferry demo")
    console.print(f"state directory: {stack.state_dir()}")
    try:
        for name in stack.SERVICES:
            with console.status(f"starting ferry-{name}..."):
                result = stack.start(name)
            console.print(f"[green]✓[/green] ferry-{name:<9} listening on {result.address} (pid {result.pid})")
        table = Table("service", "address", "health", title="health checks (grpc.health.v1)")
        for item in stack.status():
            table.add_row(f"ferry-{item.service}", item.address, item.health)
        console.print(table)
        if any(item.health != "SERVING" for item in stack.status()):
            console.print("[red]a service is not healthy; see the logs above[/red]")
            return 1
    except stack.StackError as exc:
        console.print(f"[red]✗ {exc}[/red]")
        return 1
    finally:
        for name in reversed(stack.SERVICES):
            stack.stop(name)
        console.print("stack stopped (SIGTERM, graceful drain)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
