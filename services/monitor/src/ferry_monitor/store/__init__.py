"""Monitor's store: the Protocol, its SQL implementation and the database it opens."""

from ferry_monitor.store.alerts import SqlAlertStore
from ferry_monitor.store.base import AlertStore, InferenceStore, LatencyStore
from ferry_monitor.store.database import Database, open_database
from ferry_monitor.store.inferences import SqlInferenceStore
from ferry_monitor.store.policies import SqlPolicyStore
from ferry_monitor.store.sql import SqlLatencyStore

__all__ = [
    "AlertStore",
    "Database",
    "InferenceStore",
    "LatencyStore",
    "SqlAlertStore",
    "SqlInferenceStore",
    "SqlLatencyStore",
    "SqlPolicyStore",
    "open_database",
]
