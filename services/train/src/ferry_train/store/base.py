"""The train store interface, and the job and event records it hands out.

Methods are synchronous and each runs in one transaction; the service calls them through
:class:`~ferry_common.database.DatabaseRunner`, the worker process directly. They raise
the domain errors of ``ferry_common.errors`` with messages that name the job.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ferry_train.spec import JobSpec

__all__ = [
    "ACTIVE",
    "CANCELLED",
    "CANCELLING",
    "FAILED",
    "QUEUED",
    "RUNNING",
    "STATES",
    "SUCCEEDED",
    "TERMINAL",
    "TRANSITIONS",
    "Job",
    "JobEvent",
    "TrainStore",
]

QUEUED = "QUEUED"
RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
CANCELLING = "CANCELLING"
CANCELLED = "CANCELLED"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLING, CANCELLED)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
# A worker is (or may be) attached.
ACTIVE = frozenset({RUNNING, CANCELLING})

# The life of a job. RUNNING -> QUEUED re-queues a job whose service died under it;
# FAILED/CANCELLED -> QUEUED is a resume; a job cancelled while finishing may still
# succeed or fail before its worker stops.
TRANSITIONS: Mapping[str, frozenset[str]] = {
    QUEUED: frozenset({RUNNING, CANCELLED}),
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELLING, QUEUED}),
    CANCELLING: frozenset({CANCELLED, FAILED, SUCCEEDED}),
    FAILED: frozenset({QUEUED}),
    CANCELLED: frozenset({QUEUED}),
    SUCCEEDED: frozenset(),
}


@dataclass(frozen=True)
class Job:
    """A training job as stored."""

    job_id: str
    spec: JobSpec
    state: str
    error: str = ""
    attempt: int = 0
    current_epoch: int = 0
    metrics: Mapping[str, float] = field(default_factory=dict)
    model_version: str = ""
    checkpoint_uri: str = ""
    last_sequence: int = 0
    create_time: datetime.datetime | None = None
    start_time: datetime.datetime | None = None
    end_time: datetime.datetime | None = None
    environment: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobEvent:
    """One event of a job: ``kind`` is ``state``, ``epoch`` or ``log``.

    Payloads: state ``{"state", "message"}``; epoch ``{"epoch", "metrics"}``; log
    ``{"level", "message"}``.
    """

    job_id: str
    sequence: int
    time: datetime.datetime
    kind: str
    payload: Mapping[str, Any]


class TrainStore(Protocol):
    """Training jobs and their gap-free event logs."""

    def create(self, job_id: str, spec: JobSpec, request_id: str | None) -> tuple[Job, bool]:
        """Create a QUEUED job (and its first state event); returns it and whether it is new.

        A known ``request_id`` returns the job it created. AlreadyExists when ``job_id`` is taken.
        """

    def get(self, job_id: str) -> Job:
        """A job (NotFound)."""

    def list_jobs(
        self,
        states: frozenset[str],
        register_model: str | None,
        after: tuple[datetime.datetime, str] | None,
        limit: int,
    ) -> list[Job]:
        """Jobs newest first, after the ``(create_time, job_id)`` position, filtered."""

    def append_event(self, job_id: str, kind: str, payload: Mapping[str, Any]) -> int:
        """Append an event; returns its sequence."""

    def set_state(
        self,
        job_id: str,
        state: str,
        *,
        message: str = "",
        expected: frozenset[str] | None = None,
        error: str | None = None,
        model_version: str | None = None,
        metrics: Mapping[str, float] | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> Job:
        """Move a job to ``state`` (FailedPrecondition unless :data:`TRANSITIONS` and
        ``expected`` allow it), recording a state event."""

    def record_epoch(self, job_id: str, epoch: int, metrics: Mapping[str, float], checkpoint_uri: str) -> int:
        """An epoch finished: update the job's epoch, metrics and checkpoint; returns the event's sequence."""

    def next_queued(self, limit: int) -> list[Job]:
        """The oldest QUEUED jobs, oldest first."""

    def claim(self, job_id: str) -> Job | None:
        """QUEUED -> RUNNING with ``attempt + 1``; ``None`` when it is no longer queued."""

    def active(self) -> list[Job]:
        """Jobs RUNNING or CANCELLING."""

    def events_since(self, job_id: str, since_sequence: int, limit: int) -> list[JobEvent]:
        """Events with a sequence above ``since_sequence``, in order."""
