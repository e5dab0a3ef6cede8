"""Every failed call raises the typed exception of its status, with code, message and field.

The field comes from the ``google.rpc.BadRequest`` the services put in the
``grpc-status-details-bin`` trailer. Statuses a real service answers are provoked on
real processes; INTERNAL (which no well-formed request can provoke) and the mapping
table as a whole are checked against a small server that answers any status.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from ferry.registry.v1 import registry_pb2, registry_pb2_grpc
from ferry_common.settings import load_settings
from ferry_sdk import ServiceProcess, errors, spawn_and_wait

MIB = 1024 * 1024
TOKENS = {"viewer-token": ("viewer-bot", "viewer"), "editor-token": ("editor-bot", "editor")}


def raised(call: Callable[[], Any]) -> errors.FerryError:
    with pytest.raises(errors.FerryError) as info:
        call()
    assert isinstance(info.value.__cause__, grpc.RpcError)  # the original error stays reachable
    return info.value


def check(
    error: errors.FerryError, kind: type[errors.FerryError], code: grpc.StatusCode, field: str | None, words: str
) -> None:
    assert type(error) is kind
    assert error.code is code
    assert error.field == field
    assert words in error.message
    assert str(error).startswith(f"{code.name}: {error.message}")


def test_not_found_names_the_field(registry: Any) -> None:
    error = raised(lambda: registry.get_model("no-such-model"))
    check(error, errors.NotFound, grpc.StatusCode.NOT_FOUND, "name", "'models/no-such-model' not found")


def test_invalid_argument_names_the_field(registry: Any) -> None:
    error = raised(lambda: registry.create_model("Not_An_Id"))
    check(error, errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT, "model_id", "'Not_An_Id' is not a valid id")
    assert error.status is not None and error.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_already_exists_names_the_field(registry: Any, new_id: Callable[[str], str]) -> None:
    model = registry.create_model(new_id("dup"))
    error = raised(lambda: registry.create_model(model.name.removeprefix("models/")))
    check(error, errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS, "model_id", "already exists")


def test_failed_precondition_and_aborted_name_the_field(registry: Any, new_id: Callable[[str], str]) -> None:
    model = registry.create_model(new_id("cas"))
    registry.upload_model_version(model.name, b"artifact")
    alias = f"{model.name}/aliases/production"
    registry.set_alias(alias, 1)
    error = raised(lambda: registry.rollback_alias(alias))
    check(error, errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION, "name", "no previous target")
    error = raised(lambda: registry.set_alias(alias, 1, expected_version=0))
    check(error, errors.Aborted, grpc.StatusCode.ABORTED, "expected_version", "points at version 1")


def test_resource_exhausted_names_the_field(registry: Any, ingest: Any, new_id: Callable[[str], str]) -> None:
    model = registry.create_model(new_id("big"))
    too_big = os.urandom(8 * MIB + 1)  # conftest: FERRY_REGISTRY_MAX_ARTIFACT_BYTES / FERRY_INGEST_MAX_UPLOAD_BYTES
    error = raised(lambda: registry.upload_model_version(model.name, too_big))
    check(error, errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED, "chunk", "FERRY_REGISTRY_MAX_ARTIFACT")
    error = raised(lambda: ingest.upload_dataset(new_id("big"), too_big, format="csv"))
    check(error, errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED, "chunk", "FERRY_INGEST_MAX_UPLOAD")


def test_ingest_names_a_nested_field(ingest: Any, new_id: Callable[[str], str]) -> None:
    error = raised(lambda: ingest.import_dataset(new_id("imported"), uri="file:///etc/hostname", format="csv"))
    check(
        error, errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED, "object.uri", "outside FERRY_INGEST_IMPORT"
    )


def test_statuses_made_by_the_client_side_carry_no_field(
    make_client: Callable[..., Any], registry: Any, ingest_process: ServiceProcess
) -> None:
    error = raised(lambda: registry.get_model("anything", timeout=1e-6))
    check(error, errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED, None, "Deadline")
    nowhere = make_client("registry", "127.0.0.1:1", timeout=2)
    error = raised(lambda: nowhere.get_model("anything"))
    check(error, errors.Unavailable, grpc.StatusCode.UNAVAILABLE, None, "Connection refused")
    # A registry client pointed at ingest: the server has no such method.
    wrong = make_client("registry", ingest_process.address)
    error = raised(lambda: wrong.get_model("anything"))
    check(error, errors.Unimplemented, grpc.StatusCode.UNIMPLEMENTED, None, "Method not found")


def test_a_cancelled_call_maps_to_cancelled(registry_process: ServiceProcess) -> None:
    with grpc.insecure_channel(registry_process.address) as channel:
        stream = registry_pb2_grpc.RegistryServiceStub(channel).WatchAliases(registry_pb2.WatchAliasesRequest())
        stream.cancel()
        with pytest.raises(grpc.RpcError) as info:
            next(stream)
    check(errors.from_rpc_error(info.value), errors.Cancelled, grpc.StatusCode.CANCELLED, None, "")


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    state = tmp_path_factory.mktemp("auth-registry")
    entries = [
        {"identity": identity, "role": role, "sha256": hashlib.sha256(token.encode()).hexdigest()}
        for token, (identity, role) in TOKENS.items()
    ]
    (state / "tokens.yaml").write_text(yaml.safe_dump({"tokens": entries}))
    env = {
        "FERRY_STATE_DIR": str(state),
        "FERRY_AUTH_TOKENS_FILE": str(state / "tokens.yaml"),
        "OTEL_TRACES_EXPORTER": "none",
    }
    with spawn_and_wait("registry", env=env, log_path=state / "registry.log") as process:
        yield process


def test_authentication_and_roles(
    make_client: Callable[..., Any], auth_registry: ServiceProcess, new_id: Callable[[str], str]
) -> None:
    def client(token: str | None) -> Any:
        env = {"FERRY_AUTH_TOKEN": token} if token else {}
        return make_client("registry", auth_registry.address, settings=load_settings("registry", env))

    error = raised(lambda: client(None).get_model("anything"))
    check(error, errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED, None, "missing authorization")
    error = raised(lambda: client("wrong-token").get_model("anything"))
    check(error, errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED, None, "unknown bearer token")
    error = raised(lambda: client("viewer-token").create_model("anything"))
    check(error, errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED, None, "needs 'editor'")
    # The token is sent on every call: the editor gets through, and is the audit actor.
    editor = client("editor-token")
    model = editor.create_model(new_id("audited"))
    editor.upload_model_version(model.name, b"artifact")
    editor.set_alias(f"{model.name}/aliases/production", 1, reason="checked")
    assert [e.actor for e in editor.list_alias_events(model.name)] == ["editor-bot"]


# Any status, answered by a stand-in RegistryService: GetModel("models/<code>") fails
# with that code, and with a BadRequest naming the field `name` unless the id says "bare".
EVERY_CODE = [
    (grpc.StatusCode.CANCELLED, errors.Cancelled),
    (grpc.StatusCode.UNKNOWN, errors.FerryError),
    (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument),
    (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceeded),
    (grpc.StatusCode.NOT_FOUND, errors.NotFound),
    (grpc.StatusCode.ALREADY_EXISTS, errors.AlreadyExists),
    (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDenied),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhausted),
    (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
    (grpc.StatusCode.ABORTED, errors.Aborted),
    (grpc.StatusCode.OUT_OF_RANGE, errors.FerryError),
    (grpc.StatusCode.UNIMPLEMENTED, errors.Unimplemented),
    (grpc.StatusCode.INTERNAL, errors.Internal),
    (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
    (grpc.StatusCode.DATA_LOSS, errors.FerryError),
    (grpc.StatusCode.UNAUTHENTICATED, errors.Unauthenticated),
]


def _answer_with_status(request: registry_pb2.GetModelRequest, context: grpc.ServicerContext) -> registry_pb2.Model:
    model_id = request.name.removeprefix("models/")
    code = grpc.StatusCode[model_id.removesuffix("-bare").upper().replace("-", "_")]
    message = f"name: {request.name!r} answered {code.name}"
    if model_id.endswith("-bare"):
        context.abort(code, message)
    violation = error_details_pb2.BadRequest.FieldViolation(field="name", description=message)
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    context.abort_with_status(
        rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message, details=[detail]))
    )
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def any_status_server() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(
        "ferry.registry.v1.RegistryService",
        {
            "GetModel": grpc.unary_unary_rpc_method_handler(
                _answer_with_status,
                request_deserializer=registry_pb2.GetModelRequest.FromString,
                response_serializer=registry_pb2.Model.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.mark.parametrize(("code", "kind"), EVERY_CODE, ids=[code.name for code, _ in EVERY_CODE])
def test_every_status_code_maps_to_its_exception(
    make_client: Callable[..., Any], any_status_server: str, code: grpc.StatusCode, kind: type[errors.FerryError]
) -> None:
    client = make_client("registry", any_status_server)
    model_id = code.name.lower().replace("_", "-")
    error = raised(lambda: client.get_model(model_id))
    check(error, kind, code, "name", f"answered {code.name}")
    # Without rich details (an older server, a proxy): the same type, no field.
    error = raised(lambda: client.get_model(f"{model_id}-bare"))
    check(error, kind, code, None, f"answered {code.name}")
    assert error.status is None


def test_a_corrupt_details_trailer_is_ignored() -> None:
    class Fake(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.NOT_FOUND

        def details(self) -> str:
            return "gone"

        def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
            return ((errors.STATUS_DETAILS_KEY, b"\xff\xff not a status"),)

    error = errors.from_rpc_error(Fake())
    check(error, errors.NotFound, grpc.StatusCode.NOT_FOUND, None, "gone")
