"""What a training job asks for (the user's part of ``TrainingJob``), and how a run reports.

The servicer maps ``ferry.train.v1.TrainingJob`` to :class:`JobSpec`; the job runner
(``ferry_train.runner``) runs one and tells a :class:`JobReporter` what happens; the
service's reporter writes it to train's database (events, state, checkpoints).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["CustomSpec", "Hyperparameters", "JobReporter", "JobSpec", "MlpSpec", "ResourceSpec"]


@dataclass(frozen=True)
class MlpSpec:
    """The built-in MLP: hidden layer widths and dropout."""

    hidden_units: tuple[int, ...] = (64, 32)
    dropout: float = 0.0  # the proto's default


@dataclass(frozen=True)
class CustomSpec:
    """A user LightningModule: ``package.module:Class`` and its constructor arguments as JSON text."""

    entry_point: str
    init_args: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Hyperparameters:
    max_epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0


@dataclass(frozen=True)
class ResourceSpec:
    """Lightning's Trainer settings: ``cpu`` | ``gpu`` | ``auto``, devices per node, nodes."""

    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"


@dataclass(frozen=True)
class JobSpec:
    """A training job's specification, validated in form by the servicer.

    Attributes:
        dataset_version: ``datasets/<d>/versions/<n>`` (read through ingest).
        training_split / validation_split: split names of that version.
        target: the column to predict; features: the inputs (empty: every other column).
        task: ``classification`` or ``regression``.
        mlp: the built-in model's settings (used when ``custom`` is None).
        custom: a user LightningModule instead of the built-in MLP.
        register_model: ``models/<m>``: the registry model the result is registered under.
        code_revision: recorded in lineage.
    """

    dataset_version: str
    training_split: str
    validation_split: str
    target: str
    task: str
    register_model: str
    features: tuple[str, ...] = ()
    mlp: MlpSpec = field(default_factory=MlpSpec)
    custom: CustomSpec | None = None
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    code_revision: str = ""


class JobReporter(Protocol):
    """Where a run reports; every call is durable before it returns."""

    def log(self, level: str, message: str) -> None:
        """A log line for WatchTrainingJob."""

    def epoch(self, epoch: int, metrics: Mapping[str, float], checkpoint_uri: str) -> None:
        """An epoch finished and its checkpoint is stored at ``checkpoint_uri``."""
