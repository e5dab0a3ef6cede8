"""Domain errors reach callers as the right status, through the real interceptors."""

from __future__ import annotations

import pathlib
import tempfile
from typing import Any

import grpc
import pytest

from ferry.registry.v1 import registry_pb2, registry_pb2_grpc
from ferry_common.testing import ServiceThread, test_settings


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory, probe_build: Any) -> Any:
    path: pathlib.Path = tmp_path_factory.mktemp("errors")
    with ServiceThread(test_settings("registry", path), probe_build) as service:
        yield registry_pb2_grpc.RegistryServiceStub(service.channel())


@pytest.mark.parametrize(
    ("model_id", "code", "message"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT, "model_id: 'Bad' is not a valid id"),
        ("missing", grpc.StatusCode.NOT_FOUND, 'model "missing" not found'),
        ("exists", grpc.StatusCode.ALREADY_EXISTS, 'model "exists" already exists'),
        ("precondition", grpc.StatusCode.FAILED_PRECONDITION, "version 3 is aliased"),
        ("aborted", grpc.StatusCode.ABORTED, "alias production points at 2, expected 1"),
        ("exhausted", grpc.StatusCode.RESOURCE_EXHAUSTED, "artifact larger than 2 GiB"),
        ("unavailable", grpc.StatusCode.UNAVAILABLE, "database unreachable"),
    ],
)
def test_domain_error_maps_to_its_status(stub: Any, model_id: str, code: grpc.StatusCode, message: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetModel(registry_pb2.GetModelRequest(name=f"models/{model_id}"))
    assert raised.value.code() == code
    assert raised.value.details() == message


def test_unexpected_error_is_internal_with_a_generic_message(stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetModel(registry_pb2.GetModelRequest(name="models/boom"))
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in raised.value.details()
    assert "server log" in raised.value.details()


def test_unfilled_rpc_answers_unimplemented(stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetAlias(registry_pb2.GetAliasRequest(name="models/a/aliases/b"))
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "GetAlias" in raised.value.details()


def test_error_in_the_middle_of_a_stream_keeps_earlier_messages(stub: Any) -> None:
    stream = stub.WatchAliases(registry_pb2.WatchAliasesRequest(parent="models/boom"))
    received = []
    with pytest.raises(grpc.RpcError) as raised:
        for event in stream:
            received.append(event.revision)
    assert received == [1]
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_success_passes_through(stub: Any) -> None:
    assert stub.GetModel(registry_pb2.GetModelRequest(name="models/churn")).name == "models/churn"
    assert [e.revision for e in stub.WatchAliases(registry_pb2.WatchAliasesRequest())] == [1, 2, 3]


def test_the_field_travels_as_a_bad_request_detail_a_stock_client_reads() -> None:
    """Against the real registry: a stock grpcio client + grpcio-status see the field."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    from ferry_registry.__main__ import build

    with (
        tempfile.TemporaryDirectory() as state,
        ServiceThread(test_settings("registry", pathlib.Path(state)), build) as service,
    ):
        registry = registry_pb2_grpc.RegistryServiceStub(service.channel())
        with pytest.raises(grpc.RpcError) as raised:
            registry.CreateModel(registry_pb2.CreateModelRequest(model_id="Not Valid"))
        status = rpc_status.from_call(raised.value)
        assert status is not None and status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert status.message == raised.value.details()
        violations = error_details_pb2.BadRequest()
        assert status.details[0].Unpack(violations)
        assert [(v.field, v.description) for v in violations.field_violations] == [("model_id", raised.value.details())]
        # A stream's error carries it too; a missing resource names the field it was read from.
        with pytest.raises(grpc.RpcError) as missing:
            registry.GetModel(registry_pb2.GetModelRequest(name="models/nope"))
        status = rpc_status.from_call(missing.value)
        assert status is not None and status.code == grpc.StatusCode.NOT_FOUND.value[0]
