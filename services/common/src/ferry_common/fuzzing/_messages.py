"""Strategies for whole request messages from their descriptors, and the classic-values sweep."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import Phase, find, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from ferry_common.fuzzing._values import (
    _INT_RANGES,
    _encode_token,
    enum_numbers,
    int_values,
    nasty_doubles,
    nasty_text,
)

M = TypeVar("M", bound=Message)
T = TypeVar("T")

# -------------------------------------------------------------------- message strategy


class _Omit:
    def __repr__(self) -> str:
        return "OMIT"


OMIT: Any = _Omit()
"""Drawn from an override strategy, leaves the field unset (not even its zero value)."""


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _is_synthetic_oneof(field: FieldDescriptor) -> bool:
    oneof = field.containing_oneof
    return oneof is not None and len(oneof.fields) == 1 and oneof.name == f"_{field.name}"


def _scalar(field: FieldDescriptor) -> SearchStrategy[Any]:
    kind = field.type
    if kind in _INT_RANGES:
        return int_values(*_INT_RANGES[kind])
    if kind == FieldDescriptor.TYPE_STRING:
        return nasty_text()
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.sampled_from((b"", b"\x00" * 9, b"\xff\xfe", b"PAR1")))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return nasty_doubles() if kind == FieldDescriptor.TYPE_DOUBLE else st.floats(width=32)
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return enum_numbers(field.enum_type)
    raise TypeError(f"no strategy for field {field.full_name} of type {kind}")


def _field_values(
    field: FieldDescriptor, overrides: Mapping[str, SearchStrategy[Any]], path: str, depth: int
) -> SearchStrategy[Any] | None:
    if path in overrides:
        return overrides[path]
    if _is_map(field):
        assert field.message_type is not None
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        values = _field_values(value_field, overrides, f"{path}.value", depth)
        if values is None:
            return None
        return st.dictionaries(_scalar(key_field), values, max_size=4)
    if field.message_type is not None:
        if depth <= 0:
            return None
        element: SearchStrategy[Any] = _message_values(field.message_type, overrides, f"{path}.", depth - 1)
    else:
        element = _scalar(field)
    return st.lists(element, max_size=4) if field.is_repeated else element


def _message_values(
    descriptor: Descriptor, overrides: Mapping[str, SearchStrategy[Any]], prefix: str, depth: int
) -> SearchStrategy[Message]:
    required: dict[str, SearchStrategy[Any]] = {}
    optional: dict[str, SearchStrategy[Any]] = {}
    oneofs: dict[str, list[SearchStrategy[tuple[str, Any]]]] = {}
    for field in descriptor.fields:
        path = prefix + field.name
        values = _field_values(field, overrides, path, depth)
        if values is None:
            continue
        if field.containing_oneof is not None and not _is_synthetic_oneof(field):
            member = st.tuples(st.just(field.name), values)
            oneofs.setdefault(field.containing_oneof.name, []).append(member)
        elif path in overrides:
            required[field.name] = values
        else:
            optional[field.name] = values
    for name, members in oneofs.items():
        required[f"oneof:{name}"] = st.one_of(st.none(), *members)
    message_class = GetMessageClass(descriptor)
    return st.fixed_dictionaries(required, optional=optional).map(lambda values: _build(message_class, values))


def _assign(message: Message, field: FieldDescriptor, value: Any) -> None:
    target = getattr(message, field.name)
    if _is_map(field):
        assert field.message_type is not None
        if field.message_type.fields_by_name["value"].message_type is not None:
            for key, item in value.items():
                target[key].CopyFrom(item)
        else:
            target.update(value)
    elif field.is_repeated:
        if field.message_type is not None:
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.extend(value)
    elif field.message_type is not None:
        target.CopyFrom(value)
    else:
        setattr(message, field.name, value)


def _build(message_class: type[Message], values: Mapping[str, Any]) -> Message:
    message = message_class()
    fields = cast(Descriptor, message_class.DESCRIPTOR).fields_by_name
    for key, value in values.items():
        if key.startswith("oneof:"):
            if value is None:
                continue
            key, value = value
        if value is OMIT:
            continue
        _assign(message, fields[key], value)
    return message


@dataclass(frozen=True)
class Field:
    """The values of one field: ``sane`` ones reach past validation, ``nasty`` ones should not."""

    sane: SearchStrategy[Any]
    nasty: SearchStrategy[Any]


class _Absent:
    pass


_ABSENT = _Absent()


def _below(path: str, overrides: Mapping[str, Field]) -> bool:
    return any(key.startswith(path + ".") for key in overrides)


def _paths(descriptor: Descriptor, overrides: Mapping[str, Field], prefix: str, depth: int) -> list[str]:
    """Every field path a single bad value may go to (not inside overridden or repeated fields)."""
    found: list[str] = []
    for field_ in descriptor.fields:
        path = prefix + field_.name
        found.append(path)
        nested = field_.message_type is not None and not field_.is_repeated
        if nested and path not in overrides and depth > 0:
            assert field_.message_type is not None
            found.extend(_paths(field_.message_type, overrides, path + ".", depth - 1))
    return found


def _targeted(
    draw: st.DrawFn, descriptor: Descriptor, overrides: Mapping[str, Field], prefix: str, depth: int, target: str
) -> Message:
    """Sane values everywhere but at ``target`` (``""``: nowhere), which gets a nasty one.

    Fields with no sane values of their own (no override at or below them) stay unset.
    """
    anything = {path: st.one_of(value.sane, value.nasty) for path, value in overrides.items()}
    chosen: dict[str, Any] = {}
    oneofs: dict[str, list[FieldDescriptor]] = {}
    for field_ in descriptor.fields:
        if field_.containing_oneof is not None and not _is_synthetic_oneof(field_):
            oneofs.setdefault(field_.containing_oneof.name, []).append(field_)
        else:
            chosen[field_.name] = _targeted_value(draw, field_, overrides, anything, prefix, depth, target)
    for members in oneofs.values():
        paths = {member.name: prefix + member.name for member in members}
        aimed = [m for m in members if target == paths[m.name] or target.startswith(paths[m.name] + ".")]
        sane = [m for m in members if paths[m.name] in overrides or _below(paths[m.name], overrides)]
        pool = aimed or sane
        if pool:
            member = draw(st.sampled_from(pool))
            chosen[member.name] = _targeted_value(draw, member, overrides, anything, prefix, depth, target)
    message = GetMessageClass(descriptor)()
    for name, value in chosen.items():
        if value is not _ABSENT and value is not OMIT:
            _assign(message, descriptor.fields_by_name[name], value)
    return message


def _targeted_value(
    draw: st.DrawFn,
    field_: FieldDescriptor,
    overrides: Mapping[str, Field],
    anything: Mapping[str, Any],
    prefix: str,
    depth: int,
    target: str,
) -> Any:
    path = prefix + field_.name
    if path == target:
        override = overrides.get(path)
        if override is not None:
            return draw(override.nasty)
        values = _field_values(field_, anything, path, depth)
        return _ABSENT if values is None else draw(values)
    if path in overrides:
        return draw(overrides[path].sane)
    aimed = target.startswith(path + ".")
    if field_.message_type is not None and not field_.is_repeated and (aimed or _below(path, overrides)):
        return _targeted(draw, field_.message_type, overrides, path + ".", depth - 1, target)
    return _ABSENT


@st.composite
def _requests(draw: st.DrawFn, descriptor: Descriptor, overrides: Mapping[str, Field], depth: int) -> Message:
    paths = _paths(descriptor, overrides, "", depth)
    # A message without fields (ServerLiveRequest) has no field to make bad.
    modes = ("sane", "one bad field", "one bad field", "anything") if paths else ("sane", "anything")
    mode = draw(st.sampled_from(modes))
    if mode == "anything":
        anything = {path: st.one_of(value.sane, value.nasty) for path, value in overrides.items()}
        return draw(_message_values(descriptor, anything, "", depth))
    target = draw(st.sampled_from(paths)) if mode == "one bad field" else ""
    return _targeted(draw, descriptor, overrides, "", depth, target)


def messages(
    message_class: type[M], fields: Mapping[str, Field | SearchStrategy[Any]] | None = None, *, max_depth: int = 4
) -> SearchStrategy[M]:
    """``message_class`` requests, filled from the descriptor, in three kinds.

    - sane: every field of ``fields`` holds a sane value, the others are unset, so the
      request reaches the service's logic (and often succeeds);
    - one bad field: the same, except one field (any field of the message, nested ones
      included) holds a nasty value;
    - anything: every field may be missing or nasty; a oneof gets at most one member,
      maps and repeated fields up to 4 entries.

    ``fields`` maps dotted paths from the root (``"model_version.artifact.uri"``) to a
    :class:`Field`, or to one strategy for both its sane and nasty values. A field
    drawing :data:`OMIT` stays unset. Repeated and map fields are given as a whole.
    """
    descriptor = cast(Descriptor, message_class.DESCRIPTOR)
    overrides = {
        path: value if isinstance(value, Field) else Field(value, value) for path, value in (fields or {}).items()
    }
    return cast(SearchStrategy[M], _requests(descriptor, overrides, max_depth))


# ------------------------------------------------------------------- classic values


def simplest(strategy: SearchStrategy[T]) -> T:
    """The simplest value of ``strategy`` (for :func:`messages`: a sane request)."""
    # Hypothesis tries the simplest input first: no need to shrink.
    only_first = settings(database=None, derandomize=True, max_examples=1, phases=[Phase.generate])
    return find(strategy, lambda _: True, settings=only_first)


_HUGE = "\u00e9" * 40_000  # 80 KB as UTF-8, 240 KB percent-encoded if echoed in a status
_LAST_NUMBER = re.compile(r"[0-9]+(?=[^0-9]*$)")
_INT_EDGES = {
    FieldDescriptor.TYPE_INT32: (-1, -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-1, -(2**63), 2**63 - 1),
}


def _classic(field_: FieldDescriptor, current: Any) -> list[tuple[str, Any]]:
    """The values that break servers most often, for one field holding ``current``."""
    kind = field_.type
    if _is_map(field_):
        assert field_.message_type is not None
        value_field = field_.message_type.fields_by_name["value"]
        if value_field.type == FieldDescriptor.TYPE_STRING:
            return [("huge key", {_HUGE: "v"}), ("huge value", {"k": _HUGE}), ("key with newline", {"k\n": "v"})]
        if value_field.type == FieldDescriptor.TYPE_DOUBLE:
            return [("huge key", {_HUGE: 1.0}), ("nan value", {"k": math.nan})]
        return []
    if field_.is_repeated:
        first = current[0] if len(current) else ""
        if kind == FieldDescriptor.TYPE_STRING:
            return [("huge item", [_HUGE]), ("item with newline", [f"{first}\n"])]
        if kind in _INT_EDGES:
            return [("item -1", [-1]), ("huge item", [_INT_EDGES[kind][2]])]
        return []
    if kind == FieldDescriptor.TYPE_STRING:
        # A trailing newline matters where a value is checked (ids, names, URIs): those are set.
        values = [("newline", f"{current}\n")] if current else []
        values += [("80 KB", _HUGE), ("one non-ASCII character", "\u00e9")]
        if _LAST_NUMBER.search(current):
            values.append(("arabic-indic digit", _LAST_NUMBER.sub("\u0663", current)))
            values.append(("10**30", _LAST_NUMBER.sub(str(10**30), current)))
        return values
    if kind in _INT_EDGES:
        return [(str(value), value) for value in _INT_EDGES[kind]]
    if kind == FieldDescriptor.TYPE_ENUM:
        return [("unknown number", 2**31 - 1), ("-1", -1)]
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return [("nan", math.nan), ("-inf", -math.inf)]
    return []


def bad_page_tokens(template: Mapping[str, Any], key: str) -> list[tuple[str, str]]:
    """Tokens shaped like a service's own (``template`` plus ``key``), ``key`` holding a
    value the service never issues: past 64 bits, negative, a float, a list, an object."""
    values: list[tuple[str, Any]] = [
        ("10**30", 10**30),
        ("-10**30", -(10**30)),
        ("2**63", 2**63),
        ("1.5", 1.5),
        ("a list", [1]),
        ("an object", {"a": 1}),
        ("true", True),
        ("a string", "x"),
        ("null", None),
    ]
    tokens = [
        (f"page token with {key} = {label}", _encode_token({**template, key: value}, "urlsafe"))
        for label, value in values
    ]
    return [
        *tokens,
        ("page token of a list", _encode_token([1], "urlsafe")),
        ("page token of a number", _encode_token(10**30, "urlsafe")),
    ]


def _sweep(
    message: Message, prefix: str, depth: int, extra: Mapping[str, Sequence[tuple[str, Any]]]
) -> Iterator[tuple[str, str, Any]]:
    for field_ in cast(Descriptor, message.DESCRIPTOR).fields:
        path = prefix + field_.name
        current = getattr(message, field_.name)
        if field_.message_type is not None and not _is_map(field_):
            if depth <= 0 or field_.message_type.full_name == "google.protobuf.Timestamp":
                continue
            if field_.is_repeated:  # the first element, or a new one
                element = current[0] if len(current) else GetMessageClass(field_.message_type)()
                yield from _sweep(element, f"{path}[0].", depth - 1, extra)
            else:
                yield from _sweep(current, path + ".", depth - 1, extra)
            continue
        for label, value in (*_classic(field_, current), *extra.get(path, ())):
            yield path, label, value


def _element(parent: Message, segment: str) -> Message:
    """``parent.steps[0]`` for ``"steps[0]"`` (added when missing), else ``parent.name``."""
    if not segment.endswith("[0]"):
        child: Message = getattr(parent, segment)
        return child
    container = getattr(parent, segment[:-3])
    return cast(Message, container[0] if len(container) else container.add())


def sweep(
    base: Message, *, extra: Mapping[str, Sequence[tuple[str, Any]]] | None = None, max_depth: int = 3
) -> Iterator[tuple[str, Message]]:
    """Copies of ``base``, each with one field (nested ones and the first element of
    repeated messages included) set to a classic bad value: a trailing newline, 80 KB of
    text, one non-ASCII character, an Arabic-Indic digit or 10**30 in place of a number,
    the limits of an integer, an unknown enum number, NaN, bad map keys.

    ``extra`` adds ``(what, value)`` pairs by field path (``"page_token"``).
    Yields ``("path: what", message)``.
    """
    for path, label, value in _sweep(base, "", max_depth, extra or {}):
        copy = type(base)()
        copy.CopyFrom(base)
        *parents, name = path.split(".")
        target = copy
        for parent in parents:
            target = _element(target, parent)
        field_ = cast(Descriptor, target.DESCRIPTOR).fields_by_name[name]
        target.ClearField(name)
        _assign(target, field_, value)
        yield f"{path}: {label}", copy
