"""``ferry models``: models, versions, aliases (set, rollback, history) and lineage."""

from __future__ import annotations

import pathlib
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ferry.registry.v1 import registry_pb2 as pb
from ferry_sdk import errors
from ferry_sdk._registry_messages import model_name
from ferry_sdk.cli._common import (
    CliError,
    OutputOption,
    emit,
    handle_errors,
    ingest_client,
    labels_text,
    note,
    registry_client,
    timestamp,
    train_client,
    transfer_progress,
)

app = typer.Typer(help="Registered models, versions and aliases (ferry-registry).", no_args_is_help=True)
alias_app = typer.Typer(help="Aliases: named pointers at versions (production, staging).", no_args_is_help=True)
app.add_typer(alias_app, name="alias")


def _metrics(metrics: Any) -> str:
    return "  ".join(f"{key}={value:.4g}" for key, value in sorted(metrics.items()))


def _split_alias(name: str) -> tuple[str, str]:
    """``models/churn/aliases/production`` -> (``models/churn``, ``production``)."""
    model, sep, alias_id = name.partition("/aliases/")
    if not sep or not alias_id:
        raise CliError(f"alias {name!r} is not models/<model>/aliases/<alias>", field="name")
    return model_name(model), alias_id


def render_version(console: Console, version: pb.ModelVersion) -> None:
    """A model version as a few lines."""
    aliases = f"  ({', '.join(version.aliases)})" if version.aliases else ""
    console.print(f"[bold]{version.name}[/bold]{aliases}")
    console.print(f"  created    {timestamp(version, 'create_time')}")
    artifact = version.artifact
    console.print(
        f"  artifact   {pb.ArtifactFormat.Name(artifact.format).removeprefix('ARTIFACT_FORMAT_').lower()} "
        f"{artifact.size_bytes} bytes  {artifact.uri}"
    )
    if version.metrics:
        console.print(f"  metrics    {_metrics(version.metrics)}")
    if version.lineage.dataset_version:
        console.print(f"  dataset    {version.lineage.dataset_version} (split {version.lineage.split or '-'})")
    if version.lineage.training_job:
        console.print(f"  job        {version.lineage.training_job}")
    if version.description:
        console.print(f"  {version.description}")
    if version.signature.inputs:
        table = Table("input", "datatype", "shape", box=None, pad_edge=False)
        for tensor in version.signature.inputs:
            table.add_row(tensor.name, tensor.datatype, str(list(tensor.shape)))
        console.print(table)


def _render_alias(console: Console, alias: pb.Alias) -> None:
    console.print(f"[bold]{alias.name}[/bold] -> version {alias.version}  (revision {alias.revision})")


@app.command("list", epilog="Example: ferry models list --filter labels.team=risk --output json")
@handle_errors
def list_(
    ctx: typer.Context,
    filter: Annotated[str, typer.Option(help="labels.KEY=VALUE AND ...")] = "",
    output: OutputOption = None,
) -> None:
    """List registered models (latest version, labels)."""
    with registry_client(ctx) as registry:
        models = list(registry.list_models(filter=filter))

    def render(console: Console) -> None:
        table = Table("model", "latest", "labels", "updated")
        for model in models:
            table.add_row(
                model.name,
                str(model.latest_version),
                labels_text(model.labels),
                timestamp(model, "update_time"),
            )
        console.print(table)

    emit(ctx, models, render)


@app.command(
    epilog="Example: ferry models show churn   (or models/churn/versions/2, or models/churn/aliases/production)"
)
@handle_errors
def show(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(
            help="A model (churn), a version (models/churn/versions/2) or an alias (models/churn/aliases/production)."
        ),
    ],
    output: OutputOption = None,
) -> None:
    """Show a model with its aliases, or one version (an alias shows the version it points at)."""
    with registry_client(ctx) as registry:
        if "/versions/" in name:
            version = registry.get_model_version(name)
            emit(ctx, version, lambda console: render_version(console, version))
            return
        if "/aliases/" in name:
            version = registry.resolve_alias(name)
            emit(ctx, version, lambda console: render_version(console, version))
            return
        model = registry.get_model(name)
        aliases = list(registry.list_aliases(model.name))

    def render(console: Console) -> None:
        console.print(f"[bold]{model.name}[/bold]  latest version {model.latest_version}")
        if model.description:
            console.print(f"  {model.description}")
        for alias in aliases:
            console.print(f"  {alias.name.rsplit('/', 1)[-1]:<12} -> version {alias.version}")

    emit(ctx, {"model": model, "aliases": aliases}, render)


@app.command(epilog="Example: ferry models versions churn --output json")
@handle_errors
def versions(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The model: churn or models/churn.")],
    filter: Annotated[str, typer.Option(help="labels.KEY=VALUE AND ...")] = "",
    output: OutputOption = None,
) -> None:
    """List a model's versions, newest first (metrics, aliases, source dataset)."""
    with registry_client(ctx) as registry:
        items = list(registry.list_model_versions(model, filter=filter))

    def render(console: Console) -> None:
        table = Table("version", "aliases", "metrics", "dataset", "created")
        for version in items:
            table.add_row(
                str(version.version),
                ", ".join(version.aliases),
                _metrics(version.metrics),
                version.lineage.dataset_version,
                timestamp(version, "create_time"),
            )
        console.print(table)

    emit(ctx, items, render)


@app.command(epilog="Example: ferry models download models/churn/versions/1 churn.onnx")
@handle_errors
def download(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A version (models/churn/versions/1) or an alias.")],
    path: Annotated[pathlib.Path, typer.Argument(dir_okay=False, help="Where to write the artifact.")],
    output: OutputOption = None,
) -> None:
    """Download a version's artifact (ONNX, ...) with a progress bar."""
    with registry_client(ctx) as registry:
        version = registry.resolve_alias(name) if "/aliases/" in name else registry.get_model_version(name)
        with transfer_progress(ctx, f"downloading {version.name}", version.artifact.size_bytes or None) as progress:
            written = registry.download_model_version(version.name, path, progress=progress)
    size = written.stat().st_size
    emit(
        ctx,
        {"model_version": version.name, "path": str(written), "size_bytes": str(size)},
        lambda console: console.print(f"wrote {written} ({size} bytes)"),
    )


@alias_app.command("set", epilog="Example: ferry models alias set models/churn/aliases/production 1")
@handle_errors
def alias_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The alias: models/churn/aliases/production.")],
    version: Annotated[int, typer.Argument(help="The version number it should point at.")],
    expected_version: Annotated[
        int | None,
        typer.Option(help="Compare-and-set: only if it points at this version now (0: only if it does not exist)."),
    ] = None,
    reason: Annotated[str, typer.Option(help="Kept in the alias history.")] = "",
    output: OutputOption = None,
) -> None:
    """Point an alias at a version (creating the alias if needed)."""
    with registry_client(ctx) as registry:
        alias = registry.set_alias(name, version, expected_version, reason)
    emit(ctx, alias, lambda console: _render_alias(console, alias))


@alias_app.command("rollback", epilog="Example: ferry models alias rollback models/churn/aliases/production")
@handle_errors
def alias_rollback(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The alias: models/churn/aliases/production.")],
    reason: Annotated[str, typer.Option(help="Kept in the alias history.")] = "",
    output: OutputOption = None,
) -> None:
    """Move an alias back to the version it pointed at before its last change."""
    with registry_client(ctx) as registry:
        alias = registry.rollback_alias(name, reason=reason)
    emit(ctx, alias, lambda console: _render_alias(console, alias))


@alias_app.command("history", epilog="Example: ferry models alias history models/churn/aliases/production")
@handle_errors
def alias_history(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="An alias (models/churn/aliases/production) or a model (all its aliases).")
    ],
    output: OutputOption = None,
) -> None:
    """The audit log of an alias (or of every alias of a model), oldest first."""
    if "/aliases/" in name:
        model, alias_id = _split_alias(name)
    else:
        model, alias_id = model_name(name), ""
    with registry_client(ctx) as registry:
        events = list(registry.list_alias_events(model, alias_id=alias_id))

    def render(console: Console) -> None:
        table = Table("revision", "alias", "kind", "from", "to", "actor", "reason", "time")
        for event in events:
            table.add_row(
                str(event.revision),
                event.alias.rsplit("/", 1)[-1],
                pb.AliasEventKind.Name(event.kind).removeprefix("ALIAS_EVENT_KIND_").lower(),
                str(event.from_version or "-"),
                str(event.to_version or "-"),
                event.actor,
                event.reason,
                timestamp(event, "create_time"),
            )
        console.print(table)

    emit(ctx, events, render)


@alias_app.command("list", epilog="Example: ferry models alias list churn")
@handle_errors
def alias_list(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The model: churn or models/churn.")],
    output: OutputOption = None,
) -> None:
    """A model's aliases and the versions they point at."""
    with registry_client(ctx) as registry:
        aliases = list(registry.list_aliases(model))

    def render(console: Console) -> None:
        table = Table("alias", "version", "revision", "updated")
        for alias in aliases:
            table.add_row(alias.name, str(alias.version), str(alias.revision), timestamp(alias, "update_time"))
        console.print(table)

    emit(ctx, aliases, render)


@alias_app.command("delete", epilog="Example: ferry models alias delete models/churn/aliases/staging")
@handle_errors
def alias_delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The alias: models/churn/aliases/staging.")],
    expected_version: Annotated[
        int | None, typer.Option(help="Compare-and-set: only if it points at this version now.")
    ] = None,
    reason: Annotated[str, typer.Option(help="Kept in the alias history.")] = "",
    output: OutputOption = None,
) -> None:
    """Delete an alias."""
    with registry_client(ctx) as registry:
        registry.delete_alias(name, expected_version=expected_version, reason=reason)
    emit(ctx, {"deleted": name}, lambda console: console.print(f"deleted {name}"))


@app.command(epilog="Example: ferry models lineage models/churn/aliases/production --output json")
@handle_errors
def lineage(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A version (models/churn/versions/1) or an alias.")],
    output: OutputOption = None,
) -> None:
    """Where a version came from: its training job, dataset version, and that version's parents.

    The training job and the datasets are looked up in ferry-train and ferry-ingest; one
    that cannot be reached is left out with a note (the registry's record is always shown).
    """
    with registry_client(ctx) as registry:
        version = registry.resolve_alias(name) if "/aliases/" in name else registry.get_model_version(name)
    job: Any = None
    datasets: list[Any] = []
    missing: list[str] = []
    if version.lineage.training_job:
        try:
            with train_client(ctx) as train:
                job = train.get_training_job(version.lineage.training_job)
        except errors.FerryError as error:
            missing.append(f"{version.lineage.training_job}: {error}")
    parent = version.lineage.dataset_version
    if parent:
        try:
            with ingest_client(ctx) as ingest:
                while parent and len(datasets) < 32:
                    dataset_version = ingest.get_dataset_version(parent)
                    datasets.append(dataset_version)
                    parent = dataset_version.lineage.parent
        except errors.FerryError as error:
            missing.append(f"{parent}: {error}")

    def render(console: Console) -> None:
        console.print(f"[bold]{version.name}[/bold]  metrics {_metrics(version.metrics)}")
        if job is not None:
            hp = job.hyperparameters
            console.print(
                f"  <- {job.name}  target {job.target}, epochs {hp.max_epochs}, seed {hp.seed}, "
                f"code {job.code_revision or '-'}"
            )
        elif version.lineage.training_job:
            console.print(f"  <- {version.lineage.training_job}")
        depth = 2
        for dataset_version in datasets:
            split = f" (split {version.lineage.split})" if depth == 2 and version.lineage.split else ""
            steps = len(dataset_version.lineage.recipe.steps)
            how = (
                f"recipe of {steps} step(s)"
                if dataset_version.lineage.parent
                else f"from {dataset_version.lineage.source_uri or 'an upload'}"
            )
            console.print(f"{' ' * depth}<- {dataset_version.name}{split}  {dataset_version.row_count} rows, {how}")
            depth += 2
        if version.lineage.code_revision:
            console.print(f"  code revision {version.lineage.code_revision}")
        for line in missing:
            note(ctx, f"[yellow]not shown[/yellow] {line}")

    emit(
        ctx,
        {
            "model_version": version,
            "training_job": job,
            "dataset_versions": datasets,
            "missing": missing,
        },
        render,
    )
