"""The form of a custom model's entry point and ``init_args``, checked without importing anything.

The import itself (and the LightningModule check) is :mod:`ferry_train.pipeline.custom`'s.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Mapping
from typing import Any

from ferry_common.errors import InvalidArgument

__all__ = ["ENTRY_POINT_FIELD", "INIT_ARGS_FIELD", "RESERVED_ARGUMENTS", "decode_init_args", "parse_entry_point"]

ENTRY_POINT_FIELD = "training_job.model.custom.entry_point"
INIT_ARGS_FIELD = "training_job.model.custom.init_args"
RESERVED_ARGUMENTS = ("n_inputs", "n_outputs", "task", "learning_rate", "target_mean", "target_std")

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_ENTRY_POINT = re.compile(rf"({_DOTTED}):({_DOTTED})", re.ASCII)


def parse_entry_point(entry_point: str) -> tuple[str, str]:
    """``package.module:Class`` -> (module, attribute path); the form only, nothing imported."""
    match = _ENTRY_POINT.fullmatch(entry_point)
    if match is None or len(entry_point) > 200:
        raise InvalidArgument(
            f"{ENTRY_POINT_FIELD}: {entry_point[:200]!r} is not of the form package.module:ClassName",
            field=ENTRY_POINT_FIELD,
        )
    return match[1], match[2]


def decode_init_args(init_args: Mapping[str, str]) -> dict[str, Any]:
    """Each value is JSON text (``"64"``, ``"[32, 16]"``, ``"\\"relu\\""``); keys are argument names."""
    decoded: dict[str, Any] = {}
    for key in sorted(init_args):
        field = f"{INIT_ARGS_FIELD}[{key[:64]!r}]"
        if not key.isidentifier() or keyword.iskeyword(key) or len(key) > 64:
            raise InvalidArgument(f"{field}: {key[:64]!r} is not a Python argument name", field=field)
        if key in RESERVED_ARGUMENTS:
            raise InvalidArgument(
                f"{field}: {key!r} is set by Ferry from the data and the hyper-parameters "
                f"(reserved: {', '.join(RESERVED_ARGUMENTS)})",
                field=field,
            )
        text = init_args[key]
        if len(text) > 10_000:
            raise InvalidArgument(f"{field}: the value is longer than 10000 characters", field=field)
        try:
            decoded[key] = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes
            raise InvalidArgument(
                f"{field}: {text[:80]!r} is not JSON (write strings quoted: '\"relu\"')", field=field
            ) from None
    return decoded
