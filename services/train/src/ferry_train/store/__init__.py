"""Train's job store: the Protocol, its SQL implementation and the database it opens."""

from ferry_train.store.base import Job, JobEvent, TrainStore
from ferry_train.store.database import Database, open_database
from ferry_train.store.sql import SqlTrainStore

__all__ = ["Database", "Job", "JobEvent", "SqlTrainStore", "TrainStore", "open_database"]
