"""Model policies: what monitor does for one model (``SetModelPolicy`` / ``GetModelPolicy``). Imports no grpc.

A policy is kept per model id (``policies/{model}``) and applies to every version of it:

- ``drift_threshold``: the PSI at or above which a numeric feature counts as drifted
  (default :data:`DEFAULT_DRIFT_THRESHOLD`, 0.2; 0 on the wire means the default).
  The other statistics keep their documented defaults (``ferry_monitor.drift``).
- ``retrain_on_drift``: a drift breach of a version starts a training job with the spec
  of the job that produced it, on the newest version of the same dataset.
- ``min_accuracy``: a fraction in [0, 1] (0 = not checked). The periodic evaluation
  (``ferry_monitor.drift_service``) measures each recently active version's accuracy from
  the ground truth RecordFeedback attached to its records in the window (the rows of
  outputs named ``label``, as GetPerformance counts them); with at least
  ``FERRY_MONITOR_ACCURACY_MIN_LABELS`` such rows and an accuracy below the minimum, the
  version is in an accuracy breach: one ``ALERT_KIND_PERFORMANCE`` alert per breach
  (:class:`AccuracyState`, persisted), re-armed when a later evaluation measures it at or
  above the minimum (or finds ``min_accuracy`` set to 0). It only alerts:
  ``retrain_on_drift`` is about drift and starts no job on an accuracy breach. Regression
  versions (outputs named ``prediction``: MAE and RMSE) have no accuracy and are never
  judged against it.

A model without a stored policy has the default one (threshold 0.2, no retraining, no
accuracy floor), and only models with a stored policy are evaluated periodically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ferry_common.errors import InvalidArgument

__all__ = ["DEFAULT_DRIFT_THRESHOLD", "MAX_DRIFT_THRESHOLD", "AccuracyState", "DriftState", "ModelPolicy"]

DEFAULT_DRIFT_THRESHOLD = 0.2
"""PSI at or above which a numeric feature drifted, for models without their own threshold."""

MAX_DRIFT_THRESHOLD = 100.0
"""The largest PSI threshold accepted (PSI with fractions floored at 1e-4 stays far below it)."""


@dataclass(frozen=True)
class ModelPolicy:
    """The policy of one model (``model`` is its id)."""

    model: str
    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD
    retrain_on_drift: bool = False
    min_accuracy: float = 0.0

    @property
    def name(self) -> str:
        """``policies/{model}``."""
        return f"policies/{self.model}"

    @classmethod
    def checked(
        cls, model: str, drift_threshold: float, retrain_on_drift: bool, min_accuracy: float, field: str = "policy"
    ) -> ModelPolicy:
        """A policy from request values; 0 thresholds become the defaults.

        Raises:
            InvalidArgument: naming ``policy.drift_threshold`` (not a number in [0, 100])
                or ``policy.min_accuracy`` (not a fraction in [0, 1]).
        """
        if not math.isfinite(drift_threshold) or not 0 <= drift_threshold <= MAX_DRIFT_THRESHOLD:
            raise InvalidArgument(
                f"{field}.drift_threshold: {drift_threshold!r} is not a PSI threshold between 0 and "
                f"{MAX_DRIFT_THRESHOLD:g} (0 = the default {DEFAULT_DRIFT_THRESHOLD})",
                field=f"{field}.drift_threshold",
            )
        if not math.isfinite(min_accuracy) or not 0 <= min_accuracy <= 1:
            raise InvalidArgument(
                f"{field}.min_accuracy: {min_accuracy!r} is not a fraction between 0 and 1 (0 = not checked)",
                field=f"{field}.min_accuracy",
            )
        return cls(
            model=model,
            drift_threshold=drift_threshold or DEFAULT_DRIFT_THRESHOLD,
            retrain_on_drift=retrain_on_drift,
            min_accuracy=min_accuracy,
        )


@dataclass(frozen=True)
class DriftState:
    """Whether a model version is in a drift breach now, and what was done about it.

    Attributes:
        model: the model id.
        version: the version number.
        breached: in a breach (an alert was raised and no evaluation has found it clean since).
        breaches: how many breaches this version has had (numbers the retrain requests, so
            one breach starts one job even if monitor restarts half-way).
        training_job: ``trainingJobs/{job}`` started for the current breach; empty if none.
    """

    model: str
    version: int
    breached: bool = False
    breaches: int = 0
    training_job: str = ""


@dataclass(frozen=True)
class AccuracyState:
    """Whether a model version is in an accuracy breach now (accuracy below ``min_accuracy``).

    Attributes:
        model: the model id.
        version: the version number.
        breached: in a breach (an alert was raised and no evaluation has measured the
            accuracy at or above the minimum since).
        breaches: how many accuracy breaches this version has had.
    """

    model: str
    version: int
    breached: bool = False
    breaches: int = 0
