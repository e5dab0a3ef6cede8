"""Monitor's tables (SQLAlchemy Core). Rows stay apart from domain objects.

- ``latency_buckets``: one row per (bucket, series): exact count, error count and max,
  and the DDSketch of the durations (``ferry_monitor.sketches`` bytes). Unique on the
  bucket and the series key; indexed by bucket for window queries and the retention sweep.
- ``inference_records``: one row per sampled inference (RecordInferences), with its ground
  truth once RecordFeedback brings it. Indexed by request id (feedback), by model version
  and time (GetPerformance) and by time (the retention sweep).
- ``slos``: one row per objective (SetSlo), with whether it is breached now.
- ``alerts``: one row per alert; ``sequence`` is the key, gap-free, assigned in the
  inserting transaction.
- ``model_policies``: one row per model with a policy (SetModelPolicy).
- ``drift_states``: one row per model version whose drift was judged with a policy: whether
  it is in a breach, how many breaches it had, the training job started for the current one.
- ``accuracy_states``: one row per model version whose accuracy was judged against its
  policy's ``min_accuracy``: whether it is in an accuracy breach, how many it had.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "accuracy_states",
    "alerts",
    "drift_states",
    "inference_records",
    "latency_buckets",
    "metadata",
    "model_policies",
    "slos",
]

metadata = sa.MetaData()

latency_buckets = sa.Table(
    "latency_buckets",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    # Seconds since the epoch, a multiple of domain.BUCKET_SECONDS.
    sa.Column("bucket_start", sa.BigInteger(), nullable=False),
    sa.Column("service", sa.String(256), nullable=False),
    sa.Column("method", sa.String(256), nullable=False),
    sa.Column("deployment", sa.String(256), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.BigInteger(), nullable=False),
    sa.Column("route", sa.String(256), nullable=False),
    sa.Column("count", sa.BigInteger(), nullable=False),
    sa.Column("error_count", sa.BigInteger(), nullable=False),
    sa.Column("max_ms", sa.Float(), nullable=False),
    sa.Column("sketch", sa.LargeBinary(), nullable=False),
    sa.UniqueConstraint(
        "bucket_start", "service", "method", "deployment", "model", "version", "route", name="uq_latency_buckets_series"
    ),
    sa.Index("ix_latency_buckets_bucket_start", "bucket_start"),
)

inference_records = sa.Table(
    "inference_records",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(256), nullable=False),
    sa.Column("deployment", sa.String(63), nullable=False),
    sa.Column("model", sa.String(63), nullable=False),
    sa.Column("version", sa.BigInteger(), nullable=False),
    sa.Column("route", sa.String(16), nullable=False),
    # When serve answered, nanoseconds since the epoch.
    sa.Column("time_ns", sa.BigInteger(), nullable=False),
    sa.Column("latency_ms", sa.Float(), nullable=False),
    # JSON objects: values by input / output name.
    sa.Column("inputs", sa.Text(), nullable=False),
    sa.Column("outputs", sa.Text(), nullable=False),
    # ferry.monitor.v1.ShadowComparison bytes; empty when none.
    sa.Column("shadow_comparison", sa.LargeBinary(), nullable=False),
    # JSON value; NULL until feedback arrives.
    sa.Column("ground_truth", sa.Text(), nullable=True),
    sa.Index("ix_inference_records_request_id", "request_id"),
    sa.Index("ix_inference_records_model_time", "model", "version", "time_ns"),
    sa.Index("ix_inference_records_time", "time_ns"),
)

slos = sa.Table(
    "slos",
    metadata,
    sa.Column("slo_id", sa.String(63), primary_key=True),
    sa.Column("service", sa.String(256), nullable=False),
    sa.Column("method", sa.String(256), nullable=False),
    sa.Column("deployment", sa.String(256), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.BigInteger(), nullable=False),
    sa.Column("route", sa.String(256), nullable=False),
    sa.Column("percentile", sa.Float(), nullable=False),
    sa.Column("latency_threshold_ms", sa.Float(), nullable=False),
    sa.Column("max_error_rate", sa.Float(), nullable=False),
    sa.Column("window_seconds", sa.BigInteger(), nullable=False),
    sa.Column("min_count", sa.BigInteger(), nullable=False),
    # ferry_monitor.alerts.BreachAction value.
    sa.Column("action", sa.Integer(), nullable=False),
    sa.Column("breached", sa.Boolean(), nullable=False),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("sequence", sa.BigInteger(), primary_key=True, autoincrement=False),
    # ferry_monitor.alerts.AlertKind value.
    sa.Column("kind", sa.Integer(), nullable=False),
    sa.Column("slo", sa.String(256), nullable=False),
    sa.Column("model_version", sa.String(256), nullable=False),
    sa.Column("deployment", sa.String(256), nullable=False),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("action", sa.Integer(), nullable=False),
    sa.Column("action_result", sa.Text(), nullable=False),
    sa.Column("create_time_ns", sa.BigInteger(), nullable=False),
)

model_policies = sa.Table(
    "model_policies",
    metadata,
    sa.Column("model", sa.String(63), primary_key=True),
    sa.Column("drift_threshold", sa.Float(), nullable=False),
    sa.Column("retrain_on_drift", sa.Boolean(), nullable=False),
    sa.Column("min_accuracy", sa.Float(), nullable=False),
    sa.Column("update_time_ns", sa.BigInteger(), nullable=False),
)

drift_states = sa.Table(
    "drift_states",
    metadata,
    sa.Column("model", sa.String(63), primary_key=True),
    sa.Column("version", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("breached", sa.Boolean(), nullable=False),
    sa.Column("breaches", sa.BigInteger(), nullable=False),
    # trainingJobs/{job} started for the current breach; empty when none.
    sa.Column("training_job", sa.String(256), nullable=False),
)

accuracy_states = sa.Table(
    "accuracy_states",
    metadata,
    sa.Column("model", sa.String(63), primary_key=True),
    sa.Column("version", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("breached", sa.Boolean(), nullable=False),
    sa.Column("breaches", sa.BigInteger(), nullable=False),
)
