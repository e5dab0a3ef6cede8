"""The built-in tabular MLP as a LightningModule.

Contract shared with custom modules (see the README): ``forward`` takes the
encoded float32 matrix ``[rows, n_inputs]`` and returns logits ``[rows, K]``
(classification) or the prediction in target units ``[rows, 1]`` (regression);
``training_step`` and ``validation_step`` take ``(features, target)`` batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import numpy.typing as npt
import pytorch_lightning as pl
import torch
import torchmetrics
from torch import nn
from torch.nn import functional as F

from ferry_common.errors import InvalidArgument
from ferry_train.pipeline.preprocess import FittedPreprocessor, Task

__all__ = ["TabularMlp", "build_mlp"]

Batch = tuple[torch.Tensor, torch.Tensor]


class TabularMlp(pl.LightningModule):
    """Multi-layer perceptron for tabular classification or regression.

    Classification trains with cross-entropy on logits and reports accuracy;
    regression trains with MSE on the standardised target and reports RMSE in
    target units.
    """

    # Buffers, declared so the type checker knows them as tensors.
    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(
        self,
        *,
        n_inputs: int,
        n_outputs: int,
        task: str,
        hidden_units: Sequence[int] = (64, 32),
        dropout: float = 0.0,
        learning_rate: float = 1e-3,
        target_mean: float = 0.0,
        target_std: float = 1.0,
    ) -> None:
        """Builds the layers.

        Args:
            n_inputs: Width of the encoded feature matrix.
            n_outputs: Number of classes, or 1 for regression.
            task: ``"classification"`` or ``"regression"`` (a string so the
                checkpoint's hyper-parameters stay plain YAML).
            hidden_units: Hidden layer widths; at least one.
            dropout: Dropout probability after each hidden layer.
            learning_rate: Adam's learning rate.
            target_mean: Training-split mean of a regression target.
            target_std: Training-split standard deviation of a regression target.
        """
        super().__init__()
        if not hidden_units:
            raise ValueError("hidden_units must name at least one layer")
        self.save_hyperparameters()
        self.task = Task(task)
        self.learning_rate = learning_rate
        layers: list[nn.Module] = []
        width = n_inputs
        for units in hidden_units:
            layers += [nn.Linear(width, units), nn.ReLU(), nn.Dropout(dropout)]
            width = units
        layers.append(nn.Linear(width, n_outputs))
        self.layers = nn.Sequential(*layers)
        # Regression learns a standardised target so one learning rate suits
        # grams and dollars alike; forward() answers in target units. Buffers
        # travel with checkpoints and into the ONNX graph.
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_std", torch.tensor(float(target_std) or 1.0))
        self.val_metric: torchmetrics.Metric
        if self.task is Task.CLASSIFICATION:
            self.val_metric = torchmetrics.Accuracy(task="multiclass", num_classes=n_outputs)
        else:
            # Squared errors are averaged over the epoch before the root, so
            # the figure is the true RMSE, not a mean of batch RMSEs.
            self.val_metric = torchmetrics.MeanSquaredError(squared=False)

    @property
    def metric_name(self) -> str:
        """Name of the validation metric logged each epoch."""
        return "val_accuracy" if self.task is Task.CLASSIFICATION else "val_rmse"

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``[rows, K]`` or predictions in target units ``[rows, 1]``."""
        out = cast(torch.Tensor, self.layers(features))
        if self.task is Task.REGRESSION:
            return out * self.target_std + self.target_mean
        return out

    def _loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        features, target = batch
        output = self(features)
        if self.task is Task.CLASSIFICATION:
            return F.cross_entropy(output, target), output
        scale = self.target_std
        return F.mse_loss(output / scale, target / scale), output

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """One optimisation step; logs the epoch's mean training loss."""
        loss, _ = self._loss(batch)
        self.log(
            "train_loss",
            loss,
            on_step=False,
            on_epoch=True,
            batch_size=len(batch[0]),
            sync_dist=True,
        )
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Logs the validation loss and metric, aggregated over the epoch."""
        loss, output = self._loss(batch)
        target = batch[1]
        if self.task is Task.CLASSIFICATION:
            self.val_metric(output.argmax(dim=1), target)
        else:
            self.val_metric(output, target)
        self.log("val_loss", loss, on_epoch=True, batch_size=len(target), sync_dist=True)
        self.log(self.metric_name, self.val_metric, on_epoch=True, batch_size=len(target))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam with the configured learning rate."""
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate)


def build_mlp(
    preprocessor: FittedPreprocessor,
    train_target: npt.NDArray[np.generic],
    *,
    hidden_units: Sequence[int] = (64, 32),
    dropout: float = 0.0,
    learning_rate: float = 1e-3,
) -> TabularMlp:
    """Builds the MLP sized for a fitted pre-processing and training target.

    Seed (:func:`pytorch_lightning.seed_everything`) before calling: the
    initial weights are drawn here.

    Args:
        preprocessor: Gives the input width, output width and task.
        train_target: Encoded training targets; a regression target's mean and
            standard deviation are taken from them.
        hidden_units: Hidden layer widths.
        dropout: Dropout probability.
        learning_rate: Adam's learning rate.

    Returns:
        An untrained module.

    Raises:
        InvalidArgument: No hidden layer, a width below 1, dropout outside
            [0, 1), or a learning rate that is not positive.
    """
    _check_mlp(hidden_units, dropout, learning_rate)
    mean, std = 0.0, 1.0
    if preprocessor.task is Task.REGRESSION:
        values = np.asarray(train_target, dtype=np.float64)
        mean, std = float(values.mean()), float(values.std())
    return TabularMlp(
        n_inputs=preprocessor.n_encoded,
        n_outputs=preprocessor.n_outputs,
        task=preprocessor.task.value,
        hidden_units=list(hidden_units),
        dropout=dropout,
        learning_rate=learning_rate,
        target_mean=mean,
        target_std=std,
    )


def _check_mlp(hidden_units: Sequence[int], dropout: float, learning_rate: float) -> None:
    """Refuses settings that would build a broken network, naming the field."""
    field = "training_job.model.mlp.hidden_units"
    if not hidden_units:
        raise InvalidArgument(f"{field}: at least one hidden layer is needed", field=field)
    for i, units in enumerate(hidden_units):
        if units < 1:
            raise InvalidArgument(f"{field}[{i}]: a layer needs at least one unit, got {units}", field=f"{field}[{i}]")
    if not 0.0 <= dropout < 1.0:
        field = "training_job.model.mlp.dropout"
        raise InvalidArgument(f"{field}: must be in [0, 1), got {dropout}", field=field)
    if not learning_rate > 0.0:
        field = "training_job.hyperparameters.learning_rate"
        raise InvalidArgument(f"{field}: must be positive, got {learning_rate}", field=field)
