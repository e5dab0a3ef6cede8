"""Serve's deployment store: the Protocol, its SQL implementation and the database it opens."""

from ferry_serve.store.base import Changes, ServeStore
from ferry_serve.store.database import Database, open_database
from ferry_serve.store.sql import SqlServeStore, etag_for

__all__ = ["Changes", "Database", "ServeStore", "SqlServeStore", "etag_for", "open_database"]
