"""Property-based fuzzing of Ferry's gRPC services: strategies and checks (a test helper library).

Requests. :func:`messages` fills any protobuf message from its descriptor; a test gives
each field that matters a :class:`Field` of sane values (existing resources, valid ids)
and nasty ones, and gets requests of three kinds: all sane (to reach the service's
logic), one bad field (sane but for one field, nested ones included), and anything.
The nasty values: ids with a trailing newline or a look-alike letter, version segments
in non-ASCII digits (``'²'``, ``'٣'``) or past 64 bits, page tokens that decode to lists,
huge numbers or deep nesting, unknown enum numbers, strings of 10 KB and more, label
maps with bad keys, mutated files, and client streams in every order. :func:`sweep`
adds a deterministic pass: each field of a sane request in turn set to a classic bad value.

Checks. What a caller may rely on whatever it sends: the status is never INTERNAL or
UNKNOWN and the call does not hang (:func:`check_outcome`); the status message fits in a
default client's trailers (a server that echoes a 70 KB id gets them refused); a success
names resources canonically and answers about the resource asked for
(:func:`check_names`, :func:`check_same_resource`); a failed change leaves nothing
visible behind (:class:`VisibleState`). Each kind of failure has its own exception
class (an INTERNAL, one per exception the server logged), so hypothesis reports and
shrinks each kind separately. :class:`ServerProcess` runs the service out of the test's
process, so that a crash is a failed check, not the end of the run.

Needs ``hypothesis`` (a development dependency, not a runtime one).
"""

from __future__ import annotations

from ferry_common.fuzzing._calls import (
    FORBIDDEN_CODES,
    MAX_STATUS_MESSAGE_BYTES,
    Call,
    ForbiddenStatus,
    MalformedResponse,
    Outcome,
    OversizedStatusMessage,
    PartialState,
    ServerDown,
    TransportFailure,
    VisibleState,
    WrongResource,
    call_rpc,
    calls,
    check_names,
    check_outcome,
    check_same_resource,
    conforms,
    describe,
    request_strings,
    swept_calls,
)
from ferry_common.fuzzing._messages import (
    OMIT,
    Field,
    bad_page_tokens,
    messages,
    simplest,
    sweep,
)
from ferry_common.fuzzing._runner import (
    Checker,
    FuzzedService,
    ServerProcess,
    assert_all_clean,
    big_budget_requested,
    call_tables,
    fuzz_settings,
    parent_of,
    rpc_tests,
)
from ferry_common.fuzzing._values import (
    NASTY_STRINGS,
    chunked,
    client_streams,
    enum_numbers,
    huge_text,
    ids,
    int_values,
    json_values,
    label_maps,
    mutated_bytes,
    nasty_doubles,
    nasty_text,
    page_sizes,
    page_tokens,
    resource_names,
    valid_ids,
    version_segments,
    well_formed_names,
)

__all__ = [
    "FORBIDDEN_CODES",
    "MAX_STATUS_MESSAGE_BYTES",
    "NASTY_STRINGS",
    "OMIT",
    "Call",
    "Checker",
    "Field",
    "ForbiddenStatus",
    "FuzzedService",
    "MalformedResponse",
    "Outcome",
    "OversizedStatusMessage",
    "PartialState",
    "ServerDown",
    "ServerProcess",
    "TransportFailure",
    "VisibleState",
    "WrongResource",
    "assert_all_clean",
    "bad_page_tokens",
    "big_budget_requested",
    "call_rpc",
    "call_tables",
    "calls",
    "check_names",
    "check_outcome",
    "check_same_resource",
    "chunked",
    "client_streams",
    "conforms",
    "describe",
    "enum_numbers",
    "fuzz_settings",
    "huge_text",
    "ids",
    "int_values",
    "json_values",
    "label_maps",
    "messages",
    "mutated_bytes",
    "nasty_doubles",
    "nasty_text",
    "page_sizes",
    "page_tokens",
    "parent_of",
    "request_strings",
    "resource_names",
    "rpc_tests",
    "simplest",
    "sweep",
    "swept_calls",
    "valid_ids",
    "version_segments",
    "well_formed_names",
]
