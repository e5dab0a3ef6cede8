"""Page tokens bound to the request that produced them (AIP-158), shared by every List.

A token is opaque to callers: base64 of a small JSON object holding the request's
*fingerprint* (its filter, parent, page size: whatever decides which items a page
holds) and the *position* after the last item returned. Replaying a token with another
filter or page size is INVALID_ARGUMENT naming ``page_token``, never a silently wrong
page. Positions are range-checked before they reach SQL.

    page = Pages(request.page_token, {"model": model_id, "filter": labels, "page_size": size})
    after = page.position_str("after")
    items = store.list(..., after, size + 1)
    kept, token = page.next(items, size, lambda last: {"after": last.model_id})
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ferry_common.errors import InvalidArgument
from ferry_common.names import MAX_VERSION, shorten

__all__ = ["MAX_TOKEN_CHARS", "Pages", "canonical"]

T = TypeVar("T")
MAX_TOKEN_CHARS = 4096


def canonical(values: Mapping[str, str]) -> str:
    """A map as canonical JSON (sorted keys), for fingerprints."""
    return json.dumps(dict(sorted(values.items())), separators=(",", ":"))


class Pages:
    """The position a page token carries, checked against the request it is used with."""

    def __init__(self, page_token: str, fingerprint: Mapping[str, Any]) -> None:
        self._token = page_token
        self._fingerprint = dict(fingerprint)
        self._position = self._decode(page_token) if page_token else {}
        for key, value in self._fingerprint.items():
            if self._position and self._position.get(key) != value:
                raise InvalidArgument(
                    f"page_token: {shorten(page_token)} was issued for a different {key} "
                    "(use it with the same request)",
                    field="page_token",
                )

    def _invalid(self) -> InvalidArgument:
        return InvalidArgument(
            f"page_token: {shorten(self._token)} is not a token this service issued", field="page_token"
        )

    def _decode(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_CHARS:
            raise self._invalid()
        try:
            value = json.loads(base64.urlsafe_b64decode(token.encode()))
        except (ValueError, TypeError, RecursionError):
            raise self._invalid() from None
        if not isinstance(value, dict):
            raise self._invalid()
        return value

    def position_int(self, key: str) -> int | None:
        """An integer of the position (``None`` on the first page), within SQL's BIGINT."""
        value = self._position.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not -MAX_VERSION <= value <= MAX_VERSION:
            raise self._invalid()
        return value

    def position_str(self, key: str) -> str | None:
        """A string of the position (``None`` on the first page)."""
        value = self._position.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > 1024:
            raise self._invalid()
        return value

    def next(self, items: list[T], page_size: int, position_of: Callable[[T], dict[str, Any]]) -> tuple[list[T], str]:
        """The page (``items`` holds up to ``page_size + 1``) and the next page's token ("" at the end)."""
        if len(items) <= page_size:
            return items, ""
        kept = items[:page_size]
        position = {**self._fingerprint, **position_of(kept[-1])}
        return kept, base64.urlsafe_b64encode(json.dumps(position, sort_keys=True).encode()).decode()
