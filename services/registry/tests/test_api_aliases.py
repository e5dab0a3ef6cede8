"""Aliases, audit log, rollback, batch and watch through the real gRPC server."""

from __future__ import annotations

import hashlib
import pathlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import json_format

from ferry.registry.v1 import registry_pb2 as pb

PROD = "models/churn/aliases/production"


def failure(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def with_versions(registry: Any, count: int, model: str = "churn") -> None:
    registry.create_model(model)
    for _ in range(count):
        registry.create_version(model)


def test_set_alias_compare_and_set_from_issue_json(any_registry: Any) -> None:
    registry = any_registry
    with_versions(registry, 3)
    stub = registry.stub
    created = stub.SetAlias(
        json_format.ParseDict({"name": PROD, "version": 1, "expected_version": 0}, pb.SetAliasRequest())
    )
    assert (created.version, created.model_version, created.revision) == (1, "models/churn/versions/1", 1)
    moved = stub.SetAlias(
        json_format.ParseDict(
            {"name": PROD, "version": 2, "expected_version": 1, "reason": "better auc"}, pb.SetAliasRequest()
        )
    )
    assert moved.version == 2
    error = failure(lambda: registry.set_alias(PROD, 3, expected=1))
    assert error.code() == grpc.StatusCode.ABORTED
    assert "points at version 2" in error.details() and "expected_version 1" in error.details()
    error = failure(lambda: registry.set_alias(PROD, 3, expected=0))
    assert error.code() == grpc.StatusCode.ABORTED and "version 2" in error.details()
    registry.set_alias(PROD, 3)  # unconditional
    resolved = stub.ResolveAlias(pb.ResolveAliasRequest(name=PROD))
    assert (resolved.name, list(resolved.aliases)) == ("models/churn/versions/3", ["production"])
    assert stub.GetAlias(pb.GetAliasRequest(name=PROD)).version == 3
    registry.set_alias("models/churn/aliases/staging", 1)
    listed = stub.ListAliases(pb.ListAliasesRequest(parent="models/churn", page_size=1))
    assert [a.name for a in listed.aliases] == [PROD]
    rest = stub.ListAliases(
        pb.ListAliasesRequest(parent="models/churn", page_size=1, page_token=listed.next_page_token)
    )
    assert [a.name for a in rest.aliases] == ["models/churn/aliases/staging"]
    error = failure(lambda: stub.DeleteAlias(pb.DeleteAliasRequest(name=PROD, expected_version=2)))
    assert error.code() == grpc.StatusCode.ABORTED and "points at version 3" in error.details()
    stub.DeleteAlias(pb.DeleteAliasRequest(name=PROD, expected_version=3))
    error = failure(lambda: stub.ResolveAlias(pb.ResolveAliasRequest(name=PROD)))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_audit_log_records_every_change_in_revision_order(registry: Any) -> None:
    with_versions(registry, 3)
    stub = registry.stub
    registry.set_alias(PROD, 1, reason="first")
    registry.set_alias(PROD, 2, reason="promote")
    stub.RollbackAlias(pb.RollbackAliasRequest(name=PROD, reason="latency"))
    stub.DeleteAlias(pb.DeleteAliasRequest(name=PROD, reason="retire"))
    registry.set_alias("models/churn/aliases/staging", 3)
    events = [json_format.MessageToDict(e, preserving_proto_field_name=True) for e in registry.events()]
    assert [(e["kind"], e.get("from_version", "0"), e.get("to_version", "0"), e["reason"]) for e in events[:4]] == [
        ("ALIAS_EVENT_KIND_SET", "0", "1", "first"),
        ("ALIAS_EVENT_KIND_SET", "1", "2", "promote"),
        ("ALIAS_EVENT_KIND_ROLLBACK", "2", "1", "latency"),
        ("ALIAS_EVENT_KIND_DELETE", "1", "0", "retire"),
    ]
    assert [e["revision"] for e in events] == ["1", "2", "3", "4", "5"]
    assert {e["actor"] for e in events} == {"anonymous"}
    assert all(e["create_time"] for e in events)
    only_staging = stub.ListAliasEvents(pb.ListAliasEventsRequest(parent="models/churn", alias_id="staging"))
    assert [e.revision for e in only_staging.events] == [5]
    first = stub.ListAliasEvents(pb.ListAliasEventsRequest(parent="models/churn", page_size=2))
    second = stub.ListAliasEvents(
        pb.ListAliasEventsRequest(parent="models/churn", page_size=2, page_token=first.next_page_token)
    )
    assert [e.revision for e in first.events] + [e.revision for e in second.events] == [1, 2, 3, 4]


def test_rollback_walks_back_then_fails_precondition(registry: Any) -> None:
    with_versions(registry, 3)
    for version in (1, 2, 3):
        registry.set_alias(PROD, version)
    stub = registry.stub
    assert stub.RollbackAlias(pb.RollbackAliasRequest(name=PROD)).version == 2
    assert stub.RollbackAlias(pb.RollbackAliasRequest(name=PROD)).version == 1
    error = failure(lambda: stub.RollbackAlias(pb.RollbackAliasRequest(name=PROD)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and PROD in error.details()
    assert stub.ResolveAlias(pb.ResolveAliasRequest(name=PROD)).version == 1
    error = failure(lambda: stub.RollbackAlias(pb.RollbackAliasRequest(name="models/churn/aliases/ghost")))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_batch_set_aliases_is_one_transaction_across_models(any_registry: Any) -> None:
    registry = any_registry
    with_versions(registry, 2, "churn")
    with_versions(registry, 2, "fraud")
    stub = registry.stub
    registry.set_alias("models/fraud/aliases/production", 1)
    bad = pb.BatchSetAliasesRequest(
        requests=[
            pb.SetAliasRequest(name=PROD, version=2),
            pb.SetAliasRequest(name="models/fraud/aliases/production", version=2, expected_version=2),
        ],
        reason="release 7",
    )
    error = failure(lambda: stub.BatchSetAliases(bad))
    assert error.code() == grpc.StatusCode.ABORTED and error.details().startswith("requests[1]:")
    assert failure(lambda: stub.GetAlias(pb.GetAliasRequest(name=PROD))).code() == grpc.StatusCode.NOT_FOUND
    bad.requests[1].expected_version = 1
    done = stub.BatchSetAliases(bad)
    assert [(a.name, a.version) for a in done.aliases] == [(PROD, 2), ("models/fraud/aliases/production", 2)]
    assert [e.reason for e in registry.events("models/fraud")] == ["", "release 7"]
    error = failure(
        lambda: stub.BatchSetAliases(
            pb.BatchSetAliasesRequest(requests=[pb.SetAliasRequest(name="models/churn/aliases/x", version=0)])
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "requests[0].version" in error.details()


def test_concurrent_compare_and_set_never_loses_an_update(any_registry: Any) -> None:
    registry = any_registry
    target = 40
    with_versions(registry, target)
    registry.set_alias(PROD, 1, expected=0)
    wins = [0] * 8

    def increment(worker: int) -> None:
        channel, stub = registry.new_stub()
        with channel:
            while True:
                current = stub.GetAlias(pb.GetAliasRequest(name=PROD)).version
                if current >= target:
                    return
                request = pb.SetAliasRequest(name=PROD, version=current + 1, expected_version=current)
                try:
                    stub.SetAlias(request)
                    wins[worker] += 1
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.ABORTED:
                        raise

    threads = [threading.Thread(target=increment, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert registry.stub.GetAlias(pb.GetAliasRequest(name=PROD)).version == target
    assert sum(wins) == target - 1
    events = registry.events()
    assert len(events) == target
    assert [(e.from_version, e.to_version) for e in events] == [(v, v + 1) for v in range(target)]
    assert [e.revision for e in events] == list(range(1, target + 1))


def read_events(stream: Any, count: int, timeout: float = 10.0) -> list[pb.AliasEvent]:
    """Read ``count`` events from a watch stream in a thread, failing on timeout."""
    results: queue.Queue[Any] = queue.Queue()

    def pump() -> None:
        try:
            for _ in range(count):
                results.put(next(stream))
        except Exception as error:  # handed to the test thread
            results.put(error)

    threading.Thread(target=pump, daemon=True).start()
    events = []
    for _ in range(count):
        item = results.get(timeout=timeout)
        if isinstance(item, Exception):
            raise item
        events.append(item)
    return events


def test_watch_resumes_without_missing_or_repeating_events(any_registry: Any) -> None:
    registry = any_registry
    with_versions(registry, 3)
    with_versions(registry, 1, "fraud")
    stub = registry.stub
    for version in (1, 2, 3):
        registry.set_alias(PROD, version)
    stream = stub.WatchAliases(pb.WatchAliasesRequest(parent="models/churn", since_revision=0))
    first = read_events(stream, 2)
    stream.cancel()  # the client goes away after revision 2
    last = first[-1].revision
    # While it is away: more changes, some on another model it does not watch.
    stub.RollbackAlias(pb.RollbackAliasRequest(name=PROD))
    registry.set_alias("models/fraud/aliases/production", 1)
    stub.DeleteAlias(pb.DeleteAliasRequest(name=PROD))
    resumed = stub.WatchAliases(pb.WatchAliasesRequest(parent="models/churn", since_revision=last))
    missed = read_events(resumed, 3)
    registry.set_alias("models/churn/aliases/staging", 1)  # live, after the replay
    live = read_events(resumed, 1)
    resumed.cancel()
    revisions = [e.revision for e in first + missed + live]
    assert revisions == [1, 2, 3, 4, 6, 7]
    assert [e.kind for e in missed] == [
        pb.ALIAS_EVENT_KIND_SET,
        pb.ALIAS_EVENT_KIND_ROLLBACK,
        pb.ALIAS_EVENT_KIND_DELETE,
    ]
    everything = stub.WatchAliases(pb.WatchAliasesRequest(parent="", since_revision=0))
    assert [e.revision for e in read_events(everything, 7)] == list(range(1, 8))
    everything.cancel()


def test_watchers_wake_at_once_without_waiting_for_the_poll(registry_factory: Any) -> None:
    registry = registry_factory({"FERRY_REGISTRY_WATCH_POLL_MS": "60000"})
    with_versions(registry, 1)
    stream = registry.stub.WatchAliases(pb.WatchAliasesRequest(parent="models/churn"))
    time.sleep(0.2)  # the watcher is now waiting for new events
    started = time.monotonic()
    registry.set_alias(PROD, 1)
    (event,) = read_events(stream, 1, timeout=5)
    assert event.to_version == 1 and time.monotonic() - started < 1.0
    stream.cancel()


def test_alias_events_record_the_authenticated_identity(registry_factory: Any, tmp_path: pathlib.Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        yaml.safe_dump(
            {
                "tokens": [
                    {"identity": "release-bot", "role": "admin", "sha256": hashlib.sha256(b"s3cret").hexdigest()},
                    {"identity": "dashboard", "role": "viewer", "sha256": hashlib.sha256(b"look").hexdigest()},
                ]
            }
        )
    )
    registry = registry_factory({"FERRY_AUTH_TOKENS_FILE": str(tokens)})
    admin = (("authorization", "Bearer s3cret"),)
    stub = registry.stub
    stub.CreateModel(pb.CreateModelRequest(model_id="churn"), metadata=admin)
    stub.CreateModelVersion(
        pb.CreateModelVersionRequest(
            parent="models/churn",
            model_version=pb.ModelVersion(artifact=pb.Artifact(uri="s3://b/k", sha256="ab" * 32, format=1)),
        ),
        metadata=admin,
    )
    stub.SetAlias(pb.SetAliasRequest(name=PROD, version=1, reason="ship"), metadata=admin)
    error = failure(lambda: stub.SetAlias(pb.SetAliasRequest(name=PROD, version=1)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    viewer = (("authorization", "Bearer look"),)
    error = failure(lambda: stub.DeleteAlias(pb.DeleteAliasRequest(name=PROD), metadata=viewer))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    events = stub.ListAliasEvents(pb.ListAliasEventsRequest(parent="models/churn"), metadata=viewer).events
    assert [(e.actor, e.reason) for e in events] == [("release-bot", "ship")]


def test_a_drain_ends_watch_streams_at_once_with_a_resume_point(tmp_path: pathlib.Path) -> None:
    from ferry.registry.v1 import registry_pb2_grpc
    from ferry_common.testing import ServiceThread, test_settings
    from ferry_registry.__main__ import build

    service = ServiceThread(test_settings("registry", tmp_path), build).start()
    channel = service.channel()
    stub = registry_pb2_grpc.RegistryServiceStub(channel)
    stub.CreateModel(pb.CreateModelRequest(model_id="churn"))
    stream = stub.WatchAliases(pb.WatchAliasesRequest(parent="models/churn"))
    time.sleep(0.2)
    started = time.monotonic()
    service.stop(grace=10.0)
    assert time.monotonic() - started < 3.0  # not the whole grace period
    error = failure(lambda: next(stream))
    assert error.code() == grpc.StatusCode.UNAVAILABLE and "since_revision=0" in error.details()
    channel.close()
