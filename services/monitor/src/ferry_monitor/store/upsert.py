"""One row by its key, inserted or replaced: the store's SLOs, policies and breach states."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

__all__ = ["upsert"]


def upsert(session: Session, table: sa.Table, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    """Update the row with ``key`` (column -> value) to ``values``, or insert it when absent.

    An UPDATE first, then an INSERT when it touched no row: portable across SQLite and
    PostgreSQL without dialect-specific ON CONFLICT, inside the caller's transaction.
    """
    where = sa.and_(*(table.c[column] == value for column, value in key.items()))
    updated = session.execute(sa.update(table).where(where).values(**values))
    if not getattr(updated, "rowcount", 0):
        session.execute(sa.insert(table).values(**key, **values))
