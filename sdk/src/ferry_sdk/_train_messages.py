"""Requests of ``ferry.train.v1`` from Pythonic arguments, and the watch's resume rule (both flavours).

A training-job watch resumes like an alias watch (:mod:`ferry_sdk._watch`): after a
break with UNAVAILABLE, or a stream that ended while the job was still live (the
service drained), it reconnects with ``since_sequence`` = the last sequence it
*delivered*. Sequences are gap-free and increasing per job, so a replayed event is
dropped. The server ends the stream once the job is final and every event was sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from ferry.train.v1 import train_pb2 as pb
from ferry_sdk import errors
from ferry_sdk._registry_messages import model_name

__all__ = [
    "TERMINAL_STATES",
    "JobCursor",
    "TaskLike",
    "failed_error",
    "job_name",
    "job_request",
    "state_name",
]

TaskLike: TypeAlias = "str | pb.Task"
"""``"classification"``, ``"regression"`` or a ``Task`` value."""

TERMINAL_STATES = frozenset(
    {pb.TrainingJob.STATE_SUCCEEDED, pb.TrainingJob.STATE_FAILED, pb.TrainingJob.STATE_CANCELLED}
)

_TASKS = {"classification": pb.TASK_CLASSIFICATION, "regression": pb.TASK_REGRESSION}


def job_name(job: str) -> str:
    """``penguins-1`` or ``trainingJobs/penguins-1`` -> ``trainingJobs/penguins-1``."""
    return job if job.startswith("trainingJobs/") else f"trainingJobs/{job}"


def state_name(state: int) -> str:
    """``STATE_SUCCEEDED`` -> ``SUCCEEDED``."""
    return pb.TrainingJob.State.Name(state).removeprefix("STATE_")


def _task(task: TaskLike) -> pb.Task:
    if isinstance(task, str):
        key = task.lower().removeprefix("task_")
        if key not in _TASKS:
            raise ValueError(f"task {task!r} is not one of {', '.join(_TASKS)}")
        return _TASKS[key]
    return task


def job_request(
    job_id: str,
    training_job: pb.TrainingJob | None,
    *,
    dataset_version: str,
    target: str,
    task: TaskLike,
    training_split: str,
    validation_split: str,
    features: Iterable[str],
    hidden_units: Iterable[int],
    dropout: float,
    custom_model: str,
    init_args: Mapping[str, Any] | None,
    max_epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    accelerator: str,
    devices: int,
    num_nodes: int,
    strategy: str,
    precision: str,
    register_model: str,
    code_revision: str,
    request_id: str,
) -> pb.CreateTrainingJobRequest:
    """A ``CreateTrainingJobRequest``: from ``training_job`` as given, else from the keyword arguments."""
    if training_job is None:
        if custom_model:
            encoded = {key: json.dumps(value) for key, value in (init_args or {}).items()}
            model = pb.ModelSpec(custom=pb.CustomModel(entry_point=custom_model, init_args=encoded))
        else:
            if init_args:
                raise ValueError("init_args are for custom_model; the built-in MLP takes hidden_units and dropout")
            model = pb.ModelSpec(mlp=pb.MlpModel(hidden_units=list(hidden_units), dropout=dropout))
        training_job = pb.TrainingJob(
            dataset_version=dataset_version,
            training_split=training_split,
            validation_split=validation_split,
            target=target,
            features=list(features),
            task=_task(task),
            model=model,
            hyperparameters=pb.Hyperparameters(
                max_epochs=max_epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed
            ),
            resources=pb.Resources(
                accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy, precision=precision
            ),
            register_model=model_name(register_model) if register_model else "",
            code_revision=code_revision,
        )
    elif dataset_version or target:
        raise ValueError("pass either training_job or the job's fields (dataset_version, target, ...), not both")
    return pb.CreateTrainingJobRequest(training_job=training_job, training_job_id=job_id, request_id=request_id)


def failed_error(job: pb.TrainingJob) -> errors.TrainingJobFailed:
    """The error :meth:`wait_for` raises for a job that ended ``FAILED``."""
    return errors.TrainingJobFailed(f"training job {job.name!r} failed: {job.error or 'no error recorded'}", job=job)


@dataclass
class JobCursor:
    """Where a job watch stands: the job and the last sequence delivered."""

    name: str
    sequence: int
    final: bool = False

    def request(self) -> pb.WatchTrainingJobRequest:
        return pb.WatchTrainingJobRequest(name=self.name, since_sequence=self.sequence)

    def accept(self, event: pb.TrainingJobEvent) -> bool:
        """Whether ``event`` is new (and, if so, move the cursor past it)."""
        if event.sequence <= self.sequence:
            return False
        self.sequence = event.sequence
        if event.HasField("state_change") and event.state_change.state in TERMINAL_STATES:
            self.final = True
        return True

    def finished(self, job: pb.TrainingJob) -> bool:
        """After a stream ended cleanly: whether ``job`` is final with every event delivered."""
        self.final = self.final or (job.state in TERMINAL_STATES and job.last_sequence <= self.sequence)
        return self.final
