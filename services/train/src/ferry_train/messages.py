"""Proto <-> domain for ``ferry.train.v1``: form checks of a job spec, jobs and events as messages.

Each check raises :class:`~ferry_common.errors.InvalidArgument` naming the request field
(``training_job.hyperparameters.max_epochs``). Checks against the machine or the data
(devices, GPUs, columns) belong to the service and the worker.
"""

from __future__ import annotations

import datetime
import math
import re

from google.protobuf import timestamp_pb2

from ferry.train.v1 import train_pb2 as pb
from ferry_common import fields
from ferry_common.errors import InvalidArgument
from ferry_common.names import parse_name, parse_version_name, shorten
from ferry_train.entry_point import decode_init_args, parse_entry_point
from ferry_train.spec import CustomSpec, Hyperparameters, JobSpec, MlpSpec, ResourceSpec
from ferry_train.store.base import STATES, Job, JobEvent

__all__ = [
    "ACCELERATORS",
    "JobFilter",
    "event_to_proto",
    "job_name",
    "job_ref",
    "job_to_proto",
    "parse_filter",
    "spec_from_proto",
]

ACCELERATORS = ("cpu", "gpu", "auto")
PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "bf16-mixed", "16-true", "bf16-true")
_TASKS = {pb.TASK_CLASSIFICATION: "classification", pb.TASK_REGRESSION: "regression"}
_TASK_VALUES = {name: value for value, name in _TASKS.items()}
_STRATEGY = re.compile(r"[a-z][a-z0-9_]{0,62}")
_PREFIX = "training_job"


def job_name(job_id: str) -> str:
    return f"trainingJobs/{job_id}"


def job_ref(field: str, name: str) -> str:
    """``trainingJobs/{id}`` -> id."""
    return parse_name(field, name, "trainingJobs/{training_job}")["training_job"]


def _positive_or_default(field: str, value: int, default: int) -> int:
    if value < 0:
        raise InvalidArgument(f"{field}: {value} must be at least 1", field=field)
    return value or default


def _model(model: pb.ModelSpec) -> tuple[MlpSpec, CustomSpec | None]:
    """The built-in MLP's settings, or a custom entry point (its form only: the service imports it)."""
    which = model.WhichOneof("architecture")
    if which == "custom":
        parse_entry_point(model.custom.entry_point)
        decode_init_args(model.custom.init_args)
        pairs = tuple(sorted(model.custom.init_args.items()))
        return MlpSpec(), CustomSpec(entry_point=model.custom.entry_point, init_args=pairs)
    if which is None:
        return MlpSpec(), None
    units = tuple(model.mlp.hidden_units)
    field = f"{_PREFIX}.model.mlp.hidden_units"
    if not units:
        raise InvalidArgument(f"{field}: must list at least one layer width", field=field)
    for index, width in enumerate(units):
        if width < 1:
            raise InvalidArgument(f"{field}[{index}]: {width} must be at least 1", field=field)
    dropout = model.mlp.dropout
    field = f"{_PREFIX}.model.mlp.dropout"
    if not (0.0 <= dropout < 1.0):
        raise InvalidArgument(f"{field}: {dropout} must be in [0, 1)", field=field)
    return MlpSpec(hidden_units=units, dropout=dropout), None


def _hyperparameters(message: pb.Hyperparameters) -> Hyperparameters:
    prefix = f"{_PREFIX}.hyperparameters"
    defaults = Hyperparameters()
    if message.extra:
        field = f"{prefix}.extra"
        raise InvalidArgument(
            f"{field}: no model reads extra hyper-parameters (a custom model takes its own settings "
            "in model.custom.init_args)",
            field=field,
        )
    learning_rate = message.learning_rate
    field = f"{prefix}.learning_rate"
    if math.isnan(learning_rate) or math.isinf(learning_rate) or learning_rate < 0:
        raise InvalidArgument(f"{field}: {learning_rate} must be a positive number", field=field)
    if message.seed < 0:
        raise InvalidArgument(f"{prefix}.seed: {message.seed} must not be negative", field=f"{prefix}.seed")
    return Hyperparameters(
        max_epochs=_positive_or_default(f"{prefix}.max_epochs", message.max_epochs, defaults.max_epochs),
        batch_size=_positive_or_default(f"{prefix}.batch_size", message.batch_size, defaults.batch_size),
        learning_rate=learning_rate or defaults.learning_rate,
        seed=message.seed,
    )


def _resources(message: pb.Resources) -> ResourceSpec:
    prefix = f"{_PREFIX}.resources"
    defaults = ResourceSpec()
    accelerator = message.accelerator or defaults.accelerator
    if accelerator not in ACCELERATORS:
        field = f"{prefix}.accelerator"
        raise InvalidArgument(f"{field}: {shorten(accelerator)} is not one of {', '.join(ACCELERATORS)}", field=field)
    strategy = message.strategy or defaults.strategy
    if not _STRATEGY.fullmatch(strategy):
        field = f"{prefix}.strategy"
        raise InvalidArgument(f"{field}: {shorten(strategy)} is not a Lightning strategy name", field=field)
    precision = message.precision or defaults.precision
    if precision not in PRECISIONS:
        field = f"{prefix}.precision"
        raise InvalidArgument(f"{field}: {shorten(precision)} is not one of {', '.join(PRECISIONS)}", field=field)
    return ResourceSpec(
        accelerator=accelerator,
        devices=_positive_or_default(f"{prefix}.devices", message.devices, defaults.devices),
        num_nodes=_positive_or_default(f"{prefix}.num_nodes", message.num_nodes, defaults.num_nodes),
        strategy=strategy,
        precision=precision,
    )


def spec_from_proto(job: pb.TrainingJob) -> JobSpec:
    """Check a job's form and map it to :class:`JobSpec` (output-only fields are ignored).

    Zero means "the default" for the numbers proto3 cannot mark as unset (epochs, batch
    size, learning rate, devices, nodes); negative values are refused.
    """
    dataset, number = parse_version_name(f"{_PREFIX}.dataset_version", job.dataset_version, "datasets", latest=False)
    if job.task not in _TASKS:
        field = f"{_PREFIX}.task"
        raise InvalidArgument(f"{field}: must be TASK_CLASSIFICATION or TASK_REGRESSION", field=field)
    features = tuple(fields.name(f"{_PREFIX}.features[{i}]", f) for i, f in enumerate(job.features))
    parse_name(f"{_PREFIX}.register_model", job.register_model, "models/{model}")
    mlp, custom = _model(job.model)
    return JobSpec(
        # Canonical (``versions/01`` is ``versions/1``): the job shows it, lineage records it.
        dataset_version=f"datasets/{dataset}/versions/{number}",
        training_split=fields.name(f"{_PREFIX}.training_split", job.training_split or "train"),
        validation_split=fields.name(f"{_PREFIX}.validation_split", job.validation_split or "validation"),
        target=fields.name(f"{_PREFIX}.target", job.target),
        task=_TASKS[job.task],
        register_model=job.register_model,
        features=features,
        mlp=mlp,
        custom=custom,
        hyperparameters=_hyperparameters(job.hyperparameters),
        resources=_resources(job.resources),
        code_revision=fields.text(f"{_PREFIX}.code_revision", job.code_revision, 200),
    )


def _timestamp(value: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def job_to_proto(job: Job) -> pb.TrainingJob:
    spec = job.spec
    return pb.TrainingJob(
        name=job_name(job.job_id),
        dataset_version=spec.dataset_version,
        training_split=spec.training_split,
        validation_split=spec.validation_split,
        target=spec.target,
        features=list(spec.features),
        task=_TASK_VALUES[spec.task],
        model=_model_to_proto(spec),
        hyperparameters=pb.Hyperparameters(
            max_epochs=spec.hyperparameters.max_epochs,
            batch_size=spec.hyperparameters.batch_size,
            learning_rate=spec.hyperparameters.learning_rate,
            seed=spec.hyperparameters.seed,
        ),
        resources=pb.Resources(
            accelerator=spec.resources.accelerator,
            devices=spec.resources.devices,
            num_nodes=spec.resources.num_nodes,
            strategy=spec.resources.strategy,
            precision=spec.resources.precision,
        ),
        register_model=spec.register_model,
        code_revision=spec.code_revision,
        state=f"STATE_{job.state}",
        error=job.error,
        current_epoch=job.current_epoch,
        metrics=dict(job.metrics),
        model_version=job.model_version,
        checkpoint_uri=job.checkpoint_uri,
        last_sequence=job.last_sequence,
        attempt=job.attempt,
        create_time=_timestamp(job.create_time),
        start_time=_timestamp(job.start_time),
        end_time=_timestamp(job.end_time),
        package_versions=dict(job.environment),
    )


def _model_to_proto(spec: JobSpec) -> pb.ModelSpec:
    if spec.custom is not None:
        return pb.ModelSpec(
            custom=pb.CustomModel(entry_point=spec.custom.entry_point, init_args=dict(spec.custom.init_args))
        )
    return pb.ModelSpec(mlp=pb.MlpModel(hidden_units=list(spec.mlp.hidden_units), dropout=spec.mlp.dropout))


def event_to_proto(event: JobEvent) -> pb.TrainingJobEvent:
    message = pb.TrainingJobEvent(sequence=event.sequence, time=_timestamp(event.time))
    payload = event.payload
    if event.kind == "state":
        message.state_change.CopyFrom(
            pb.StateChange(state=f"STATE_{payload['state']}", message=str(payload.get("message", "")))
        )
    elif event.kind == "epoch":
        message.epoch.epoch = int(payload["epoch"])
        message.epoch.metrics.update({str(k): float(v) for k, v in payload.get("metrics", {}).items()})
    else:
        message.log.level = str(payload.get("level", "info"))
        message.log.message = str(payload.get("message", ""))
    return message


class JobFilter:
    """A parsed List filter: states and the model a job registers under."""

    def __init__(self, states: frozenset[str], register_model: str | None, text: str) -> None:
        self.states = states
        self.register_model = register_model
        self.text = text


_TERM = re.compile(r'(state|register_model)\s*=\s*"?([^"\s]*)"?')


def parse_filter(value: str) -> JobFilter:
    """``state=STATE_RUNNING``, ``register_model=churn`` (or ``models/churn``), joined by ``AND``."""
    states: set[str] = set()
    model: str | None = None
    text = value.strip()
    for term in re.split(r"\s+AND\s+", text) if text else []:
        match = _TERM.fullmatch(term.strip())
        if not match:
            raise InvalidArgument(
                f"filter: {shorten(term)} is not a term such as state=STATE_RUNNING or register_model=churn "
                "(terms joined by AND)",
                field="filter",
            )
        key, raw = match[1], match[2]
        if key == "state":
            state = raw.removeprefix("STATE_")
            if state not in STATES:
                raise InvalidArgument(f"filter: {shorten(raw)} is not a job state", field="filter")
            if states:
                raise InvalidArgument("filter: state is given twice (terms are joined by AND)", field="filter")
            states.add(state)
        else:
            name = raw if raw.startswith("models/") else f"models/{raw}"
            parse_name("filter", name, "models/{model}")
            model = name
    return JobFilter(frozenset(states), model, text)
