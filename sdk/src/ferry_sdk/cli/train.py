"""``ferry train``: run, watch, list, show, cancel and resume training jobs."""

from __future__ import annotations

import json
import pathlib
from typing import Annotated, Any

import typer
import yaml
from google.protobuf import json_format
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ferry.train.v1 import train_pb2 as pb
from ferry_sdk._registry_messages import model_name
from ferry_sdk._train_messages import TERMINAL_STATES, job_name, state_name
from ferry_sdk.cli._common import (
    EXIT_FAILED,
    CliError,
    OutputOption,
    emit,
    err_console,
    handle_errors,
    ingest_client,
    is_json,
    note,
    train_client,
)
from ferry_sdk.train import TrainClient

app = typer.Typer(help="Training jobs (ferry-train).", no_args_is_help=True)

_TASKS = {"classification": pb.TASK_CLASSIFICATION, "regression": pb.TASK_REGRESSION}
_COLOURS = {"SUCCEEDED": "green", "FAILED": "red", "CANCELLED": "yellow", "CANCELLING": "yellow"}


def _state(job: pb.TrainingJob) -> str:
    name = state_name(job.state)
    colour = _COLOURS.get(name)
    return f"[{colour}]{name}[/{colour}]" if colour else name


def _metrics(metrics: Any) -> str:
    return "  ".join(f"{key}={value:.4g}" for key, value in sorted(metrics.items()))


def render_job(console: Console, job: pb.TrainingJob) -> None:
    """A job as a few lines."""
    console.print(f"[bold]{job.name}[/bold]  {_state(job)}")
    console.print(f"  dataset    {job.dataset_version} ({job.training_split} / {job.validation_split})")
    console.print(f"  target     {job.target} ({pb.Task.Name(job.task).removeprefix('TASK_').lower()})")
    if job.model.HasField("custom"):
        console.print(f"  model      custom {job.model.custom.entry_point}")
    else:
        units = ",".join(str(u) for u in job.model.mlp.hidden_units)
        console.print(f"  model      mlp hidden_units={units} dropout={job.model.mlp.dropout:g}")
    hp = job.hyperparameters
    console.print(
        f"  training   epochs={hp.max_epochs} batch_size={hp.batch_size} learning_rate={hp.learning_rate:g} "
        f"seed={hp.seed}"
    )
    resources = job.resources
    console.print(
        f"  resources  {resources.accelerator or 'cpu'} x{resources.devices or 1}, nodes={resources.num_nodes or 1}"
    )
    console.print(f"  epoch      {job.current_epoch}  attempt {job.attempt}")
    if job.metrics:
        console.print(f"  metrics    {_metrics(job.metrics)}")
    if job.register_model:
        console.print(f"  register   {job.register_model}")
    if job.model_version:
        console.print(f"  registered [bold]{job.model_version}[/bold]")
    if job.error:
        console.print(f"  error      [red]{job.error}[/red]")


def _load_config(path: pathlib.Path) -> pb.TrainingJob:
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise CliError(f"--config {str(path)!r} is not YAML: {error}", field="--config") from None
    if not isinstance(loaded, dict):
        raise CliError(f"--config {str(path)!r}: expected a mapping (a TrainingJob in proto3 JSON)", field="--config")
    loaded = loaded.get("training_job", loaded)
    try:
        return json_format.ParseDict(loaded, pb.TrainingJob())
    except json_format.ParseError as error:
        raise CliError(f"--config {str(path)!r}: {error}", field="--config") from None


def _init_args(items: list[str] | None) -> dict[str, Any]:
    """``["hidden=32", "name=\"x\""]`` -> values parsed as JSON when they are JSON, else strings."""
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CliError(f"--init-arg {item!r} is not KEY=VALUE", field="--init-arg")
        try:
            result[key] = json.loads(raw)
        except json.JSONDecodeError:
            result[key] = raw
    return result


def _hidden_units(raw: str) -> list[int]:
    try:
        return [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise CliError(
            f"--hidden-units {raw!r} is not a comma-separated list of integers", field="--hidden-units"
        ) from None


def _task(raw: str) -> pb.Task:
    key = raw.lower().removeprefix("task_")
    if key not in _TASKS:
        raise CliError(f"--task {raw!r} is not one of {', '.join(_TASKS)}", field="--task")
    return _TASKS[key]


def _apply(job: pb.TrainingJob, flags: dict[str, Any]) -> None:
    """Write the flags given on the command line over a job read from --config."""
    simple = {
        "dataset": "dataset_version",
        "target": "target",
        "training_split": "training_split",
        "validation_split": "validation_split",
        "code_revision": "code_revision",
    }
    for flag, field in simple.items():
        if flags.get(flag) is not None:
            setattr(job, field, flags[flag])
    if flags.get("register_model") is not None:
        job.register_model = model_name(flags["register_model"])
    if flags.get("task") is not None:
        job.task = _task(flags["task"])
    if flags.get("feature"):
        job.ClearField("features")
        job.features.extend(flags["feature"])
    if flags.get("custom_model") is not None:
        job.model.custom.entry_point = flags["custom_model"]
    if flags.get("init_arg"):
        job.model.custom.init_args.clear()
        job.model.custom.init_args.update({k: json.dumps(v) for k, v in _init_args(flags["init_arg"]).items()})
    if flags.get("hidden_units") is not None:
        job.model.mlp.ClearField("hidden_units")
        job.model.mlp.hidden_units.extend(_hidden_units(flags["hidden_units"]))
    if flags.get("dropout") is not None:
        job.model.mlp.dropout = flags["dropout"]
    hyper = {"epochs": "max_epochs", "batch_size": "batch_size", "learning_rate": "learning_rate", "seed": "seed"}
    for flag, field in hyper.items():
        if flags.get(flag) is not None:
            setattr(job.hyperparameters, field, flags[flag])
    if job.task == pb.TASK_UNSPECIFIED:
        job.task = pb.TASK_CLASSIFICATION
    if not job.model.HasField("mlp") and not job.model.HasField("custom"):
        job.model.mlp.hidden_units.extend([64, 32])  # the SDK's defaults
        job.model.mlp.dropout = 0.1
    resources = ("accelerator", "devices", "num_nodes", "strategy", "precision")
    for flag in resources:
        if flags.get(flag) is not None:
            setattr(job.resources, flag, flags[flag])


def _create_kwargs(flags: dict[str, Any]) -> dict[str, Any]:
    """The given flags as ``TrainClient.create_training_job`` keyword arguments (the SDK's defaults for the rest)."""
    names = {
        "dataset": "dataset_version",
        "target": "target",
        "training_split": "training_split",
        "validation_split": "validation_split",
        "code_revision": "code_revision",
        "register_model": "register_model",
        "dropout": "dropout",
        "custom_model": "custom_model",
        "epochs": "max_epochs",
        "batch_size": "batch_size",
        "learning_rate": "learning_rate",
        "seed": "seed",
        "accelerator": "accelerator",
        "devices": "devices",
        "num_nodes": "num_nodes",
        "strategy": "strategy",
        "precision": "precision",
    }
    kwargs = {names[key]: value for key, value in flags.items() if key in names and value is not None}
    if flags.get("task") is not None:
        kwargs["task"] = _task(flags["task"])
    if flags.get("feature"):
        kwargs["features"] = list(flags["feature"])
    if flags.get("hidden_units") is not None:
        kwargs["hidden_units"] = _hidden_units(flags["hidden_units"])
    if flags.get("init_arg"):
        kwargs["init_args"] = _init_args(flags["init_arg"])
    return kwargs


def follow(ctx: typer.Context, train: TrainClient, name: str) -> pb.TrainingJob:
    """Follow a job until it is final: a live bar (epochs, metrics) in text mode; returns the final job.

    Ctrl-C stops following (exit 130), not the job.
    """
    try:
        return _follow(ctx, train, name)
    except KeyboardInterrupt:
        note(ctx, f"stopped following {job_name(name)}; it keeps running (ferry train watch / cancel)")
        raise typer.Exit(130) from None


def _follow(ctx: typer.Context, train: TrainClient, name: str) -> pb.TrainingJob:
    job = train.get_training_job(name)
    if is_json(ctx):
        with train.watch_training_job(job.name) as watch:
            for _ in watch:
                pass
        return train.get_training_job(job.name)
    total = job.hyperparameters.max_epochs or None
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console) as bar:
        task = bar.add_task(f"{job.name} {state_name(job.state)}", total=total)
        with train.watch_training_job(job.name) as watch:
            for event in watch:
                if event.HasField("state_change"):
                    change = event.state_change
                    bar.update(task, description=f"{job.name} {state_name(change.state)}")
                    message = f": {change.message}" if change.message else ""
                    bar.console.print(f"[dim]{state_name(change.state)}{message}[/dim]")
                elif event.HasField("epoch"):
                    epoch = event.epoch
                    bar.update(task, completed=epoch.epoch + 1)
                    bar.console.print(f"epoch {epoch.epoch + 1:>3}  {_metrics(epoch.metrics)}")
                elif event.HasField("log") and event.log.level in ("warning", "error"):
                    bar.console.print(f"[yellow]{event.log.level}[/yellow] {event.log.message}")
        final = train.get_training_job(job.name)
        if final.state == pb.TrainingJob.STATE_SUCCEEDED and total is not None:
            bar.update(task, completed=total)  # early stopping ends before max_epochs
    return final


def _auto_split(ctx: typer.Context, flags: dict[str, Any], validation_fraction: float) -> None:
    """Give an unsplit dataset version train/validation splits, so a plain upload can be trained on.

    Training reads named splits (``train`` and ``validation`` by default). When the version has
    none and no split was named, the rows are split by ingest's recipe into the next version of
    the same dataset (its parent is the given version, so the lineage shows both), stratified by
    the target for classification, with the job's seed: the same upload always gets the same
    split (ingest returns the existing version for the same content).
    """
    if flags.get("training_split") or flags.get("validation_split"):
        return
    if not 0 < validation_fraction < 1:
        raise CliError(
            f"--validation-fraction {validation_fraction!r} is not between 0 and 1", field="--validation-fraction"
        )
    source = str(flags["dataset"])
    with ingest_client(ctx) as ingest:
        version = ingest.get_dataset_version(source)
        if version.splits:
            return
        dataset_id = version.name.split("/")[1]
        step: dict[str, Any] = {
            "fractions": [
                {"name": "train", "fraction": round(1 - validation_fraction, 6)},
                {"name": "validation", "fraction": validation_fraction},
            ],
            "seed": str(flags.get("seed") or 0),
        }
        if (flags.get("task") or "classification").lower() == "classification":
            step["stratify_column"] = str(flags["target"])
        note(
            ctx,
            f"{version.name} has no train/validation splits: splitting it "
            f"{1 - validation_fraction:.0%}/{validation_fraction:.0%}"
            + (f" (stratified by {flags['target']})" if "stratify_column" in step else "")
            + " into a new version of the same dataset (--no-auto-split to refuse instead)...",
        )
        split = ingest.transform_dataset(
            version.name,
            dataset_id,
            {"steps": [{"split": step}]},
            description=f"train/validation split of {version.name}",
        )
    note(ctx, f"training on {split.name} ({', '.join(f'{s.name} {s.row_count} rows' for s in split.splits)})")
    flags["dataset"] = split.name


def _finish(ctx: typer.Context, job: pb.TrainingJob) -> None:
    """Print the final job; exit 4 unless it SUCCEEDED."""
    emit(ctx, job, lambda console: render_job(console, job))
    if job.state in TERMINAL_STATES and job.state != pb.TrainingJob.STATE_SUCCEEDED:
        if not is_json(ctx):
            err_console.print(f"[red]error[/red] training job {job.name} {state_name(job.state)}: {job.error}")
        raise typer.Exit(EXIT_FAILED)


@app.command(
    epilog="Example: ferry train run --dataset datasets/churn/versions/1 --target churned "
    "--register-model models/churn --epochs 5 --watch"
)
@handle_errors
def run(
    ctx: typer.Context,
    dataset: Annotated[
        str | None, typer.Option(help="The dataset version to train on: datasets/churn/versions/1.")
    ] = None,
    target: Annotated[str | None, typer.Option(help="The column to predict.")] = None,
    task: Annotated[str | None, typer.Option(help="classification (default) or regression.")] = None,
    feature: Annotated[
        list[str] | None, typer.Option(help="A feature column (repeatable; default: every column but the target).")
    ] = None,
    training_split: Annotated[str | None, typer.Option(help="Split to train on (default train).")] = None,
    validation_split: Annotated[str | None, typer.Option(help="Split to validate on (default validation).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs (default 10).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (default 64).")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Learning rate (default 0.001).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default 0).")] = None,
    hidden_units: Annotated[
        str | None, typer.Option(help="The built-in MLP's layers, e.g. 64,32 (the default).")
    ] = None,
    dropout: Annotated[float | None, typer.Option(help="The built-in MLP's dropout (default 0.1).")] = None,
    custom_model: Annotated[
        str | None, typer.Option(help="A LightningModule of yours instead: package.module:Class.")
    ] = None,
    init_arg: Annotated[
        list[str] | None,
        typer.Option(help="KEY=VALUE constructor argument of --custom-model (JSON values; repeatable)."),
    ] = None,
    accelerator: Annotated[str | None, typer.Option(help="cpu (default) or gpu.")] = None,
    devices: Annotated[int | None, typer.Option(help="Devices per node (default 1).")] = None,
    num_nodes: Annotated[int | None, typer.Option(help="Nodes (default 1).")] = None,
    strategy: Annotated[
        str | None, typer.Option(help="Lightning strategy (default auto; ddp for several devices).")
    ] = None,
    precision: Annotated[str | None, typer.Option(help="Lightning precision (default 32-true).")] = None,
    register_model: Annotated[
        str | None,
        typer.Option(
            help="Register the result as a version of this model: models/churn (required unless in --config)."
        ),
    ] = None,
    code_revision: Annotated[str | None, typer.Option(help="Source revision kept in the lineage.")] = None,
    config: Annotated[
        pathlib.Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            readable=True,
            help="YAML/JSON file with the whole TrainingJob (proto3 JSON field names); flags override it.",
        ),
    ] = None,
    job_id: Annotated[str, typer.Option("--id", help="The job's id (default: generated).")] = "",
    request_id: Annotated[str, typer.Option(help="Idempotency key: the same key returns the same job.")] = "",
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Follow the job until it ends (exit 4 unless it SUCCEEDED).")
    ] = False,
    auto_split: Annotated[
        bool,
        typer.Option(
            help="When the dataset version has no splits (a plain upload) and none is named, split it into "
            "train/validation first (a new version of the same dataset, stratified by the target for "
            "classification, seeded by --seed)."
        ),
    ] = True,
    validation_fraction: Annotated[
        float, typer.Option(help="With the automatic split: the share of rows kept for validation.")
    ] = 0.2,
    output: OutputOption = None,
) -> None:
    """Create a training job (the built-in MLP unless --custom-model), optionally following it.

    Without --watch it prints the queued job and returns; `ferry train watch NAME` follows it later.
    A dataset version without splits (a plain `ferry datasets upload`) is split 80/20 first
    (see --auto-split).
    """
    flags = {
        key: value
        for key, value in ctx.params.items()
        if key not in {"config", "job_id", "request_id", "watch", "auto_split", "validation_fraction"}
    }
    with train_client(ctx) as train:
        if config is not None:
            spec = _load_config(config)
            _apply(spec, flags)
            job = train.create_training_job(job_id, spec, request_id=request_id)
        else:
            if flags.get("dataset") is None:
                raise CliError("--dataset is required (or --config FILE)", field="--dataset")
            if flags.get("target") is None:
                raise CliError("--target is required (or --config FILE)", field="--target")
            if flags.get("register_model") is None:
                raise CliError(
                    "--register-model is required: the model the result is registered under (models/churn)",
                    field="--register-model",
                )
            if auto_split:
                _auto_split(ctx, flags, validation_fraction)
            job = train.create_training_job(job_id, request_id=request_id, **_create_kwargs(flags))
        if not watch:
            emit(ctx, job, lambda console: render_job(console, job))
            return
        note(ctx, f"created {job.name}; following it (Ctrl-C stops following, not the job)")
        final = follow(ctx, train, job.name)
    _finish(ctx, final)


@app.command(epilog="Example: ferry train watch trainingJobs/churn-1")
@handle_errors
def watch(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The job: trainingJobs/churn-1 or churn-1.")],
    output: OutputOption = None,
) -> None:
    """Follow a job's events (state changes, epoch metrics) until it ends; exit 4 unless it SUCCEEDED."""
    with train_client(ctx) as train:
        final = follow(ctx, train, job_name(name))
    _finish(ctx, final)


@app.command(epilog="Example: ferry train show churn-1 --output json")
@handle_errors
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The job: trainingJobs/churn-1 or churn-1.")],
    output: OutputOption = None,
) -> None:
    """Show a job: spec, state, current epoch, metrics, registered version, error."""
    with train_client(ctx) as train:
        job = train.get_training_job(name)
    emit(ctx, job, lambda console: render_job(console, job))


@app.command("list", epilog="Example: ferry train list --filter state=STATE_RUNNING")
@handle_errors
def list_(
    ctx: typer.Context,
    filter: Annotated[str, typer.Option(help="state=STATE_RUNNING AND register_model=churn")] = "",
    limit: Annotated[int, typer.Option(help="At most this many jobs (newest first); 0 = all.")] = 50,
    output: OutputOption = None,
) -> None:
    """List training jobs, newest first."""
    with train_client(ctx) as train:
        jobs = []
        for job in train.list_training_jobs(filter=filter):
            jobs.append(job)
            if limit and len(jobs) >= limit:
                break

    def render(console: Console) -> None:
        table = Table("job", "state", "dataset", "target", "epoch", "metrics", "model version")
        for job in jobs:
            table.add_row(
                job.name,
                _state(job),
                job.dataset_version,
                job.target,
                str(job.current_epoch),
                _metrics(job.metrics),
                job.model_version,
            )
        console.print(table)

    emit(ctx, jobs, render)


@app.command(epilog="Example: ferry train cancel trainingJobs/churn-1")
@handle_errors
def cancel(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The job: trainingJobs/churn-1 or churn-1.")],
    output: OutputOption = None,
) -> None:
    """Cancel a job: a queued one is CANCELLED at once, a running one CANCELLING until its worker stops."""
    with train_client(ctx) as train:
        job = train.cancel_training_job(name)
    emit(ctx, job, lambda console: render_job(console, job))


@app.command(epilog="Example: ferry train resume trainingJobs/churn-1 --watch")
@handle_errors
def resume(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The job: trainingJobs/churn-1 or churn-1.")],
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow the job until it ends.")] = False,
    output: OutputOption = None,
) -> None:
    """Queue a FAILED or CANCELLED job again, from its last checkpoint."""
    with train_client(ctx) as train:
        job = train.resume_training_job(name)
        if not watch:
            emit(ctx, job, lambda console: render_job(console, job))
            return
        final = follow(ctx, train, job.name)
    _finish(ctx, final)
