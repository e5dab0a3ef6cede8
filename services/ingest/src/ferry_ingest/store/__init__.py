"""Ingest persistence: the store interface and its SQLAlchemy implementation."""

from ferry_ingest.store.base import DatasetStore, SweepObjects, WriteObjects

__all__ = ["DatasetStore", "SweepObjects", "WriteObjects"]
