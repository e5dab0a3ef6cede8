"""RecordInferences, RecordFeedback and GetPerformance through gRPC (in-process server, real interceptors)."""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2, timestamp_pb2

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry.monitor.v1 import monitor_pb2_grpc
from ferry_common.testing import ServiceThread, test_settings
from ferry_monitor.__main__ import build
from ferry_monitor.inferences import measure
from ferry_sdk.aio import MonitorClient

NS = 1_000_000_000


@pytest.fixture
def monitor(tmp_path: pathlib.Path) -> Iterator[ServiceThread]:
    with ServiceThread(test_settings("monitor", tmp_path), build) as service:
        yield service


@pytest.fixture
def stub(monitor: ServiceThread) -> Iterator[monitor_pb2_grpc.MonitorServiceStub]:
    with monitor.channel() as channel:
        yield monitor_pb2_grpc.MonitorServiceStub(channel)


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    found = struct_pb2.Struct()
    found.update(values)
    return found


def record(
    request_id: str, version: int, route: str, outputs: dict[str, Any], model: str = "iris"
) -> pb.InferenceRecord:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    return pb.InferenceRecord(
        request_id=request_id,
        deployment=f"deployments/{model}",
        model_version=f"models/{model}/versions/{version}",
        route=route,
        time=stamp,
        inputs=struct({"sepal_length": [5.1]}),
        outputs=struct(outputs),
        latency_ms=1.5,
    )


def truth(request_id: str, value: Any) -> pb.Feedback:
    found = struct_pb2.Value()
    if isinstance(value, list):
        found.list_value.extend(value)
    elif isinstance(value, str):
        found.string_value = value
    else:
        found.number_value = value
    return pb.Feedback(request_id=request_id, ground_truth=found)


def test_feedback_gives_accuracy_per_version_and_route(
    monitor: ServiceThread, stub: monitor_pb2_grpc.MonitorServiceStub
) -> None:
    primary = [record(f"p{i}", 1, "primary", {"label": ["setosa"], "probabilities": [[0.9, 0.1]]}) for i in range(10)]
    canary = [record(f"c{i}", 2, "canary", {"label": ["versicolor"]}) for i in range(4)]
    shadow = [record("p0", 3, "shadow", {"label": ["setosa"]})]  # the shadow of request p0
    # Two rows in one request, under a free-text request id (KServe's ``id`` is any string).
    batch_of_two = record("batch 2/b", 1, "primary", {"label": ["setosa", "virginica"]})

    async def send() -> int:
        async with MonitorClient(monitor.target) as client:  # what serve's sampler calls
            return await client.record_inferences([*primary, *canary, *shadow, batch_of_two], timeout=10)

    assert asyncio.run(send()) == 16
    feedback = [truth(f"p{i}", "setosa" if i < 7 else "virginica") for i in range(10)]
    feedback += [truth(f"c{i}", "versicolor") for i in range(4)]
    feedback += [truth("batch 2/b", ["setosa", "setosa"]), truth("nobody", "setosa"), truth("ghost", 1.0)]
    answer = stub.RecordFeedback(pb.RecordFeedbackRequest(feedback=feedback), timeout=10)
    assert answer.accepted_count == 15
    assert list(answer.unknown_request_ids) == ["nobody", "ghost"]

    def report(version: int, route: str = "") -> pb.PerformanceReport:
        request = pb.GetPerformanceRequest(model_version=f"models/iris/versions/{version}", route=route)
        result: pb.PerformanceReport = stub.GetPerformance(request, timeout=10)
        return result

    v1 = report(1)
    assert v1.model_version == "models/iris/versions/1"
    assert (v1.labeled_count, v1.accuracy) == (12, pytest.approx(8 / 12))  # 7 of 10, and 1 of the 2 rows of b
    assert (report(2).labeled_count, report(2).accuracy) == (4, 1.0)
    assert report(2, "primary").labeled_count == 0 and report(2, "canary").labeled_count == 4
    assert (report(3, "shadow").labeled_count, report(3, "shadow").accuracy) == (1, 1.0)
    assert report(9).labeled_count == 0

    # Later feedback for the same request replaces the earlier one (here through the SDK).
    async def correct() -> pb.PerformanceReport:
        async with MonitorClient(monitor.target) as client:
            answer = await client.record_feedback([truth("c0", "setosa")], timeout=10)
            assert answer.accepted_count == 1
            return await client.get_performance("models/iris/versions/2", route="canary", timeout=10)

    assert asyncio.run(correct()).accuracy == pytest.approx(3 / 4)


def test_regression_errors(stub: monitor_pb2_grpc.MonitorServiceStub) -> None:
    records = [record(f"r{i}", 1, "primary", {"prediction": [float(i)]}, model="price") for i in range(4)]
    stub.RecordInferences(pb.RecordInferencesRequest(records=records), timeout=10)
    stub.RecordFeedback(pb.RecordFeedbackRequest(feedback=[truth(f"r{i}", i + (1 if i % 2 else -3)) for i in range(4)]))
    found = stub.GetPerformance(pb.GetPerformanceRequest(model_version="models/price/versions/1"), timeout=10)
    assert found.labeled_count == 4
    assert found.mean_absolute_error == pytest.approx(2.0)  # errors 3, -1, 3, -1
    assert found.root_mean_squared_error == pytest.approx(5**0.5)


def test_bad_records_refuse_the_whole_call_naming_the_field(stub: monitor_pb2_grpc.MonitorServiceStub) -> None:
    good = record("ok", 1, "primary", {"label": ["a"]})
    nan = record("nan", 1, "primary", {})
    nan.outputs.fields["x"].number_value = float("nan")
    far = record("far", 1, "primary", {})
    far.time.seconds = 253_402_300_799  # year 9999: past what 64-bit nanoseconds hold
    cases: list[tuple[Any, Any, str, grpc.StatusCode]] = [
        (
            stub.RecordInferences,
            [good, record("x", 1, "blue", {})],
            "records[1].route",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            stub.RecordInferences,
            [
                pb.InferenceRecord(
                    request_id="y",
                    deployment="deployments/iris",
                    model_version="models/iris/versions/latest",
                    route="primary",
                )
            ],
            "records[0].model_version",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            stub.RecordInferences,
            [
                pb.InferenceRecord(
                    request_id="y", deployment="iris", model_version="models/iris/versions/1", route="primary"
                )
            ],
            "records[0].deployment",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            stub.RecordInferences,
            [
                pb.InferenceRecord(
                    deployment="deployments/iris", model_version="models/iris/versions/1", route="primary"
                )
            ],
            "records[0].request_id",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (stub.RecordInferences, [good, nan], "records[1].outputs", grpc.StatusCode.INVALID_ARGUMENT),
        (stub.RecordInferences, [far], "records[0].time", grpc.StatusCode.INVALID_ARGUMENT),
        (
            stub.RecordFeedback,
            [pb.Feedback(request_id="ok")],
            "feedback[0].ground_truth",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (stub.RecordFeedback, [truth("a\nb", "x")], "feedback[0].request_id", grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for method, items, field, code in cases:
        request = (
            pb.RecordInferencesRequest(records=items)
            if method is stub.RecordInferences
            else pb.RecordFeedbackRequest(feedback=items)
        )
        with pytest.raises(grpc.RpcError) as raised:
            method(request, timeout=10)
        assert raised.value.code() is code and field in (raised.value.details() or ""), raised.value.details()
    # Nothing of the refused batches was stored.
    answer = stub.RecordFeedback(pb.RecordFeedbackRequest(feedback=[truth("ok", "a")]), timeout=10)
    assert list(answer.unknown_request_ids) == ["ok"]
    for request, field in (
        (pb.GetPerformanceRequest(model_version="models/iris"), "model_version"),
        (pb.GetPerformanceRequest(model_version="models/iris/versions/1", route="blue"), "route"),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            stub.GetPerformance(request, timeout=10)
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT and field in (raised.value.details() or "")


def test_measure_skips_what_cannot_be_judged() -> None:
    found = measure(
        [
            ({"label": ["1"]}, 1.0),  # 1.0 and "1" are the same class
            ({"label": ["a", "b"]}, ["a"]),  # a truth per row is needed: skipped
            ({"label": [None]}, "a"),  # no prediction: skipped
            ({"prediction": [2.0]}, "x"),  # not a number: skipped
            ({"other": [1]}, 1),  # neither label nor prediction: skipped
            ({"label": [True]}, True),
        ]
    )
    assert (found.labeled_count, found.accuracy, found.mean_absolute_error) == (2, 1.0, 0.0)
