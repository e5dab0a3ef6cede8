"""Drift reports, model policies and retraining on drift. Imports no grpc.

When drift is evaluated:

- on every ``GetDriftReport`` (the window asked for);
- every ``evaluate_seconds`` (``FERRY_MONITOR_DRIFT_EVALUATE_SECONDS``) for each version of
  each model **with a stored policy** that has inference records in the last
  ``window_seconds`` (``FERRY_MONITOR_DRIFT_WINDOW_SECONDS``), with PSI for numeric features.

Only a version of a model with a stored policy and at least ``min_samples`` recorded rows
in the window (``FERRY_MONITOR_DRIFT_MIN_SAMPLES``) can be judged in breach. The breach
rule, persisted per model version (table ``drift_states``), so a restart neither repeats
nor forgets:

- drifted and not in a breach: a new breach. When the policy says ``retrain_on_drift``, a
  training job is created through train first (the spec of the job that produced the
  version, on the newest version of the same dataset; its ``request_id`` names the
  version and the breach number, so a retry after a crash gets the same job), then an
  ``ALERT_KIND_DRIFT`` alert records the breach and names the job (``action_result``
  ``trainingJobs/{job} started on datasets/{d}/versions/{n}``, or ``error: ...``), in
  the transaction that records the breach. One alert and at most one job per breach,
  however many evaluations see it.
- drifted and in a breach whose job could not be started (train down, or
  ``retrain_on_drift`` turned on since): the job is tried again; once started, a second
  alert names it.
- not drifted, from the periodic evaluation: the breach ends (re-armed). A
  ``GetDriftReport`` over a clean window does not end a breach (its window is the
  caller's choice).

The same periodic evaluation judges accuracy, apart from drift (a version whose lineage
names no dataset is still judged): for each such version of a model whose policy has
``min_accuracy`` > 0, the rows of its records in the window that carry ground truth
(RecordFeedback) and an output named ``label`` give the accuracy, as GetPerformance
measures it. With at least ``min_labels`` of them (``FERRY_MONITOR_ACCURACY_MIN_LABELS``),
an accuracy below ``min_accuracy`` while not in an accuracy breach starts one: one
``ALERT_KIND_PERFORMANCE`` alert (action ``BREACH_ACTION_ALERT``; nothing else is done,
``retrain_on_drift`` included), stored with the breach state (table ``accuracy_states``) in
one transaction. An accuracy at or above the minimum over enough labels ends the breach
(re-armed), as does a policy whose ``min_accuracy`` is now 0; fewer labels judge nothing
and leave the state as it is. Regression versions (``prediction`` outputs) have no
labelled rows and are never judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from ferry_common.database import DatabaseRunner
from ferry_common.errors import FailedPrecondition, InvalidArgument
from ferry_common.logs import get_logger
from ferry_monitor import metrics
from ferry_monitor.drift import DriftResult, NumericStatistic, compare_inputs
from ferry_monitor.inferences import Performance, measure
from ferry_monitor.policies import AccuracyState, DriftState, ModelPolicy
from ferry_monitor.service import DEFAULT_WINDOW_SECONDS, Window
from ferry_monitor.slos import Alert, AlertKind, BreachAction
from ferry_monitor.store.base import InferenceStore
from ferry_monitor.upstream import Lineage
from ferry_profile import Profile

__all__ = ["DriftService", "PolicyStore", "Upstream"]

_log = get_logger("ferry.monitor.drift")
_NS = 1_000_000_000


class Upstream(Protocol):
    """The registry, ingest and train, as far as drift needs them (:class:`~ferry_monitor.upstream.ServiceUpstream`)."""

    async def lineage(self, model: str, version: int, field: str) -> Lineage:
        """The version's lineage (NotFound naming ``field`` when the version is unknown)."""

    async def check_model(self, model: str, field: str) -> None:
        """NotFound naming ``field`` when the model is unknown."""

    async def reference_profile(self, dataset_version: str, split: str, field: str) -> Profile:
        """The training split's profile (FailedPrecondition naming ``field`` when it is gone)."""

    async def retrain(self, training_job: str, request_id: str) -> tuple[str, str]:
        """Start ``training_job``'s spec on the newest dataset version: (job name, dataset version)."""


class PolicyStore(Protocol):
    """Model policies and drift breach states (:class:`~ferry_monitor.store.policies.SqlPolicyStore`)."""

    def put_policy(self, policy: ModelPolicy) -> None:
        """Create or replace a model's policy."""

    def get_policy(self, model: str) -> ModelPolicy | None:
        """A model's stored policy."""

    def list_policies(self) -> list[ModelPolicy]:
        """Every stored policy."""

    def get_state(self, model: str, version: int) -> DriftState:
        """A version's breach state (never judged: not breached)."""

    def put_state(self, state: DriftState) -> None:
        """Record a version's breach state."""

    def record_breach(self, state: DriftState, alert: Alert) -> Alert:
        """Store the alert (next sequence) and the state in one transaction; returns the alert."""

    def get_accuracy_state(self, model: str, version: int) -> AccuracyState:
        """A version's accuracy breach state (never judged: not breached)."""

    def put_accuracy_state(self, state: AccuracyState) -> None:
        """Record a version's accuracy breach state."""

    def record_accuracy_breach(self, state: AccuracyState, alert: Alert) -> Alert:
        """Store the alert (next sequence) and the accuracy state in one transaction; returns the alert."""


class DriftService:
    """GetDriftReport, Set/GetModelPolicy, the periodic drift and accuracy evaluation, retraining."""

    def __init__(
        self,
        policies: PolicyStore,
        inferences: InferenceStore,
        runner: DatabaseRunner,
        upstream: Upstream,
        *,
        on_alert: Callable[[], None] = lambda: None,
        evaluate_seconds: float = 60.0,
        window_seconds: int = 3600,
        min_samples: int = 100,
        max_samples: int = 100_000,
        min_labels: int = 100,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._policies = policies
        self._inferences = inferences
        self._runner = runner
        self._upstream = upstream
        self._on_alert = on_alert
        self._evaluate_seconds = evaluate_seconds
        self._window_seconds = window_seconds
        self._min_samples = min_samples
        self._max_samples = max_samples
        self._min_labels = min_labels
        self._clock = clock
        self._evaluator: asyncio.Task[None] | None = None
        # One judgement at a time in this process: a report and the evaluator seeing the
        # same breach at once must not both raise it.
        self._judging = asyncio.Lock()

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start the periodic evaluation (every ``evaluate_seconds``)."""
        self._evaluator = asyncio.create_task(self._evaluate_forever(), name="ferry-monitor-drift")

    async def stop(self) -> None:
        """Stop the periodic evaluation."""
        if self._evaluator is not None:
            self._evaluator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._evaluator

    async def _evaluate_forever(self) -> None:
        while True:
            await asyncio.sleep(self._evaluate_seconds)
            try:
                await self.evaluate()
            except Exception as error:  # a lost database: try again at the next round
                _log.warning("drift evaluation failed", error=str(error))

    # ---------------------------------------------------------------- policies

    async def set_policy(self, policy: ModelPolicy) -> ModelPolicy:
        """Create or replace a model's policy (NotFound naming ``policy.name`` for an unknown model)."""
        await self._upstream.check_model(policy.model, "policy.name")
        await self._runner.write(self._policies.put_policy, policy)
        return policy

    async def get_policy(self, model: str) -> ModelPolicy:
        """The model's policy, the default one when none was set (NotFound naming ``name``)."""
        await self._upstream.check_model(model, "name")
        stored = await self._runner.read(self._policies.get_policy, model)
        return stored if stored is not None else ModelPolicy(model)

    # ---------------------------------------------------------------- reports

    def _resolve(self, window: Window) -> tuple[int, int]:
        end = window.end_ns if window.end_ns is not None else self._clock()
        start = window.start_ns if window.start_ns is not None else end - DEFAULT_WINDOW_SECONDS * _NS
        if start >= end:
            raise InvalidArgument(
                f"window.start_time: must be before window.end_time ({start} >= {end} ns)", field="window.start_time"
            )
        return start, end

    async def report(self, model: str, version: int, window: Window, numeric: NumericStatistic = "psi") -> DriftResult:
        """The drift of the version's recorded inputs in ``window``; judges a breach when it has a policy.

        Raises:
            NotFound: unknown model version (``model_version``).
            FailedPrecondition: no recorded inputs in the window, or no training data to
                compare with (``model_version``).
            Unavailable: the registry or ingest cannot be reached.
        """
        start, end = self._resolve(window)
        lineage = await self._upstream.lineage(model, version, "model_version")
        policy = await self._runner.read(self._policies.get_policy, model)
        result = await self._measure(model, version, lineage, start, end, numeric, policy)
        if result is None:
            raise FailedPrecondition(
                f"model_version: models/{model}/versions/{version} has no recorded inputs between "
                f"{start} and {end} ns (RecordInferences stores them; widen the window)",
                field="model_version",
            )
        if policy is not None and result.sample_count >= self._min_samples:
            await self._judge(policy, lineage, result, rearm=False)
        return result

    async def _measure(
        self,
        model: str,
        version: int,
        lineage: Lineage,
        start: int,
        end: int,
        numeric: NumericStatistic,
        policy: ModelPolicy | None,
    ) -> DriftResult | None:
        name = f"models/{model}/versions/{version}"
        if not lineage.dataset_version:
            raise FailedPrecondition(
                f"model_version: {name} has no lineage dataset_version: no training data to compare with",
                field="model_version",
            )
        records = await self._runner.read(self._inferences.inputs, model, version, start, end, self._max_samples)
        if not records:
            return None
        reference = await self._upstream.reference_profile(lineage.dataset_version, lineage.split, "model_version")
        threshold = (policy or ModelPolicy(model)).drift_threshold
        result = await asyncio.to_thread(
            compare_inputs,
            records,
            reference,
            model=model,
            version=version,
            reference_dataset_version=lineage.dataset_version,
            reference_split=lineage.split,
            numeric=numeric,
            psi_threshold=threshold,
        )
        for feature in result.features:
            metrics.observe_drift(model, version, feature.feature, feature.statistic, feature.value, feature.drifted)
        return result

    # ---------------------------------------------------------------- evaluation and breaches

    async def evaluate(self) -> list[Alert]:
        """Judge drift and accuracy of every recently active version of every model with a policy.

        Returns the alerts raised.
        """
        end = self._clock()
        start = end - self._window_seconds * _NS
        policies = {p.model: p for p in await self._runner.read(self._policies.list_policies)}
        seen = await self._runner.read(self._inferences.versions_seen, sorted(policies), start, end)
        raised: list[Alert] = []
        for model, version in seen:
            try:
                raised += await self._evaluate_drift(policies[model], version, start, end)
            except Exception as error:  # one version's trouble (a deleted version, ingest down) spares the rest
                _log.warning("drift evaluation of a version failed", model=model, version=version, error=str(error))
            try:
                raised += await self._evaluate_accuracy(policies[model], version, start, end)
            except Exception as error:  # a lost database: the next round tries again
                _log.warning("accuracy evaluation of a version failed", model=model, version=version, error=str(error))
        return raised

    async def _evaluate_drift(self, policy: ModelPolicy, version: int, start: int, end: int) -> list[Alert]:
        lineage = await self._upstream.lineage(policy.model, version, "model_version")
        if not lineage.dataset_version:
            return []  # no training data to compare with (a policy for its accuracy only)
        result = await self._measure(policy.model, version, lineage, start, end, "psi", policy)
        if result is None or result.sample_count < self._min_samples:
            return []
        return await self._judge(policy, lineage, result, rearm=True)

    async def _judge(self, policy: ModelPolicy, lineage: Lineage, result: DriftResult, *, rearm: bool) -> list[Alert]:
        async with self._judging:
            state = await self._runner.read(self._policies.get_state, result.model, result.version)
            if not result.drifted:
                if rearm and state.breached:
                    await self._runner.write(self._policies.put_state, replace(state, breached=False, training_job=""))
                    _log.info("drift breach ended", model_version=result.model_version)
                return []
            if not state.breached:
                breach = replace(state, breached=True, breaches=state.breaches + 1, training_job="")
                outcome = ""
                if policy.retrain_on_drift:
                    job, outcome = await self._retrain(lineage, breach)
                    breach = replace(breach, training_job=job)
                return [await self._raise(breach, result.summary(), outcome)]
            if policy.retrain_on_drift and not state.training_job:
                job, outcome = await self._retrain(lineage, state)
                if job:
                    message = f"{result.summary()}; the breach continues and retraining had not started"
                    return [await self._raise(replace(state, training_job=job), message, outcome)]
            return []

    # ---------------------------------------------------------------- accuracy

    async def _evaluate_accuracy(self, policy: ModelPolicy, version: int, start: int, end: int) -> list[Alert]:
        """Judge a version's accuracy in ``[start, end)`` against ``policy.min_accuracy`` (0: not checked)."""
        model = policy.model
        if policy.min_accuracy <= 0:
            # Not checked (any more): a breach recorded under an earlier floor ends.
            async with self._judging:
                state = await self._runner.read(self._policies.get_accuracy_state, model, version)
                if state.breached:
                    await self._runner.write(self._policies.put_accuracy_state, replace(state, breached=False))
            return []

        def read() -> Performance:
            rows = self._inferences.labeled(model, version, "", start, end)
            pairs = [(json.loads(outputs), json.loads(truth)) for outputs, truth in rows]
            # Classification only (outputs named ``label``): regressors have no accuracy.
            return measure([(outputs, truth) for outputs, truth in pairs if "label" in outputs])

        performance = await self._runner.read(read)
        if performance.labeled_count < self._min_labels:
            return []
        name = f"models/{model}/versions/{version}"
        async with self._judging:
            state = await self._runner.read(self._policies.get_accuracy_state, model, version)
            if performance.accuracy >= policy.min_accuracy:
                if state.breached:
                    await self._runner.write(self._policies.put_accuracy_state, replace(state, breached=False))
                    _log.info(
                        "accuracy breach ended",
                        model_version=name,
                        accuracy=performance.accuracy,
                        minimum=policy.min_accuracy,
                    )
                return []
            if state.breached:
                return []
            right = round(performance.accuracy * performance.labeled_count)
            message = (
                f"{name}: accuracy {performance.accuracy:.4g} ({right} of {performance.labeled_count} "
                f"labelled rows right) is below the policy's min_accuracy {policy.min_accuracy:g} "
                f"in the last {self._window_seconds} s"
            )
            alert = Alert(
                sequence=0,  # assigned by the store
                kind=AlertKind.PERFORMANCE,
                slo="",
                model_version=name,
                deployment="",
                message=message,
                action=BreachAction.ALERT,
                action_result="",
                create_time_ns=self._clock(),
            )
            breach = replace(state, breached=True, breaches=state.breaches + 1)
            stored = await self._runner.write(self._policies.record_accuracy_breach, breach, alert)
        _log.warning(
            "accuracy breach",
            model_version=name,
            sequence=stored.sequence,
            accuracy=performance.accuracy,
            minimum=policy.min_accuracy,
        )
        metrics.observe_alert("performance")
        self._on_alert()
        return [stored]

    # ---------------------------------------------------------------- retraining

    async def _retrain(self, lineage: Lineage, state: DriftState) -> tuple[str, str]:
        """(job name or "", the alert's action_result)."""
        if not lineage.training_job:
            return "", "error: the version's lineage names no training job to repeat"
        request_id = f"ferry-monitor-drift-{state.model}-{state.version}-{state.breaches}"
        try:
            job, dataset_version = await self._upstream.retrain(lineage.training_job, request_id)
        except Exception as error:  # recorded on the alert: the breach is still worth raising
            _log.warning("retraining on drift failed", model=state.model, version=state.version, error=str(error))
            return "", f"error: {error}"
        return job, f"{job} started on {dataset_version}"

    async def _raise(self, state: DriftState, message: str, outcome: str) -> Alert:
        alert = Alert(
            sequence=0,  # assigned by the store
            kind=AlertKind.DRIFT,
            slo="",
            model_version=f"models/{state.model}/versions/{state.version}",
            deployment="",
            message=message,
            action=BreachAction.ALERT,
            action_result=outcome,
            create_time_ns=self._clock(),
        )
        stored = await self._runner.write(self._policies.record_breach, state, alert)
        _log.warning("drift breach", model_version=alert.model_version, sequence=stored.sequence, action_result=outcome)
        metrics.observe_alert("drift")
        self._on_alert()
        return stored
