"""Store-level behaviour, the same tests on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ferry_common.errors import Aborted, AlreadyExists, FailedPrecondition, NotFound
from ferry_registry.domain import AliasChange, AliasEventKind, Artifact, ArtifactFormat, NewModelVersion
from ferry_registry.store import Database, SqlRegistryStore
from ferry_registry.store.rows import metadata

SHA = "cd" * 32


def version(uri: str = "s3://b/m.onnx", **fields: Any) -> NewModelVersion:
    return NewModelVersion(artifact=Artifact(uri, SHA, 10, ArtifactFormat.ONNX), **fields)


def test_migrations_create_exactly_the_orm_schema(database: Database) -> None:
    with database.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    assert diff == []


def test_versions_start_at_one_and_are_never_reused(store: SqlRegistryStore) -> None:
    store.create_model("churn", "", {})
    numbers = [store.create_version("churn", version(), None)[0].version for _ in range(3)]
    assert numbers == [1, 2, 3]
    store.delete_version("churn", 3)
    assert store.create_version("churn", version(), None)[0].version == 4
    assert store.get_model("churn").latest_version == 4
    assert store.get_version("churn", None).version == 4


def test_request_id_returns_the_same_version_under_concurrent_retries(store: SqlRegistryStore) -> None:
    store.create_model("churn", "", {})
    barrier = threading.Barrier(8)

    def create(_: int) -> tuple[int, bool]:
        barrier.wait()
        created, fresh = store.create_version("churn", version(), "train-job-42")
        return created.version, fresh

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(create, range(8)))
    assert {number for number, _ in results} == {1}
    assert sum(fresh for _, fresh in results) == 1
    assert [v.version for v in store.list_versions("churn", {}, None, 10)] == [1]


def test_model_ids_are_unique(store: SqlRegistryStore) -> None:
    store.create_model("churn", "", {})
    with pytest.raises(AlreadyExists, match="models/churn"):
        store.create_model("churn", "", {})


def test_label_filters_and_pagination_positions(store: SqlRegistryStore) -> None:
    for name, team in [("a", "risk"), ("b", "growth"), ("c", "risk"), ("d", "risk")]:
        store.create_model(name, "", {"team": team, "tier": "gold" if name != "c" else "silver"})
    assert [m.model_id for m in store.list_models({"team": "risk"}, None, 10)] == ["a", "c", "d"]
    assert [m.model_id for m in store.list_models({"team": "risk", "tier": "gold"}, None, 10)] == ["a", "d"]
    assert [m.model_id for m in store.list_models({"team": "risk"}, "a", 1)] == ["c"]
    assert store.list_models({"missing": "x"}, None, 10) == []


def test_compare_and_set_rules(store: SqlRegistryStore) -> None:
    store.create_model("churn", "", {})
    for _ in range(3):
        store.create_version("churn", version(), None)
    alias = "production"
    with pytest.raises(Aborted, match="does not exist"):
        store.set_aliases([AliasChange("churn", alias, 1, expected_version=1)], "me")
    store.set_aliases([AliasChange("churn", alias, 1, expected_version=0)], "me")
    with pytest.raises(Aborted, match="already exists and points at version 1"):
        store.set_aliases([AliasChange("churn", alias, 2, expected_version=0)], "me")
    with pytest.raises(Aborted, match="points at version 1, not expected_version 2"):
        store.set_aliases([AliasChange("churn", alias, 3, expected_version=2)], "me")
    store.set_aliases([AliasChange("churn", alias, 2, expected_version=1)], "me")
    store.set_aliases([AliasChange("churn", alias, 3)], "me")  # unconditional
    with pytest.raises(NotFound, match="models/churn/versions/9"):
        store.set_aliases([AliasChange("churn", alias, 9)], "me")
    assert store.get_alias("churn", alias).version == 3
    assert [e.revision for e in store.list_events("churn", None, 0, 100)] == [1, 2, 3]


def test_setting_an_alias_to_its_current_version_records_nothing(store: SqlRegistryStore) -> None:
    store.create_model("churn", "", {})
    store.create_version("churn", version(), None)
    first = store.set_aliases([AliasChange("churn", "production", 1)], "me")[0]
    again = store.set_aliases([AliasChange("churn", "production", 1, expected_version=1)], "me")[0]
    assert again.revision == first.revision
    assert len(store.list_events("churn", None, 0, 100)) == 1


def rollback_walk(store: SqlRegistryStore, moves: list[int]) -> list[int]:
    """Set the alias through ``moves``, then roll back until refused; the targets visited."""
    store.create_model("churn", "", {})
    for _ in range(max(moves)):
        store.create_version("churn", version(), None)
    for target in moves:
        store.set_aliases([AliasChange("churn", "production", target)], "me")
    visited = []
    while True:
        try:
            visited.append(store.rollback_alias("churn", "production", "undo", "me").version)
        except FailedPrecondition:
            return visited


def test_rollbacks_walk_back_through_history(store: SqlRegistryStore) -> None:
    assert rollback_walk(store, [1, 2, 3]) == [2, 1]
    events = store.list_events("churn", "production", 0, 100)
    assert [(e.kind, e.from_version, e.to_version) for e in events[-2:]] == [
        (AliasEventKind.ROLLBACK, 3, 2),
        (AliasEventKind.ROLLBACK, 2, 1),
    ]


def test_rollbacks_undo_a_revert_instead_of_bouncing(store: SqlRegistryStore) -> None:
    # 1 -> 2 -> 1 -> 2: each rollback undoes one change, so it unwinds 2, 1, 2, 1 in
    # reverse and then stops; the naive "from_version of the last SET to the current
    # version" rule would bounce between 1 and 2 for ever.
    assert rollback_walk(store, [1, 2, 1, 2]) == [1, 2, 1]


def test_set_after_rollback_pushes_onto_the_remaining_history(store: SqlRegistryStore) -> None:
    store.create_model("churn", "", {})
    for _ in range(4):
        store.create_version("churn", version(), None)
    for target in (1, 2, 3):
        store.set_aliases([AliasChange("churn", "production", target)], "me")
    assert store.rollback_alias("churn", "production", "", "me").version == 2
    store.set_aliases([AliasChange("churn", "production", 4)], "me")
    assert store.rollback_alias("churn", "production", "", "me").version == 2
    assert store.rollback_alias("churn", "production", "", "me").version == 1
    with pytest.raises(FailedPrecondition, match="no previous target"):
        store.rollback_alias("churn", "production", "", "me")


def test_rollback_refuses_a_deleted_previous_target(store: SqlRegistryStore) -> None:
    store.create_model("churn", "", {})
    for _ in range(2):
        store.create_version("churn", version(), None)
    store.set_aliases([AliasChange("churn", "production", 1)], "me")
    store.set_aliases([AliasChange("churn", "production", 2)], "me")
    store.delete_version("churn", 1)
    with pytest.raises(FailedPrecondition, match="models/churn/versions/1' has been deleted"):
        store.rollback_alias("churn", "production", "", "me")
    assert store.get_alias("churn", "production").version == 2


def test_rollback_after_delete_and_recreate_does_not_reach_before_the_delete(store: SqlRegistryStore) -> None:
    store.create_model("churn", "", {})
    for _ in range(3):
        store.create_version("churn", version(), None)
    store.set_aliases([AliasChange("churn", "production", 1)], "me")
    store.set_aliases([AliasChange("churn", "production", 2)], "me")
    store.delete_alias("churn", "production", None, "gone", "me")
    store.set_aliases([AliasChange("churn", "production", 3)], "me")
    with pytest.raises(FailedPrecondition):
        store.rollback_alias("churn", "production", "", "me")


def test_batch_is_all_or_nothing(store: SqlRegistryStore) -> None:
    for model in ("churn", "fraud"):
        store.create_model(model, "", {})
        store.create_version(model, version(), None)
    store.set_aliases([AliasChange("fraud", "production", 1)], "me")
    with pytest.raises(Aborted, match=r"^requests\[1\]: "):
        store.set_aliases(
            [AliasChange("churn", "production", 1), AliasChange("fraud", "production", 1, expected_version=0)],
            "me",
            batch=True,
        )
    with pytest.raises(NotFound):
        store.get_alias("churn", "production")
    assert store.current_revision() == 1
    done = store.set_aliases(
        [AliasChange("churn", "production", 1), AliasChange("fraud", "staging", 1)], "release-bot", batch=True
    )
    assert [a.revision for a in done] == [2, 3]


def test_deleting_an_aliased_version_or_model_is_refused(store: SqlRegistryStore) -> None:
    store.create_model("churn", "", {})
    store.create_version("churn", version(), None)
    store.create_version("churn", version(), None)
    store.set_aliases([AliasChange("churn", "production", 1)], "me")
    with pytest.raises(FailedPrecondition, match="production"):
        store.delete_version("churn", 1)
    with pytest.raises(FailedPrecondition, match="even with force"):
        store.delete_model("churn", force=True)
    store.delete_alias("churn", "production", None, "", "me")
    with pytest.raises(FailedPrecondition, match="has 2 version"):
        store.delete_model("churn", force=False)
    store.delete_version("churn", 1)
    assert store.delete_model("churn", force=True) == []
    with pytest.raises(NotFound):
        store.get_model("churn")


def test_alias_events_survive_their_model(store: SqlRegistryStore) -> None:
    store.create_model("churn", "", {})
    store.create_version("churn", version(), None)
    store.set_aliases([AliasChange("churn", "production", 1)], "me")
    store.delete_alias("churn", "production", 1, "retire", "me")
    store.delete_model("churn", force=True)
    kinds = [e.kind for e in store.list_events(None, None, 0, 10)]
    assert kinds == [AliasEventKind.SET, AliasEventKind.DELETE]


def test_concurrent_alias_writes_get_gap_free_ordered_revisions(store: SqlRegistryStore) -> None:
    models = ["m1", "m2", "m3", "m4"]
    for model in models:
        store.create_model(model, "", {})
        store.create_version(model, version(), None)
        store.create_version(model, version(), None)

    def flip(index: int) -> None:
        model = models[index % len(models)]
        for step in range(15):
            store.set_aliases([AliasChange(model, f"a{index}", 1 + step % 2)], "me")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(flip, range(8)))
    events = store.list_events(None, None, 0, 1000)
    assert [e.revision for e in events] == list(range(1, 121))
    assert store.current_revision() == 120


def test_reserved_numbers_are_given_back_when_possible(store: SqlRegistryStore) -> None:
    store.create_model("churn", "", {})
    number = store.reserve_version("churn")
    store.release_version("churn", number)
    assert store.create_version("churn", version(), None)[0].version == 1
    first, second = store.reserve_version("churn"), store.reserve_version("churn")
    store.release_version("churn", first)  # a later number is out: this one stays used
    assert store.create_version("churn", version(), None, reserved=second)[0].version == 3
    assert store.create_version("churn", version(), None)[0].version == 4


def test_a_batch_naming_a_missing_model_writes_nothing(store: SqlRegistryStore) -> None:
    store.create_model("churn", "", {})
    store.create_version("churn", version(), None)
    with pytest.raises(NotFound, match=r"requests\[1\]: model 'models/nope' not found"):
        store.set_aliases([AliasChange("churn", "a", 1), AliasChange("nope", "b", 1)], "me", batch=True)
    assert store.current_revision() == 0
    assert store.list_aliases("churn", None, 10) == []
