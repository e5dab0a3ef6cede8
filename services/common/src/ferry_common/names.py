"""Ids and resource names shared by every service (DESIGN.md); page tokens are in :mod:`ferry_common.pagination`.

One validator for ids: ``^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`` (models, datasets,
deployments, aliases). Aliases start with a letter, so ``3`` is always a version.
"""

from __future__ import annotations

import re

from ferry_common.errors import InvalidArgument

__all__ = [
    "ID_PATTERN",
    "MAX_VERSION",
    "page_size",
    "parse_label_filter",
    "parse_name",
    "parse_version_name",
    "parse_version_number",
    "shorten",
    "validate_id",
]

# Always used with ``fullmatch``: ``match`` with ``$`` lets a trailing newline through.
ID_PATTERN = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
# ASCII digits only: ``str.isdigit`` and ``\d`` also accept '²' and '٣'.
_VERSION_NUMBER = re.compile(r"[0-9]{1,18}")
# Version numbers and other integers go into BIGINT columns.
MAX_VERSION = 2**63 - 1
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# How much of a caller's value an error message echoes: gRPC clients refuse trailing
# metadata above 8 KB by default, and a message that big would hide the real status.
ECHO_CHARS = 80


def shorten(value: object, limit: int = ECHO_CHARS) -> str:
    """``repr`` of ``value`` cut to about ``limit`` characters, for error messages.

    A long value keeps its start and its end (where a path names its file), with the
    length in between: ``'file:///data/...s/nope.csv' (12345 characters)``.
    """
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(text) if isinstance(value, str) else text
    head, tail = text[: limit * 2 // 3], text[-(limit // 3) :]
    cut = f"{head!r}...{tail!r}" if isinstance(value, str) else f"{head}...{tail}"
    return f"{cut} ({len(text)} characters)"


def validate_id(field: str, value: str) -> str:
    """Return ``value`` if it is a valid id, else raise INVALID_ARGUMENT naming ``field``."""
    if not ID_PATTERN.fullmatch(value):
        raise InvalidArgument(
            f"{field}: {shorten(value)} is not a valid id (lowercase letters, digits and hyphens, "
            "1-63 characters, starting with a letter and not ending with a hyphen)",
            field=field,
        )
    return value


def parse_version_number(field: str, value: str, *, name: str = "", maximum: int = MAX_VERSION) -> int:
    """A version segment: ASCII digits, from 1 to ``maximum`` (what the service's columns hold)."""
    where = f"{shorten(name)}: " if name else ""
    if not _VERSION_NUMBER.fullmatch(value) or int(value) < 1:
        raise InvalidArgument(f"{field}: {where}version {shorten(value)} is not a positive number", field=field)
    if int(value) > maximum:
        raise InvalidArgument(f"{field}: {where}version {value} is above the largest ({maximum})", field=field)
    return int(value)


def parse_name(field: str, value: str, pattern: str) -> dict[str, str]:
    """Split a resource name such as ``models/churn/versions/3``.

    ``pattern`` uses ``{var}`` segments: ``"models/{model}/versions/{version}"``.
    Every ``{var}`` except ``{version}`` is checked with :func:`validate_id`.
    """
    parts = value.split("/")
    template = pattern.split("/")
    if len(parts) != len(template):
        raise InvalidArgument(f"{field}: {shorten(value)} is not of the form {pattern}", field=field)
    found: dict[str, str] = {}
    for part, expected in zip(parts, template, strict=True):
        if expected.startswith("{"):
            key = expected[1:-1]
            if key != "version":
                try:
                    validate_id(field, part)
                except InvalidArgument:
                    raise InvalidArgument(
                        f"{field}: {shorten(value)} is not of the form {pattern} "
                        f"({key} {shorten(part)} is not a valid id)",
                        field=field,
                    ) from None
            found[key] = part
        elif part != expected:
            raise InvalidArgument(f"{field}: {shorten(value)} is not of the form {pattern}", field=field)
    return found


def parse_version_name(
    field: str, name: str, collection: str, *, latest: bool = True, maximum: int = MAX_VERSION
) -> tuple[str, int | None]:
    """``<collection>/{id}/versions/{version}`` -> (id, number); ``latest`` gives ``None`` when allowed.

    ``collection`` is ``models`` or ``datasets``. The version is ASCII digits from 1 to
    ``maximum``, or the word ``latest`` (the newest existing version) where ``latest``
    is True; anything else is INVALID_ARGUMENT naming ``field``.
    """
    parts = parse_name(field, name, f"{collection}/{{id}}/versions/{{version}}")
    if parts["version"] == "latest" and latest:
        return parts["id"], None
    return parts["id"], parse_version_number(field, parts["version"], name=name, maximum=maximum)


def page_size(value: int) -> int:
    """The page size to use: the default for 0, capped at the maximum."""
    if value < 0:
        raise InvalidArgument(f"page_size: {value} must not be negative", field="page_size")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


_LABEL_TERM = re.compile(r'labels\.([A-Za-z0-9_.-]+)\s*=\s*"?([^"]*)"?')


def parse_label_filter(value: str) -> dict[str, str]:
    """Parse ``labels.team=risk AND labels.tier="gold"`` into ``{"team": "risk", ...}``."""
    labels: dict[str, str] = {}
    if not value.strip():
        return labels
    for term in re.split(r"\s+AND\s+", value.strip()):
        match = _LABEL_TERM.fullmatch(term.strip())
        if not match:
            raise InvalidArgument(
                f"filter: {shorten(term)} is not a label term such as labels.team=risk (terms joined by AND)",
                field="filter",
            )
        labels[match[1]] = match[2]
    return labels
