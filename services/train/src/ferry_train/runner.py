"""Runs one training job: data from ingest, training, export, registration.

The worker process calls :func:`run_job` once per attempt. Everything a user
would see goes through the :class:`~ferry_train.spec.JobReporter` (log lines,
one event per finished epoch with its stored checkpoint); the result names the
registered model version.

An attempt is safe to repeat: the checkpoint it resumes from skips the epochs
already trained, and the registration's ``request_id`` depends on the job id
alone, so an attempt that crashed after registering finds the version the
earlier one made instead of making a second.

Under DDP every rank runs this function; only global rank 0 reports, uploads
checkpoints, exports and registers (other ranks return an empty
``model_version``).
"""

from __future__ import annotations

import json
import math
import pathlib
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd
import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from ferry.registry.v1 import registry_pb2
from ferry_common.errors import FailedPrecondition, InvalidArgument, NotFound
from ferry_common.objectstore import ObjectStore
from ferry_sdk import IngestClient, RegistryClient
from ferry_sdk import errors as sdk_errors
from ferry_train.checkpoints import CheckpointStore
from ferry_train.entry_point import decode_init_args
from ferry_train.environment import RECORDED_PACKAGES, package_versions
from ferry_train.pipeline import (
    ExportedModel,
    FitConfig,
    FittedPreprocessor,
    Task,
    TrainerResources,
    build_custom,
    build_mlp,
    export_onnx,
    fit,
    fit_preprocessor,
    verify_export,
)
from ferry_train.spec import JobReporter, JobSpec

__all__ = ["RECORDED_PACKAGES", "RunResult", "TrainingDiverged", "registration_request_id", "run_job"]

LogSink = Callable[[str, str], None]


@dataclass(frozen=True)
class RunResult:
    """What a successful run produced.

    Attributes:
        model_version: ``models/<m>/versions/<n>`` registered (empty on DDP ranks but 0).
        metrics: The final epoch's metrics, as registered.
        epochs: Epochs finished in total, those of a resumed checkpoint included.
        global_rank: This process's DDP rank (Lightning's, which also counts the
            processes its launcher starts without ``RANK``); only rank 0 registered.
    """

    model_version: str
    metrics: dict[str, float]
    epochs: int
    global_rank: int = 0


class TrainingDiverged(Exception):
    """A metric became NaN or infinite: training cannot recover, the job fails."""


def registration_request_id(job_id: str) -> str:
    """The registry ``request_id`` of a job's model version: one per job, whatever the attempt."""
    return f"train.{job_id}"


def run_job(
    job_id: str,
    spec: JobSpec,
    reporter: JobReporter,
    *,
    ingest: IngestClient,
    registry: RegistryClient,
    objects: ObjectStore,
    workdir: pathlib.Path,
    resume_from: str | None = None,
) -> RunResult:
    """Trains, exports, verifies and registers one job.

    Args:
        job_id: The job's id (``trainingJobs/<job_id>``).
        spec: What to train.
        reporter: Receives log lines and one event per finished epoch.
        ingest: Reads the dataset version's splits.
        registry: Where the model version is registered.
        objects: Where checkpoints go (``training-jobs/<job_id>/checkpoints/``).
        workdir: A local scratch directory for this job.
        resume_from: Key or URI of a stored checkpoint to continue from; its
            epochs are not trained (nor reported) again.

    Returns:
        The registered version, the final metrics and the epochs finished.

    Raises:
        NotFound: The dataset version, a split or the resume checkpoint does not exist.
        InvalidArgument: Unusable columns or settings, naming the request field.
        TrainingDiverged: A loss or metric became NaN or infinite.
        ExportMismatchError: The ONNX model answers differently from PyTorch.
        ferry_sdk.errors.FerryError: ingest or the registry failed otherwise.
    """
    log: LogSink = reporter.log if _global_rank() == 0 else _discard
    task = _task(spec.task)
    train_df, val_df = _read_splits(ingest, spec, log)

    preprocessor = fit_preprocessor(train_df, target=spec.target, features=spec.features, task=task)
    x_train, y_train = preprocessor.encode_split(train_df, split_field="training_job.training_split")
    x_val, y_val = preprocessor.encode_split(val_df, split_field="training_job.validation_split")
    log(
        "info",
        f"pre-processing fitted on {len(x_train)} labelled training rows: "
        f"{len(preprocessor.features)} features -> {preprocessor.n_encoded} encoded columns",
    )

    hyper = spec.hyperparameters
    pl.seed_everything(hyper.seed, workers=True, verbose=False)  # before the weights are drawn
    module: pl.LightningModule
    if spec.custom is not None:
        module = build_custom(
            spec.custom.entry_point,
            decode_init_args(dict(spec.custom.init_args)),
            preprocessor,
            y_train,
            learning_rate=hyper.learning_rate,
        )
        log("info", f"custom model {spec.custom.entry_point} ({type(module).__name__})")
    else:
        module = build_mlp(
            preprocessor,
            y_train,
            hidden_units=spec.mlp.hidden_units,
            dropout=spec.mlp.dropout,
            learning_rate=hyper.learning_rate,
        )

    checkpoints = CheckpointStore(objects, job_id)
    rank_dir = workdir / f"rank-{_global_rank()}"
    checkpoint_dir = rank_dir / "checkpoints"
    # Lightning adds "-v1" to a file name already present: start from an empty directory.
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    resume_path: pathlib.Path | None = None
    resumed_metrics: dict[str, float] = {}
    if resume_from:
        resume_path, resumed_metrics = checkpoints.fetch(resume_from, rank_dir / "resume")
        log("info", f"resuming from checkpoint {resume_from}")

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        bad = sorted(name for name, value in metrics.items() if not math.isfinite(value))
        if bad:
            # Raised before the upload: a resume must not start from diverged weights.
            raise TrainingDiverged(
                f"epoch {epoch}: {', '.join(f'{name}={metrics[name]}' for name in bad)}: training diverged "
                "(try a lower training_job.hyperparameters.learning_rate)"
            )
        stored = checkpoints.upload_epoch(epoch, checkpoint_dir, metrics)
        reporter.epoch(epoch, metrics, stored.uri)

    config = FitConfig(
        max_epochs=hyper.max_epochs,
        batch_size=hyper.batch_size,
        seed=hyper.seed,
        checkpoint_dir=checkpoint_dir,
        resume_from=resume_path,
        resources=TrainerResources(
            accelerator=spec.resources.accelerator,
            devices=spec.resources.devices,
            num_nodes=spec.resources.num_nodes,
            strategy=spec.resources.strategy,
            precision=spec.resources.precision,
        ),
    )
    log("info", f"training for {hyper.max_epochs} epochs in all (batch size {hyper.batch_size}, seed {hyper.seed})")
    result = fit(module, (x_train, y_train), (x_val, y_val), config, on_epoch=on_epoch)
    # A checkpoint of the final epoch leaves nothing to train: its stored metrics are the result's.
    metrics = result.metrics or resumed_metrics
    rank = _global_rank()
    if rank != 0:
        return RunResult(model_version="", metrics=metrics, epochs=result.epochs_completed, global_rank=rank)
    log("info", f"trained {result.epochs_completed} epochs: {_format(metrics)}")

    exported = export_onnx(preprocessor, module)
    report = verify_export(exported.onnx_bytes, preprocessor, module, val_df)
    log(
        "info",
        f"ONNX export ({len(exported.onnx_bytes)} bytes) matches PyTorch on {report.rows} validation rows "
        f"(max abs diff {report.max_abs_diff:.2e})",
    )
    version = _register(job_id, spec, preprocessor, exported, metrics, registry=registry, workdir=rank_dir, log=log)
    log("info", f"registered {version}")
    return RunResult(model_version=version, metrics=metrics, epochs=result.epochs_completed)


def _global_rank() -> int:
    # Lightning sets it from RANK / LOCAL_RANK at import and to the true rank once a
    # Trainer has set up its strategy.
    return int(getattr(rank_zero_only, "rank", 0))


def _discard(level: str, message: str) -> None:
    """A log sink for ranks other than 0."""


def _task(value: str) -> Task:
    try:
        return Task(value.lower().removeprefix("task_"))
    except ValueError:
        field = "training_job.task"
        raise InvalidArgument(f"{field}: {value!r} is not classification or regression", field=field) from None


def _read_splits(ingest: IngestClient, spec: JobSpec, log: LogSink) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training and validation splits, refusing an unknown version or split by field."""
    field = "training_job.dataset_version"
    try:
        version = ingest.get_dataset_version(spec.dataset_version)
    except sdk_errors.NotFound as exc:
        raise NotFound(f"{field}: {exc.message}", field=field) from None
    except sdk_errors.InvalidArgument as exc:
        raise InvalidArgument(f"{field}: {exc.message}", field=field) from None
    available = [split.name for split in version.splits]
    frames: list[pd.DataFrame] = []
    for split, split_field in (
        (spec.training_split, "training_job.training_split"),
        (spec.validation_split, "training_job.validation_split"),
    ):
        # An empty split name means the whole version (one without splits).
        if split and split not in available:
            raise NotFound(
                f"{split_field}: {version.name} has no split {split!r} (splits: {available or 'none'})",
                field=split_field,
            )
        frame: pd.DataFrame = ingest.read_dataset_frame(version.name, split=split)
        frames.append(frame)
        log("info", f"read {version.name} split {split or '(all)'!r}: {len(frame)} rows")
    return frames[0], frames[1]


def _register(
    job_id: str,
    spec: JobSpec,
    preprocessor: FittedPreprocessor,
    exported: ExportedModel,
    metrics: Mapping[str, float],
    *,
    registry: RegistryClient,
    workdir: pathlib.Path,
    log: LogSink,
) -> str:
    """Creates the model if needed and uploads the version; returns its name."""
    model_id = spec.register_model.removeprefix("models/")
    field = "training_job.register_model"
    try:
        registry.get_model(model_id)
    except sdk_errors.NotFound:
        try:
            registry.create_model(model_id, description=f"Trained by Ferry train ({spec.task})")
            log("info", f"created model models/{model_id}")
        except sdk_errors.AlreadyExists:
            pass  # created meanwhile by another job
    except sdk_errors.InvalidArgument as exc:
        raise InvalidArgument(f"{field}: {exc.message}", field=field) from None
    artifact = workdir / "model.onnx"
    artifact.write_bytes(exported.onnx_bytes)
    signature = exported.signature.as_dict()
    try:
        version = registry.upload_model_version(
            model_id,
            artifact,
            format="onnx",
            description=f"trainingJobs/{job_id} on {spec.dataset_version}",
            signature=registry_pb2.ModelSignature(
                inputs=[registry_pb2.TensorSpec(**spec_) for spec_ in signature["inputs"]],
                outputs=[registry_pb2.TensorSpec(**spec_) for spec_ in signature["outputs"]],
            ),
            metrics=dict(metrics),
            params=_params(spec, preprocessor),
            lineage={
                "dataset_version": spec.dataset_version,
                "split": spec.training_split,
                "training_job": f"trainingJobs/{job_id}",
                "code_revision": spec.code_revision,
            },
            labels={"training-job": job_id, "task": preprocessor.task.value},
            request_id=registration_request_id(job_id),
        )
    except sdk_errors.FailedPrecondition as exc:
        raise FailedPrecondition(f"{field}: {exc.message}", field=field) from None
    return str(version.name)


def _params(spec: JobSpec, preprocessor: FittedPreprocessor) -> dict[str, str]:
    """What a reader needs to repeat the run: settings, resolved columns, package versions."""
    hyper, resources = spec.hyperparameters, spec.resources
    params: dict[str, str] = {}
    if spec.custom is not None:
        params["model"] = spec.custom.entry_point
        params["init_args"] = json.dumps(dict(spec.custom.init_args), sort_keys=True)
    else:
        params["model"] = "mlp"
        params["hidden_units"] = json.dumps(list(spec.mlp.hidden_units))
        params["dropout"] = repr(spec.mlp.dropout)
    params |= {
        "max_epochs": str(hyper.max_epochs),
        "batch_size": str(hyper.batch_size),
        "learning_rate": repr(hyper.learning_rate),
        "seed": str(hyper.seed),
        "target": preprocessor.target,
        "features": json.dumps(preprocessor.feature_names),
        "task": preprocessor.task.value,
        "accelerator": resources.accelerator,
        "devices": str(resources.devices),
        "num_nodes": str(resources.num_nodes),
        "strategy": resources.strategy,
        "precision": resources.precision,
    }
    if preprocessor.classes:
        params["classes"] = json.dumps(list(preprocessor.classes))
    params |= {f"version.{package}": version for package, version in package_versions().items()}
    return params


def _format(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{name}={value:.4g}" for name, value in sorted(metrics.items()))
