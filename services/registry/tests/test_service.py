"""Service-level behaviour (no grpc), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ferry_common.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from ferry_registry.domain import AliasChange, AliasEvent, Artifact, ArtifactFormat, NewModelVersion
from ferry_registry.store import SqlRegistryStore

SHA = "ef" * 32


def registered(**fields: Any) -> NewModelVersion:
    return NewModelVersion(artifact=Artifact("s3://b/m.onnx", SHA, 10, ArtifactFormat.ONNX), **fields)


def upload_header(sha256: str = "", size_bytes: int = 0) -> NewModelVersion:
    return NewModelVersion(artifact=Artifact("", sha256, size_bytes, ArtifactFormat.ONNX))


async def stream(*chunks: bytes, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for index, chunk in enumerate(chunks):
        if fail_after is not None and index == fail_after:
            raise ConnectionResetError("client went away")
        yield chunk


def test_resolve_cache_never_serves_a_value_older_than_a_write(harness: Any) -> None:
    service = harness.service

    async def scenario() -> None:
        await service.create_model("churn", "", {})
        for _ in range(3):
            await service.create_version("churn", registered(), "")
        await service.set_alias(AliasChange("churn", "production", 1), "me")
        assert (await service.resolve_alias("churn", "production")).version == 1
        assert (await service.resolve_alias("churn", "production")).version == 1  # from the cache
        await service.set_alias(AliasChange("churn", "production", 2), "me")
        assert (await service.resolve_alias("churn", "production")).version == 2
        await service.update_version("churn", 2, "better", None, {"auc": 0.93})
        resolved = await service.resolve_alias("churn", "production")
        assert (resolved.description, resolved.metrics) == ("better", {"auc": 0.93})

        # Reads racing a write: none of them may leave the old value in the cache.
        write = asyncio.create_task(service.set_alias(AliasChange("churn", "production", 3), "me"))
        await asyncio.gather(*(service.resolve_alias("churn", "production") for _ in range(20)))
        await write
        assert (await service.resolve_alias("churn", "production")).version == 3

    harness.run(scenario())


def test_upload_with_a_wrong_sha256_leaves_nothing_behind(harness: Any) -> None:
    service = harness.service

    async def scenario() -> None:
        await service.create_model("churn", "", {})
        with pytest.raises(InvalidArgument, match="does not match the received bytes"):
            await service.upload_version("churn", upload_header(sha256="0" * 64), "", stream(b"abc", b"def"))
        with pytest.raises(ConnectionResetError):
            await service.upload_version("churn", upload_header(), "", stream(b"abc", b"def", fail_after=1))
        with pytest.raises(InvalidArgument, match="no artifact bytes"):
            await service.upload_version("churn", upload_header(), "", stream())
        with pytest.raises(ResourceExhausted, match="FERRY_REGISTRY_MAX_ARTIFACT_BYTES"):
            await service.upload_version("churn", upload_header(), "", stream(b"x" * (1 << 20), b"x"))
        model = await service.get_model("churn")
        assert model.latest_version == 0
        assert harness.objects.list("models/") == []
        good = hashlib.sha256(b"abcdef").hexdigest()
        version = await service.upload_version("churn", upload_header(good, 6), "", stream(b"abc", b"def"))
        assert (version.version, version.artifact.sha256, version.artifact.size_bytes) == (1, good, 6)
        assert harness.objects.list("models/") == ["models/churn/versions/1/artifact.onnx"]

    harness.run(scenario())


def test_upload_retry_with_the_same_request_id_stores_once(harness: Any) -> None:
    service = harness.service

    async def scenario() -> None:
        await service.create_model("churn", "", {})
        first = await service.upload_version("churn", upload_header(), "up-1", stream(b"model"))
        again = await service.upload_version("churn", upload_header(), "up-1", stream(b"model"))
        racing = await asyncio.gather(
            *(service.upload_version("churn", upload_header(), "up-2", stream(b"other")) for _ in range(4))
        )
        assert again.version == first.version == 1
        # One of the racing uploads wins; the others return its version and discard
        # their own bytes (which number wins depends on commit order).
        winners = {v.version for v in racing}
        assert len(winners) == 1
        (winner,) = winners
        assert harness.objects.list("models/") == [
            "models/churn/versions/1/artifact.onnx",
            f"models/churn/versions/{winner}/artifact.onnx",
        ]
        assert (await service.get_model("churn")).latest_version == winner

    harness.run(scenario())


def test_deleting_an_uploaded_version_deletes_its_object(harness: Any) -> None:
    service = harness.service

    async def scenario() -> None:
        await service.create_model("churn", "", {})
        await service.upload_version("churn", upload_header(), "", stream(b"one"))
        await service.upload_version("churn", upload_header(), "", stream(b"two"))
        await service.delete_version("churn", 1)
        assert harness.objects.list("models/") == ["models/churn/versions/2/artifact.onnx"]
        await service.delete_model("churn", force=True)
        assert harness.objects.list("models/") == []

    harness.run(scenario())


def test_watch_sees_writes_of_another_process_through_the_poll(harness: Any) -> None:
    service = harness.service
    # A second store on the same database stands in for another registry process:
    # its commits never touch this service's in-process notification.
    other = SqlRegistryStore(harness.database)

    async def scenario() -> None:
        await service.create_model("churn", "", {})
        await service.create_version("churn", registered(), "")
        events = await service.watch_aliases("churn", 0)
        received: list[AliasEvent] = []

        async def consume() -> None:
            async for event in events:
                received.append(event)
                if len(received) == 2:
                    return

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.1)
        await asyncio.to_thread(other.set_aliases, [AliasChange("churn", "production", 1)], "elsewhere")
        await asyncio.to_thread(other.delete_alias, "churn", "production", None, "", "elsewhere")
        await asyncio.wait_for(task, timeout=5)
        assert [(e.revision, e.actor) for e in received] == [(1, "elsewhere"), (2, "elsewhere")]
        await events.aclose()

    harness.run(scenario())


def test_watch_from_the_future_is_refused(harness: Any) -> None:
    async def scenario() -> None:
        with pytest.raises(FailedPrecondition, match="ahead of the newest revision 0"):
            await harness.service.watch_aliases(None, 5)

    harness.run(scenario())


def test_page_tokens_are_bound_to_their_request(harness: Any) -> None:
    service = harness.service

    async def scenario() -> None:
        for name in ("a", "b", "c"):
            await service.create_model(name, "", {"team": "risk"})
        page = await service.list_models({"team": "risk"}, 2, "")
        assert [m.model_id for m in page.items] == ["a", "b"]
        rest = await service.list_models({"team": "risk"}, 2, page.next_page_token)
        assert [m.model_id for m in rest.items] == ["c"] and rest.next_page_token == ""
        with pytest.raises(InvalidArgument, match="page_token"):
            await service.list_models({"team": "growth"}, 2, page.next_page_token)
        with pytest.raises(InvalidArgument, match="page_token"):
            await service.list_models({}, 2, "not-a-token")

    harness.run(scenario())


def test_batch_rejects_the_same_alias_twice(harness: Any) -> None:
    service = harness.service

    async def scenario() -> None:
        await service.create_model("churn", "", {})
        await service.create_version("churn", registered(), "")
        change = AliasChange("churn", "production", 1)
        with pytest.raises(InvalidArgument, match=r"requests\[1\]"):
            await service.batch_set_aliases([change, dataclasses.replace(change, reason="again")], "me")
        with pytest.raises(InvalidArgument, match="at least one"):
            await service.batch_set_aliases([], "me")

    harness.run(scenario())
