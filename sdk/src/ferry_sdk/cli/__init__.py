"""The ``ferry`` command line (typer + rich on the typed clients of :mod:`ferry_sdk`).

Shared pieces (global options, client factories, ``--output json``, error handling and
exit codes, progress bars) are in :mod:`ferry_sdk.cli._common`.
"""

from __future__ import annotations

import typer

from ferry_sdk.cli import datasets, deploy, models, monitor, predict, stack_commands, train
from ferry_sdk.cli._common import root_callback

__all__ = ["app"]

app = typer.Typer(
    help="Ferry: from a CSV to a monitored production endpoint.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.callback(epilog="Example: ferry --output json datasets list")(root_callback)

stack_commands.register(app)
app.add_typer(datasets.app, name="datasets")
app.add_typer(train.app, name="train")
app.add_typer(models.app, name="models")

# --- part B: deploy / predict / monitor --------------------------------------------
app.add_typer(deploy.app, name="deploy")
predict.register(app)
app.add_typer(monitor.app, name="monitor")
# --- end of part B -----------------------------------------------------------------


if __name__ == "__main__":
    app()
