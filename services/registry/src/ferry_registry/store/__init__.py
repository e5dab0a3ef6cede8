"""Registry persistence: the store interface and its SQLAlchemy implementation."""

from ferry_registry.store.base import RegistryStore
from ferry_registry.store.database import Database, DatabaseRunner, open_database
from ferry_registry.store.sql import SqlRegistryStore

__all__ = ["Database", "DatabaseRunner", "RegistryStore", "SqlRegistryStore", "open_database"]
