"""Helpers shared by the profile tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from ferry_profile import Profile, ProfileBuilder


def _profile_of(table: pa.Table, batch_rows: int = 50_000, **kwargs: Any) -> Profile:
    builder = ProfileBuilder(table.schema, **kwargs)
    for batch in table.to_batches(max_chunksize=batch_rows):
        builder.add(batch)
    return builder.result()


@pytest.fixture
def profile_of() -> Callable[..., Profile]:
    """``profile_of(table, batch_rows=50_000, **builder_kwargs)``: the table's profile, batch by batch."""
    return _profile_of
