"""Training with a Lightning Trainer: seeded, checkpointed every epoch, resumable.

Nothing here keeps global state beyond what Lightning's seeding sets, so the
same call runs in a worker process on one device or under a DDP launcher.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, Sampler, TensorDataset

from ferry_common.errors import InvalidArgument

__all__ = [
    "EpochCallback",
    "EpochSeededSampler",
    "FitConfig",
    "FitResult",
    "TrainerResources",
    "fit",
]

EpochCallback = Callable[[int, dict[str, float]], None]
"""Called once per finished epoch with its number (from 0) and its metrics."""


@dataclass(frozen=True)
class TrainerResources:
    """Where and how to run; passed through to the Lightning Trainer."""

    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"


@dataclass(frozen=True)
class FitConfig:
    """One training run.

    Attributes:
        max_epochs: Total epochs, counting those a resumed checkpoint already has.
        batch_size: Rows per batch.
        seed: Seed of every random number generator.
        checkpoint_dir: Where ``epoch=N.ckpt`` and ``last.ckpt`` are written.
        resume_from: A checkpoint to continue from; its finished epochs are skipped.
        resources: Trainer placement.

    Raises:
        InvalidArgument: ``max_epochs`` or ``batch_size`` below 1, naming the field.
    """

    max_epochs: int
    batch_size: int
    seed: int
    checkpoint_dir: Path
    resume_from: Path | None = None
    resources: TrainerResources = field(default_factory=TrainerResources)

    def __post_init__(self) -> None:
        # Lightning reads max_epochs=-1 as "train forever": refuse it here.
        for name, value in (("max_epochs", self.max_epochs), ("batch_size", self.batch_size)):
            if value < 1:
                where = f"training_job.hyperparameters.{name}"
                raise InvalidArgument(f"{where}: must be at least 1, got {value}", field=where)


@dataclass(frozen=True)
class FitResult:
    """What a run produced.

    Attributes:
        metrics: The last epoch's metrics (``train_loss``, ``val_loss``, ...).
        epochs_completed: Epochs finished in total, resumed ones included.
        last_checkpoint: Path of ``last.ckpt``, if one was written.
    """

    metrics: dict[str, float]
    epochs_completed: int
    last_checkpoint: Path | None


class EpochSeededSampler(Sampler[int]):
    """Shuffles with a permutation drawn from ``seed + epoch``.

    The order of an epoch depends only on the seed and the epoch number, so a
    run resumed from a checkpoint sees the same batches as an uninterrupted
    one. Lightning calls :meth:`set_epoch` before each epoch.
    """

    def __init__(self, size: int, seed: int) -> None:
        """Shuffles ``size`` indices from ``seed``."""
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose permutation :meth:`__iter__` yields."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        """Indices of this epoch, shuffled."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        """Number of indices."""
        return self.size


class _ReportingCheckpoint(ModelCheckpoint):
    """Writes the epoch's checkpoints, then hands its metrics to the caller.

    Reporting from the checkpoint callback itself (Lightning runs checkpoint
    callbacks after all others) means that when ``on_epoch(n)`` runs,
    ``epoch=n.ckpt`` and ``last.ckpt`` are on disk: the worker can upload
    them before it announces the epoch.
    """

    def __init__(self, on_epoch: EpochCallback | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_epoch = on_epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.on_epoch is not None and trainer.is_global_zero and not trainer.sanity_checking:
            self.on_epoch(trainer.current_epoch, _as_floats(trainer.callback_metrics))


def fit(
    module: pl.LightningModule,
    train: tuple[npt.NDArray[np.float32], npt.NDArray[np.generic]],
    validation: tuple[npt.NDArray[np.float32], npt.NDArray[np.generic]],
    config: FitConfig,
    on_epoch: EpochCallback | None = None,
) -> FitResult:
    """Trains ``module`` on encoded features and targets.

    The caller seeds (:func:`pytorch_lightning.seed_everything`) before
    building the module, so its initial weights are reproducible; this function
    seeds again before training for the data order and dropout.

    Args:
        module: The LightningModule to train (built-in MLP or custom).
        train: Encoded training features and targets.
        validation: Encoded validation features and targets.
        config: Epochs, batch size, seed, checkpoints and placement.
        on_epoch: Called after every finished epoch with its metrics, once its
            checkpoint is written; on global rank 0 only.

    Returns:
        The final metrics and where the last checkpoint is.
    """
    pl.seed_everything(config.seed, workers=True, verbose=False)
    config.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = _ReportingCheckpoint(
        on_epoch,
        dirpath=config.checkpoint_dir,
        filename="{epoch}",
        save_top_k=-1,
        save_last=True,
        every_n_epochs=1,
        # Saved after validation, at the very end of the epoch: a resumed run
        # then starts the next epoch instead of repeating this one.
        save_on_train_epoch_end=True,
    )
    resources = config.resources
    trainer = pl.Trainer(
        accelerator=resources.accelerator,
        devices=resources.devices,
        num_nodes=resources.num_nodes,
        strategy=resources.strategy,
        precision=resources.precision,  # type: ignore[arg-type]
        max_epochs=config.max_epochs,
        deterministic=True,
        callbacks=[checkpoints],
        default_root_dir=config.checkpoint_dir,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    train_set = TensorDataset(torch.from_numpy(train[0]), torch.from_numpy(train[1]))
    val_set = TensorDataset(torch.from_numpy(validation[0]), torch.from_numpy(validation[1]))
    # num_workers=0: loader processes would add start-up time to tiny tables
    # and another source of nondeterminism.
    train_loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        sampler=EpochSeededSampler(len(train_set), config.seed),
        num_workers=0,
    )
    val_loader = DataLoader(val_set, batch_size=config.batch_size, num_workers=0)
    trainer.fit(
        module,
        train_dataloaders=train_loader,
        val_dataloaders=val_loader,
        ckpt_path=str(config.resume_from) if config.resume_from is not None else None,
    )
    last = Path(checkpoints.last_model_path) if checkpoints.last_model_path else None
    return FitResult(
        metrics=_as_floats(trainer.callback_metrics),
        epochs_completed=trainer.current_epoch,
        last_checkpoint=last,
    )


def _as_floats(metrics: Mapping[str, torch.Tensor]) -> dict[str, float]:
    return {name: float(value) for name, value in sorted(metrics.items())}
