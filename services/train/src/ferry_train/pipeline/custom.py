"""User LightningModules named by an entry point (``model.custom``).

A custom module follows the same contract as the built-in MLP (``model.py``):
``forward`` takes the encoded float32 matrix ``[rows, n_inputs]`` (numeric columns
standardised, categoricals one-hot encoded, missing values imputed) and returns logits
``[rows, K]`` for classification or the prediction in target units ``[rows, 1]`` for
regression; ``training_step`` / ``validation_step`` take ``(features, target)`` batches
(int64 class indices, or float32 targets of shape ``[rows, 1]``) and log what they
measure with ``self.log(..., on_epoch=True)``; every logged value is an epoch metric.

Its constructor receives, besides ``init_args`` (JSON values), whichever of these it
declares (or all of them through ``**kwargs``): ``n_inputs``, ``n_outputs``, ``task``
(``"classification"`` | ``"regression"``), ``learning_rate``, ``target_mean`` and
``target_std`` (training-split statistics of a regression target). Those names are
reserved: ``init_args`` cannot set them.

The module must be importable in the worker's environment, which is the train service's
environment: install the package into it (``pip install -e my_models/``, or in the
image), or put its directory on ``PYTHONPATH`` before starting ``ferry-train``.

Create checks an entry point in a fresh interpreter (``python -m
ferry_train.pipeline.custom``) rather than in the service: a module with import-time
side effects cannot harm the service, and an edited module is seen at once (the
service's import cache would keep the old one).
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pytorch_lightning as pl

from ferry_common.errors import InvalidArgument
from ferry_train.entry_point import ENTRY_POINT_FIELD, INIT_ARGS_FIELD, RESERVED_ARGUMENTS, parse_entry_point
from ferry_train.pipeline.preprocess import FittedPreprocessor, Task

__all__ = ["build_custom", "check_entry_point"]


def _load_class(entry_point: str) -> type[pl.LightningModule]:
    module_name, attribute = parse_entry_point(entry_point)
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: anything can go wrong while importing it
        raise InvalidArgument(
            f"{ENTRY_POINT_FIELD}: {entry_point!r} does not import: {type(exc).__name__}: {str(exc)[:300]} "
            "(install the package into the train service's environment or put it on its PYTHONPATH)",
            field=ENTRY_POINT_FIELD,
        ) from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise InvalidArgument(
                f"{ENTRY_POINT_FIELD}: {entry_point!r}: module {module_name!r} has no attribute {attribute!r}",
                field=ENTRY_POINT_FIELD,
            ) from None
    if not (inspect.isclass(target) and issubclass(target, pl.LightningModule)):
        raise InvalidArgument(
            f"{ENTRY_POINT_FIELD}: {entry_point!r} is not a pytorch_lightning.LightningModule subclass",
            field=ENTRY_POINT_FIELD,
        )
    return target


def _constructor_arguments(cls: type[pl.LightningModule], provided: Mapping[str, Any]) -> dict[str, Any]:
    """The reserved arguments ``cls`` declares (all of them when it takes ``**kwargs``)."""
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(provided)
    return {name: value for name, value in provided.items() if name in parameters}


def check_entry_point(entry_point: str, init_args: Mapping[str, Any]) -> None:
    """Imports the class and checks that ``init_args`` (decoded) fit its constructor.

    Raises:
        InvalidArgument: the module does not import, the attribute is missing or not a
            LightningModule, or the constructor does not take the arguments.
    """
    cls = _load_class(entry_point)
    provided = dict.fromkeys(RESERVED_ARGUMENTS, None)
    arguments = {**_constructor_arguments(cls, provided), **init_args}
    try:
        inspect.signature(cls.__init__).bind(None, **arguments)
    except TypeError as exc:
        raise InvalidArgument(
            f"{INIT_ARGS_FIELD}: {entry_point}({', '.join(sorted(init_args))}): {exc}", field=INIT_ARGS_FIELD
        ) from None


def build_custom(
    entry_point: str,
    init_args: Mapping[str, Any],
    preprocessor: FittedPreprocessor,
    train_target: npt.NDArray[np.generic],
    *,
    learning_rate: float,
) -> pl.LightningModule:
    """Constructs the user's module sized for the fitted pre-processing.

    Seed before calling, as for :func:`~ferry_train.pipeline.build_mlp`: the initial
    weights are drawn here.
    """
    cls = _load_class(entry_point)
    mean, std = 0.0, 1.0
    if preprocessor.task is Task.REGRESSION:
        values = np.asarray(train_target, dtype=np.float64)
        mean, std = float(values.mean()), float(values.std()) or 1.0
    provided = {
        "n_inputs": preprocessor.n_encoded,
        "n_outputs": preprocessor.n_outputs,
        "task": preprocessor.task.value,
        "learning_rate": learning_rate,
        "target_mean": mean,
        "target_std": std,
    }
    try:
        return cls(**_constructor_arguments(cls, provided), **init_args)
    except Exception as exc:  # the user's constructor
        raise InvalidArgument(
            f"{INIT_ARGS_FIELD}: {entry_point} could not be constructed: {type(exc).__name__}: {str(exc)[:300]}",
            field=INIT_ARGS_FIELD,
        ) from None


def _main() -> int:
    """``python -m ferry_train.pipeline.custom ENTRY_POINT`` with init_args as JSON on stdin.

    Prints ``{"ok": true}`` or ``{"ok": false, "field": ..., "message": ...}``.
    """
    entry_point = sys.argv[1]
    try:
        check_entry_point(entry_point, json.loads(sys.stdin.read() or "{}"))
    except InvalidArgument as exc:
        print(json.dumps({"ok": False, "field": exc.field, "message": exc.message}))
        return 0
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
