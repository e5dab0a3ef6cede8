"""Ids, resource names and page tokens shared by every service (DESIGN.md).

One validator for ids: ``^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`` (models, datasets,
deployments, aliases). Aliases start with a letter, so ``3`` is always a version.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from ferry_common.errors import InvalidArgument

__all__ = [
    "ID_PATTERN",
    "decode_page_token",
    "encode_page_token",
    "page_size",
    "parse_label_filter",
    "parse_name",
    "validate_id",
]

ID_PATTERN = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def validate_id(field: str, value: str) -> str:
    """Return ``value`` if it is a valid id, else raise INVALID_ARGUMENT naming ``field``."""
    if not ID_PATTERN.match(value):
        raise InvalidArgument(
            f"{field}: {value!r} is not a valid id (lowercase letters, digits and hyphens, "
            "1-63 characters, starting with a letter and not ending with a hyphen)",
            field=field,
        )
    return value


def parse_name(field: str, value: str, pattern: str) -> dict[str, str]:
    """Split a resource name such as ``models/churn/versions/3``.

    ``pattern`` uses ``{var}`` segments: ``"models/{model}/versions/{version}"``.
    Every ``{var}`` except ``{version}`` is checked with :func:`validate_id`.
    """
    parts = value.split("/")
    template = pattern.split("/")
    if len(parts) != len(template):
        raise InvalidArgument(f"{field}: {value!r} is not of the form {pattern}", field=field)
    found: dict[str, str] = {}
    for part, expected in zip(parts, template, strict=True):
        if expected.startswith("{"):
            key = expected[1:-1]
            if key != "version":
                try:
                    validate_id(field, part)
                except InvalidArgument:
                    raise InvalidArgument(
                        f"{field}: {value!r} is not of the form {pattern} ({key} {part!r} is not a valid id)",
                        field=field,
                    ) from None
            found[key] = part
        elif part != expected:
            raise InvalidArgument(f"{field}: {value!r} is not of the form {pattern}", field=field)
    return found


def page_size(value: int) -> int:
    if value < 0:
        raise InvalidArgument(f"page_size: {value} must not be negative", field="page_size")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(position: dict[str, Any]) -> str:
    """An opaque token for the position after the last item returned."""
    return base64.urlsafe_b64encode(json.dumps(position, sort_keys=True).encode()).decode()


def decode_page_token(token: str) -> dict[str, Any] | None:
    if not token:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError):
        raise InvalidArgument(f"page_token: {token!r} is not a token this service issued", field="page_token") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"page_token: {token!r} is not a token this service issued", field="page_token")
    return value


_LABEL_TERM = re.compile(r'^labels\.([A-Za-z0-9_.-]+)\s*=\s*"?([^"]*)"?$')


def parse_label_filter(value: str) -> dict[str, str]:
    """Parse ``labels.team=risk AND labels.tier="gold"`` into ``{"team": "risk", ...}``."""
    labels: dict[str, str] = {}
    if not value.strip():
        return labels
    for term in re.split(r"\s+AND\s+", value.strip()):
        match = _LABEL_TERM.match(term.strip())
        if not match:
            raise InvalidArgument(
                f"filter: {term!r} is not a label term such as labels.team=risk (terms joined by AND)",
                field="filter",
            )
        labels[match[1]] = match[2]
    return labels
