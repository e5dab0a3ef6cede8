"""The registry, ingest and train as drift needs them, through ``ferry_sdk.aio`` typed clients.

- lineage of a model version (``RegistryClient.get_model_version``): the dataset version and
  split it was trained on and the training job that produced it;
- whether a model exists (``RegistryClient.get_model``), for policies;
- the reference profile (``IngestClient.get_profile`` with the split), turned back into a
  :class:`ferry_profile.Profile` (the wire form keeps quantiles, the 20-bin histogram and
  the top values; the drift statistics work from those);
- a retraining job (``TrainClient``): the spec of the job that produced the version,
  on the newest version of the same dataset, with an idempotency key.

Errors become :mod:`ferry_common.errors` (never INTERNAL): an unknown model version or
model is NOT_FOUND naming the request field; a missing reference is FAILED_PRECONDITION;
anything else from a dependency (down, deadline, refused) is UNAVAILABLE naming it.
Addresses are the usual ``FERRY_REGISTRY_ADDRESS``, ``FERRY_INGEST_ADDRESS`` and
``FERRY_TRAIN_ADDRESS``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

from opentelemetry.sdk.trace import TracerProvider

from ferry.ingest.v1 import ingest_pb2
from ferry.train.v1 import train_pb2
from ferry_common.errors import FailedPrecondition, NotFound, Unavailable
from ferry_common.logs import get_logger
from ferry_common.names import parse_version_name
from ferry_common.settings import Settings
from ferry_profile import CategoricalStats, ColumnProfile, NumericStats, Profile
from ferry_sdk import aio, errors

__all__ = ["Lineage", "ServiceUpstream", "profile_from_proto"]

_CACHED = 64
_log = get_logger("ferry.monitor.upstream")


@dataclass(frozen=True)
class Lineage:
    """Where a model version came from (the registry's ``Lineage``)."""

    dataset_version: str
    split: str
    training_job: str


_MASS_UNITS = 1 << 40  # the reference CDF's bin masses, as integers of this many units


def _cdf_bins(num: ingest_pb2.NumericProfile) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Bins whose linear CDF passes through every point the wire profile knows.

    The CDF is known at each histogram edge (cumulative counts) and at each quantile (its
    rank): merged and sorted, with the CDF made non-decreasing, they give bins of unequal
    width. A skewed column's reference then puts exactly ``q[i+1] - q[i]`` of its mass
    between two quantile cuts, where the 20 equal-width bins alone would spread it
    linearly over a wide bin (a PSI of ~0.08 on a lognormal column compared with a sample
    of itself).
    """
    counts = [int(c) for c in num.histogram.counts]
    edges = [float(e) for e in num.histogram.edges]
    total = sum(counts)
    if total == 0 or len(edges) != len(counts) + 1:
        return tuple(edges), tuple(counts)
    cumulative = 0
    points = [(edges[0], 0.0)]
    for edge, count in zip(edges[1:], counts, strict=True):
        cumulative += count
        points.append((edge, cumulative / total))
    points += [(q.value, q.quantile) for q in num.quantiles if math.isfinite(q.value) and 0 <= q.quantile <= 1]
    points.sort()
    xs: list[float] = []
    masses: list[int] = []
    reached = 0.0
    for x, f in points:
        level = max(f, reached)
        if xs:
            masses.append(round((level - reached) * _MASS_UNITS))
        xs.append(x)
        reached = level
    return tuple(xs), tuple(masses)


def profile_from_proto(message: ingest_pb2.Profile) -> Profile:
    """A :class:`ferry_profile.Profile` from ingest's wire form (no sketches: compared, not merged).

    A numeric column's histogram is refined with its quantiles (:func:`_cdf_bins`); ``count``
    is the number of values its histogram holds.
    """
    columns = []
    for column in message.columns:
        numeric = categorical = None
        if column.HasField("numeric"):
            num = column.numeric
            edges, masses = _cdf_bins(num)
            numeric = NumericStats(
                min=num.min,
                max=num.max,
                mean=num.mean,
                std=num.std,
                quantiles=tuple((q.quantile, q.value) for q in num.quantiles),
                histogram_edges=edges,
                histogram_counts=masses,
                quantile_relative_error=num.quantile_relative_error,
                count=sum(int(c) for c in num.histogram.counts),
            )
        if column.HasField("categorical"):
            cat = column.categorical
            categorical = CategoricalStats(
                distinct_count=int(cat.distinct_count),
                top_values=tuple((v.value, int(v.count)) for v in cat.top_values),
            )
        columns.append(ColumnProfile(column.name, column.type, int(column.null_count), numeric, categorical))
    return Profile(row_count=int(message.row_count), columns=tuple(columns))


def _unavailable(what: str, error: errors.FerryError) -> Unavailable:
    # The transport's own text (addresses, socket errors) goes to the log, not to the caller.
    _log.warning("dependency call failed", call=what, code=error.code.name, error=error.message)
    return Unavailable(f"{what} failed with {error.code.name}; monitor cannot answer without it now")


class ServiceUpstream:
    """:class:`~ferry_monitor.drift_service.Upstream` over the registry, ingest and train.

    Lineages and reference profiles are immutable once written, so the last 64 of each
    are kept in memory.
    """

    def __init__(
        self, settings: Settings, tracer_provider: TracerProvider | None = None, timeout: float = 30.0
    ) -> None:
        self._registry = aio.RegistryClient(settings=settings, tracer_provider=tracer_provider)
        self._ingest = aio.IngestClient(settings=settings, tracer_provider=tracer_provider)
        self._train = aio.TrainClient(settings=settings, tracer_provider=tracer_provider)
        self._timeout = timeout
        self._lineages: OrderedDict[tuple[str, int], Lineage] = OrderedDict()
        self._profiles: OrderedDict[tuple[str, str], Profile] = OrderedDict()

    async def close(self) -> None:
        for client in (self._registry, self._ingest, self._train):
            await client.close()

    async def lineage(self, model: str, version: int, field: str) -> Lineage:
        key = (model, version)
        if key in self._lineages:
            self._lineages.move_to_end(key)
            return self._lineages[key]
        name = f"models/{model}/versions/{version}"
        try:
            found = await self._registry.get_model_version(name, timeout=self._timeout)
        except errors.NotFound as error:
            raise NotFound(f"{field}: {name} not found ({error.message})", field=field) from None
        except errors.FerryError as error:
            raise _unavailable(f"registry GetModelVersion {name}", error) from None
        lineage = Lineage(found.lineage.dataset_version, found.lineage.split, found.lineage.training_job)
        self._lineages[key] = lineage
        if len(self._lineages) > _CACHED:
            self._lineages.popitem(last=False)
        return lineage

    async def check_model(self, model: str, field: str) -> None:
        try:
            await self._registry.get_model(f"models/{model}", timeout=self._timeout)
        except errors.NotFound:
            raise NotFound(f"{field}: model {model!r} not found in the registry", field=field) from None
        except errors.FerryError as error:
            raise _unavailable(f"registry GetModel models/{model}", error) from None

    async def reference_profile(self, dataset_version: str, split: str, field: str) -> Profile:
        key = (dataset_version, split)
        if key in self._profiles:
            self._profiles.move_to_end(key)
            return self._profiles[key]
        try:
            message = await self._ingest.get_profile(dataset_version, split=split, timeout=self._timeout)
        except (errors.NotFound, errors.InvalidArgument) as error:
            where = f" split {split!r}" if split else ""
            raise FailedPrecondition(
                f"{field}: the training data {dataset_version}{where} named by its lineage has no profile in "
                f"ingest ({error.message})",
                field=field,
            ) from None
        except errors.FerryError as error:
            raise _unavailable(f"ingest GetProfile {dataset_version}", error) from None
        profile = profile_from_proto(message)
        self._profiles[key] = profile
        if len(self._profiles) > _CACHED:
            self._profiles.popitem(last=False)
        return profile

    async def retrain(self, training_job: str, request_id: str) -> tuple[str, str]:
        """Start the job's spec again on the newest version of its dataset: (job name, dataset version).

        Raises:
            RuntimeError: train or ingest refused or could not be reached (the message says which).
        """
        try:
            job = await self._train.get_training_job(training_job, timeout=self._timeout)
        except errors.FerryError as error:
            raise RuntimeError(f"GetTrainingJob {training_job}: {error.code.name}: {error.message}") from None
        dataset, _ = parse_version_name("dataset_version", job.dataset_version, "datasets")
        try:
            found = await self._ingest.get_dataset(f"datasets/{dataset}", timeout=self._timeout)
        except errors.FerryError as error:
            raise RuntimeError(f"GetDataset datasets/{dataset}: {error.code.name}: {error.message}") from None
        newest = f"datasets/{dataset}/versions/{found.latest_version}"
        spec = train_pb2.TrainingJob(
            dataset_version=newest,
            training_split=job.training_split,
            validation_split=job.validation_split,
            target=job.target,
            features=list(job.features),
            task=job.task,
            model=job.model,
            hyperparameters=job.hyperparameters,
            resources=job.resources,
            register_model=job.register_model,
            code_revision=job.code_revision,
        )
        try:
            created = await self._train.create_training_job(
                training_job=spec, request_id=request_id, timeout=self._timeout
            )
        except errors.FerryError as error:
            raise RuntimeError(f"CreateTrainingJob: {error.code.name}: {error.message}") from None
        return str(created.name), newest
