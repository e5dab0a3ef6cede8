"""Resource names of the registry (AIP-122), for responses and error messages."""

from __future__ import annotations

__all__ = ["alias_name", "model_name", "version_name"]


def model_name(model_id: str) -> str:
    """``models/{model}``."""
    return f"models/{model_id}"


def version_name(model_id: str, version: int) -> str:
    """``models/{model}/versions/{version}``."""
    return f"models/{model_id}/versions/{version}"


def alias_name(model_id: str, alias_id: str) -> str:
    """``models/{model}/aliases/{alias}``."""
    return f"models/{model_id}/aliases/{alias_id}"
