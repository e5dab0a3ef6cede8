"""Form checks of fields every service shares: free text, labels, request ids.

Each raises :class:`~ferry_common.errors.InvalidArgument` naming the field and a short
prefix of the value (never the whole value: see :func:`ferry_common.names.shorten`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ferry_common.errors import InvalidArgument
from ferry_common.names import shorten

__all__ = [
    "MAX_DESCRIPTION",
    "MAX_LABELS",
    "MAX_LABEL_VALUE",
    "MAX_NAME",
    "labels",
    "name",
    "request_id",
    "text",
]

_LABEL_KEY = re.compile(r"[A-Za-z0-9_.-]{1,63}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
MAX_DESCRIPTION = 10_000
MAX_LABEL_VALUE = 256
MAX_LABELS = 64
# Column and tensor names.
MAX_NAME = 256


def text(field: str, value: str, limit: int = MAX_DESCRIPTION) -> str:
    """Free text of at most ``limit`` characters."""
    if len(value) > limit:
        raise InvalidArgument(f"{field}: {len(value)} characters, at most {limit}", field=field)
    return value


def name(field: str, value: str, limit: int = MAX_NAME) -> str:
    """A name (column, tensor): 1 to ``limit`` characters, no control characters."""
    if not value or len(value) > limit or any(ord(c) < 32 for c in value):
        raise InvalidArgument(
            f"{field}: {shorten(value)} must be 1-{limit} characters without control characters", field=field
        )
    return value


def labels(field: str, values: Mapping[str, str]) -> dict[str, str]:
    """At most 64 labels; keys of 1-63 letters, digits, ``_ . -``; values up to 256 characters without ``"``."""
    if len(values) > MAX_LABELS:
        raise InvalidArgument(f"{field}: {len(values)} labels, at most {MAX_LABELS}", field=field)
    for key, value in values.items():
        if not _LABEL_KEY.fullmatch(key):
            raise InvalidArgument(
                f"{field}: key {shorten(key)} is not a label key (1-63 letters, digits, '_', '.', '-')", field=field
            )
        if len(value) > MAX_LABEL_VALUE or '"' in value:
            raise InvalidArgument(
                f"{field}[{key!r}]: value {shorten(value, 40)} must be at most {MAX_LABEL_VALUE} characters "
                "without '\"'",
                field=field,
            )
    return dict(values)


def request_id(field: str, value: str) -> str:
    """Empty, or 1-128 letters, digits, ``_ . : -``."""
    if value and not _REQUEST_ID.fullmatch(value):
        raise InvalidArgument(
            f"{field}: {shorten(value, 40)} is not a request id (1-128 letters, digits, '_', '.', ':', '-')",
            field=field,
        )
    return value
