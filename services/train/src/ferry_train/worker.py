"""``python -m ferry_train.worker --job trainingJobs/<id>``: run one training job.

The scheduler starts this in its own process (a PyTorchJob pod runs the same command
under ``torchrun``). It reads settings and the job from train's database, runs
:func:`ferry_train.runner.run_job` with a reporter that writes epochs and log lines to the
database, and records the outcome: the registered model version and metrics (exit 0),
or the error (exit 1). Under DDP only global rank 0 records the outcome: the rank Lightning
reports once it has set up, since the processes Lightning starts itself for ``devices > 1``
get ``LOCAL_RANK`` but no ``RANK``. A job still QUEUED (a worker started outside the
scheduler, as under a PyTorchJob) is claimed by rank 0 before it trains.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pathlib
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from ferry_common.errors import FailedPrecondition, FerryError, NotFound
from ferry_common.logs import get_logger
from ferry_common.objectstore import open_object_store
from ferry_common.settings import Settings, load_settings
from ferry_sdk import IngestClient, RegistryClient
from ferry_train.config import TrainConfig
from ferry_train.environment import package_versions
from ferry_train.messages import job_ref
from ferry_train.scheduler import WORKER_LOG_VARIABLE
from ferry_train.store import SqlTrainStore, open_database
from ferry_train.store.base import FAILED, QUEUED, SUCCEEDED, TrainStore

__all__ = ["StoreReporter", "launch_rank", "main", "run"]

_log = get_logger("ferry.train.worker")
_ERROR_CHARS = 8000
_TAIL_LINES = 20


class StoreReporter:
    """A :class:`~ferry_train.spec.JobReporter` that writes to train's database (durable on return).

    Only global rank 0 writes: ``rank`` is the launcher's, until a Trainer sets Lightning's.
    """

    def __init__(self, store: TrainStore, job_id: str, *, rank: int = 0) -> None:
        self._store = store
        self._job_id = job_id
        self._rank = rank

    def log(self, level: str, message: str) -> None:
        if _trained_rank(self._rank) == 0:
            self._store.append_event(self._job_id, "log", {"level": level, "message": message})

    def epoch(self, epoch: int, metrics: Mapping[str, float], checkpoint_uri: str) -> None:
        if _trained_rank(self._rank) == 0:
            self._store.record_epoch(self._job_id, epoch, metrics, checkpoint_uri)


def _record(store: TrainStore, job_id: str, state: str, **values: Any) -> None:
    try:
        store.set_state(job_id, state, **values)
    except FailedPrecondition as error:
        # Cancelled and settled by the scheduler meanwhile: its record stands.
        _log.warning("outcome not recorded", job=job_id, state=state, reason=str(error))


def _tail(log_path: pathlib.Path | None) -> str:
    if log_path is None:
        return ""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-_TAIL_LINES:])


def run(
    settings: Settings, store: TrainStore, job_id: str, *, rank: int = 0, log_path: pathlib.Path | None = None
) -> int:
    """Run a job to its end; returns the process exit status.

    Args:
        settings: the worker's settings (addresses, object store, state directory).
        store: train's database.
        job_id: the job to run.
        rank: the process's rank as its launcher set it (:func:`launch_rank`); the outcome is
            recorded by the rank Lightning reports as global rank 0.
        log_path: the file this process's output goes to; a recorded error ends with its last lines.
    """
    job = store.get(job_id)
    if job.state == QUEUED and rank == 0:
        # Started outside the scheduler (torchrun, a PyTorchJob pod): take the job as the
        # scheduler would, so that its outcome can be recorded.
        job = store.claim(job_id) or store.get(job_id)
    reporter = StoreReporter(store, job_id, rank=rank)
    workdir = settings.state_dir / "train" / "work" / job_id / f"attempt-{job.attempt}"
    try:
        # Imported here: the runner pulls in torch and Lightning, which a worker that
        # fails to find its job never needs.
        runner: Any = importlib.import_module("ferry_train.runner")
        objects = open_object_store(settings)
        with IngestClient(settings=settings) as ingest, RegistryClient(settings=settings) as registry:
            result = runner.run_job(
                job_id,
                job.spec,
                reporter,
                ingest=ingest,
                registry=registry,
                objects=objects,
                workdir=workdir,
                resume_from=job.checkpoint_uri or None,
            )
    except Exception as error:
        text = str(error) if isinstance(error, FerryError) else f"{type(error).__name__}: {error}"
        traceback.print_exc()
        rank = _trained_rank(rank)
        if rank == 0:
            reporter.log("error", text[:_ERROR_CHARS])
            tail = _tail(log_path)
            error_text = f"{text[:_ERROR_CHARS]}\nlast log lines:\n{tail}" if tail else text[:_ERROR_CHARS]
            _record(store, job_id, FAILED, message="training failed", error=error_text, environment=package_versions())
        return 1
    # Rank 0 registered; every other rank returns an empty model_version (RunResult.global_rank).
    if _trained_rank(rank) == 0 and result.model_version:
        _record(
            store,
            job_id,
            SUCCEEDED,
            message=f"registered {result.model_version}",
            model_version=str(result.model_version),
            metrics={str(k): float(v) for k, v in dict(result.metrics).items()},
            environment=package_versions(),
        )
    return 0


def _trained_rank(launched: int) -> int:
    """This process's global rank as Lightning knows it, ``launched`` when Lightning never loaded.

    A Trainer sets Lightning's rank to the true global rank when its strategy sets up, so this
    is right for the processes Lightning starts itself, which :func:`launch_rank` only guesses.
    """
    rank_zero = sys.modules.get("pytorch_lightning.utilities.rank_zero")
    if rank_zero is None:  # no Trainer ran in this process
        return launched
    return int(getattr(rank_zero.rank_zero_only, "rank", launched))


def launch_rank(environ: Mapping[str, str]) -> int:
    """The rank a launcher gave this process before any Trainer runs.

    torchrun sets ``RANK`` (the global rank); Lightning's own launcher sets only
    ``LOCAL_RANK`` in the processes it starts for ``devices > 1`` (their ``RANK`` is unset),
    so any of those is not rank 0. The scheduler's worker sets neither: rank 0.
    """
    for name in ("RANK", "LOCAL_RANK"):
        value = environ.get(name, "").strip()
        if value:
            return int(value)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferry_train.worker", description=__doc__)
    parser.add_argument("--job", required=True, help="trainingJobs/<id>")
    args = parser.parse_args(argv)
    job_id = job_ref("--job", args.job)
    settings = load_settings("train")
    database = open_database(TrainConfig.from_settings(settings))
    try:
        log = os.environ.get(WORKER_LOG_VARIABLE)
        return run(
            settings,
            SqlTrainStore(database),
            job_id,
            rank=launch_rank(os.environ),
            log_path=pathlib.Path(log) if log else None,
        )
    except NotFound as error:
        print(f"ferry_train.worker: {error}", file=sys.stderr)
        return 2
    finally:
        database.close()


if __name__ == "__main__":
    sys.exit(main())
