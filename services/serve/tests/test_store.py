"""Serve's deployment store on SQLite files and on PostgreSQL: what the servicer and a second replica see.

Two :class:`SqlServeStore` instances opened on the same URL stand for two serve replicas
sharing one database.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
import threading
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from ferry_common.database import Database, run_migrations
from ferry_common.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    FerryError,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from ferry_serve.domain import (
    BatchingSpec,
    Deployment,
    DeploymentChanges,
    DeploymentState,
    Split,
    Target,
)
from ferry_serve.store import SqlServeStore, open_database
from ferry_serve.store.database import HEAD_REVISION, VERSION_TABLE
from ferry_serve.store.sql import MAX_MESSAGE

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
MIGRATIONS = pathlib.Path(__file__).resolve().parent.parent / "src" / "ferry_serve" / "migrations"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'serve.db'}"


@pytest.fixture
def opened(database_url: str) -> Iterator[Callable[[], tuple[Database, SqlServeStore]]]:
    """Opens another replica's database and store on the same URL; closes them all at the end."""
    databases: list[Database] = []

    def open_one() -> tuple[Database, SqlServeStore]:
        database = open_database(database_url)
        databases.append(database)
        return database, SqlServeStore(database)

    yield open_one
    for database in databases:
        database.close()


@pytest.fixture
def store(opened: Callable[[], tuple[Database, SqlServeStore]]) -> SqlServeStore:
    return opened()[1]


def draft(deployment_id: str = "churn", **changes: object) -> Deployment:
    return dataclasses.replace(Deployment(deployment_id=deployment_id, model_id="churn"), **changes)


def raises(error: type[FerryError], call: Callable[[], object]) -> FerryError:
    with pytest.raises(error) as caught:
        call()
    return caught.value


# ---------------------------------------------------------------- create, get, list


def test_create_returns_a_pending_deployment_that_get_reads_back(store: SqlServeStore) -> None:
    before = datetime.datetime.now(datetime.UTC)
    created = store.create(draft(canary=Split(Target(version=3), 10), sample_rate=0.25))

    assert created.state is DeploymentState.PENDING
    assert created.primary == Target(alias="production")
    assert created.canary == Split(Target(version=3), 10)
    assert created.shadow is None
    assert created.batching == BatchingSpec(enabled=False, max_batch_size=32, max_queue_delay_microseconds=500)
    assert created.sample_rate == 0.25
    assert created.revision >= 1 and created.etag
    assert created.create_time is not None and created.create_time >= before
    assert created.create_time == created.update_time
    read = store.get("churn")
    assert read.same_spec(created)
    assert (read.etag, read.revision, read.state) == (created.etag, created.revision, created.state)
    assert read.create_time is not None and read.create_time.tzinfo is not None
    assert abs(read.create_time - created.create_time) < datetime.timedelta(milliseconds=1)


def test_a_taken_id_is_already_exists_naming_deployment_id_and_uses_no_revision(store: SqlServeStore) -> None:
    store.create(draft())
    revision = store.current_revision()

    error = raises(AlreadyExists, lambda: store.create(draft(model_id="other")))

    assert error.field == "deployment_id"
    assert "deployments/churn already exists" in error.message
    assert store.current_revision() == revision
    assert store.get("churn").model_id == "churn"


def test_get_of_an_unknown_deployment_is_not_found_naming_name(store: SqlServeStore) -> None:
    error = raises(NotFound, lambda: store.get("nope"))
    assert error.field == "name"
    assert error.message == "name: deployments/nope not found"


def test_list_pages_in_id_order_with_tokens_bound_to_the_page_size(store: SqlServeStore) -> None:
    for deployment_id in ["delta", "alpha", "echo", "charlie", "bravo"]:
        store.create(draft(deployment_id))

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page, token = store.list_page(2, token)
        pages += 1
        assert len(page) <= 2
        seen += [deployment.deployment_id for deployment in page]
        if not token:
            break
        if pages == 1:
            with pytest.raises(InvalidArgument) as caught:
                store.list_page(3, token)  # a token only serves the page size that issued it
            assert caught.value.field == "page_token"

    assert seen == ["alpha", "bravo", "charlie", "delta", "echo"]
    assert pages == 3
    assert raises(InvalidArgument, lambda: store.list_page(2, "garbage!")).field == "page_token"
    assert raises(InvalidArgument, lambda: store.list_page(-1, "")).field == "page_size"


def test_list_page_size_defaults_to_50(store: SqlServeStore) -> None:
    for index in range(51):
        store.create(draft(f"model-{index:03d}"))

    page, token = store.list_page(0, "")
    rest, end = store.list_page(0, token)

    assert len(page) == 50 and token
    assert [deployment.deployment_id for deployment in rest] == ["model-050"]
    assert end == ""


# ---------------------------------------------------------------- update


def test_update_with_the_current_etag_gives_a_new_etag_and_revision(store: SqlServeStore) -> None:
    created = store.create(draft())

    updated = store.update("churn", DeploymentChanges(canary=Split(Target(version=4), 20)), created.etag)

    assert updated.canary == Split(Target(version=4), 20)
    assert updated.primary == created.primary
    assert updated.etag != created.etag
    assert updated.revision > created.revision
    assert updated.create_time == created.create_time
    assert updated.update_time is not None and created.update_time is not None
    assert updated.update_time >= created.update_time
    assert store.get("churn").etag == updated.etag
    assert store.get("churn").canary == Split(Target(version=4), 20)


def test_update_with_a_stale_etag_is_aborted_naming_the_etag_and_changes_nothing(store: SqlServeStore) -> None:
    created = store.create(draft())
    store.update("churn", DeploymentChanges(sample_rate=0.5), created.etag)

    error = raises(Aborted, lambda: store.update("churn", DeploymentChanges(sample_rate=0.1), created.etag))

    assert error.field == "deployment.etag"
    assert error.message.startswith("deployment.etag: ")
    assert store.get("churn").sample_rate == 0.5


def test_update_without_an_etag_does_not_check(store: SqlServeStore) -> None:
    store.create(draft())
    store.update("churn", DeploymentChanges(sample_rate=0.5))
    assert store.update("churn", DeploymentChanges(sample_rate=0.0), "").sample_rate == 0.0


def test_an_update_that_changes_nothing_keeps_the_etag(store: SqlServeStore) -> None:
    created = store.create(draft(sample_rate=0.5))
    same = store.update("churn", DeploymentChanges(sample_rate=0.5, primary=Target(alias="production")), created.etag)
    assert (same.etag, same.revision, same.update_time) == (created.etag, created.revision, created.update_time)


def test_update_of_an_unknown_deployment_is_not_found_naming_deployment_name(store: SqlServeStore) -> None:
    error = raises(NotFound, lambda: store.update("nope", DeploymentChanges(sample_rate=0.5)))
    assert error.field == "deployment.name"


def test_a_percent_change_keeps_the_split_target_and_needs_a_split(store: SqlServeStore) -> None:
    store.create(draft(canary=Split(Target(version=3), 10)))

    updated = store.update("churn", DeploymentChanges(canary_percent=0))
    error = raises(FailedPrecondition, lambda: store.update("churn", DeploymentChanges(shadow_percent=5)))

    assert updated.canary == Split(Target(version=3), 0)
    assert error.field == "update_mask"
    assert "no shadow" in error.message
    assert store.get("churn").shadow is None


def test_concurrent_updates_with_the_same_etag_exactly_one_wins(
    opened: Callable[[], tuple[Database, SqlServeStore]],
) -> None:
    stores = [opened()[1] for _ in range(2)] * 3  # six writers, two replicas
    etag = stores[0].create(draft()).etag
    barrier = threading.Barrier(len(stores))
    won: list[int] = []
    aborted: list[int] = []
    failed: list[BaseException] = []

    def write(index: int, replica: SqlServeStore) -> None:
        barrier.wait()
        try:
            replica.update("churn", DeploymentChanges(canary=Split(Target(version=index + 1), index)), etag)
            won.append(index)
        except Aborted:
            aborted.append(index)
        except BaseException as error:
            failed.append(error)

    threads = [threading.Thread(target=write, args=(i, s)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert failed == []
    assert len(won) == 1 and len(aborted) == len(stores) - 1
    winner = won[0]
    assert stores[1].get("churn").canary == Split(Target(version=winner + 1), winner)


# ---------------------------------------------------------------- state, delete


def test_set_state_is_output_only_and_keeps_etag_revision_and_update_time(store: SqlServeStore) -> None:
    created = store.create(draft())

    ready = store.set_state("churn", DeploymentState.READY, "", revision=created.revision)
    failed = store.set_state("churn", DeploymentState.FAILED, "x" * (MAX_MESSAGE + 100))

    assert ready.state is DeploymentState.READY
    read = store.get("churn")
    assert read.state is DeploymentState.FAILED and len(read.message) == MAX_MESSAGE
    assert read.message == failed.message
    assert (read.etag, read.revision, read.update_time) == (created.etag, created.revision, created.update_time)
    # A user's read-modify-write across a state change still succeeds.
    assert store.update("churn", DeploymentChanges(sample_rate=0.5), created.etag).sample_rate == 0.5


def test_set_state_for_a_superseded_revision_is_aborted(store: SqlServeStore) -> None:
    created = store.create(draft())
    store.update("churn", DeploymentChanges(sample_rate=0.5))

    error = raises(Aborted, lambda: store.set_state("churn", DeploymentState.READY, revision=created.revision))

    assert f"not {created.revision}" in error.message
    assert store.get("churn").state is DeploymentState.PENDING


def test_delete_removes_and_a_second_delete_is_not_found(store: SqlServeStore) -> None:
    first = store.create(draft())

    store.delete("churn")

    assert raises(NotFound, lambda: store.get("churn")).field == "name"
    assert raises(NotFound, lambda: store.delete("churn")).field == "name"
    assert raises(NotFound, lambda: store.set_state("churn", DeploymentState.READY)).field == "name"
    again = store.create(draft())
    assert again.etag != first.etag, "an etag of the deleted deployment must not match its successor"
    assert raises(Aborted, lambda: store.update("churn", DeploymentChanges(sample_rate=0.5), first.etag))


# ---------------------------------------------------------------- change feed (a second replica)


def test_a_second_replica_sees_creates_updates_and_deletes_through_the_feed(
    opened: Callable[[], tuple[Database, SqlServeStore]],
) -> None:
    _, one = opened()
    _, two = opened()
    empty = two.changes_since(0)
    assert empty == ([], [], 0)

    one.create(draft("churn"))
    one.create(draft("fraud"))
    deployments, deleted, revision = two.changes_since(0)
    assert [d.deployment_id for d in deployments] == ["churn", "fraud"]
    assert deleted == []

    one.update("churn", DeploymentChanges(canary=Split(Target(version=2), 5)))
    one.set_state("fraud", DeploymentState.READY)  # output only: not in the feed
    deployments, deleted, after_update = two.changes_since(revision)
    assert [(d.deployment_id, d.canary) for d in deployments] == [("churn", Split(Target(version=2), 5))]
    assert after_update > revision

    one.delete("fraud")
    deployments, deleted, after_delete = two.changes_since(after_update)
    assert (deployments, deleted) == ([], ["fraud"])
    assert after_delete > after_update

    assert two.changes_since(after_delete) == ([], [], after_delete)

    # Deleted then re-created inside one window: the feed shows the new one, not the delete.
    one.delete("churn")
    one.create(draft("churn", sample_rate=0.5))
    deployments, deleted, _ = two.changes_since(after_delete)
    assert [(d.deployment_id, d.sample_rate) for d in deployments] == [("churn", 0.5)]
    assert deleted == []
    # A replica starting now replays everything that exists, and the deletes it never saw.
    deployments, deleted, latest = two.changes_since(0)
    assert [d.deployment_id for d in deployments] == ["churn"]
    assert deleted == ["fraud"]
    assert latest == one.current_revision() == two.current_revision()
    # A replica that followed another copy of the database (restored from a backup) replays it all.
    assert two.changes_since(latest + 100) == (deployments, deleted, latest)


def test_a_polling_replica_misses_no_change_made_concurrently_by_others(
    opened: Callable[[], tuple[Database, SqlServeStore]],
) -> None:
    writers = [opened()[1] for _ in range(2)]
    _, poller = opened()
    done = threading.Event()
    seen: dict[str, int] = {}
    revisions: list[int] = []
    errors: list[BaseException] = []

    def write(index: int, replica: SqlServeStore) -> None:
        try:
            for n in range(15):
                replica.create(draft(f"w{index}-{n}"))
                replica.update(f"w{index}-{n}", DeploymentChanges(sample_rate=0.5))
        except BaseException as error:
            errors.append(error)

    def poll() -> None:
        revision = 0
        while True:
            finished = done.is_set()
            deployments, _, revision = poller.changes_since(revision)
            revisions.append(revision)
            for deployment in deployments:
                seen[deployment.deployment_id] = deployment.revision
            if finished:
                return

    threads = [threading.Thread(target=write, args=(i, s)) for i, s in enumerate(writers)]
    watcher = threading.Thread(target=poll)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    done.set()
    watcher.join(60)

    assert errors == []
    expected = {f"w{i}-{n}" for i in range(2) for n in range(15)}
    assert set(seen) == expected
    # Every replica ends on the newest revision of each deployment.
    assert all(seen[d.deployment_id] == d.revision for d in poller.list_page(1000, "")[0])
    assert revisions == sorted(revisions)


# ---------------------------------------------------------------- migrations, lost database


def test_migrations_run_twice_are_a_no_op_with_their_own_version_table(
    opened: Callable[[], tuple[Database, SqlServeStore]],
) -> None:
    database, store = opened()
    store.create(draft())

    run_migrations(database.engine, MIGRATIONS, lock_key=1, version_table=VERSION_TABLE)
    _, again = opened()

    assert again.get("churn").model_id == "churn"
    with database.engine.connect() as connection:
        versions = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
        tables = set(sa.inspect(connection).get_table_names())
    assert versions == [HEAD_REVISION]
    assert "alembic_version" not in tables, "serve must not take the default version table another service uses"
    assert {"deployments", "deployment_tombstones", "serve_state"} <= tables


@pytest.mark.postgres
def test_an_unreachable_database_is_unavailable_naming_the_setting() -> None:
    from ferry_common.process import closed_address

    url = f"postgresql+psycopg://ferry:secret@{closed_address()}/serve"
    error = raises(Unavailable, lambda: open_database(url))
    assert "FERRY_SERVE_DATABASE_URL" in error.message
    assert "secret" not in error.message


@pytest.mark.postgres
@pytest.mark.slow
def test_a_database_lost_during_a_call_is_unavailable_then_recovers() -> None:
    from ferry_common.testing_postgres import PrivatePostgres

    with PrivatePostgres() as postgres:
        database = open_database(postgres.url)
        try:
            store = SqlServeStore(database)
            store.create(draft())
            postgres.stop()

            error = raises(Unavailable, lambda: database.runner.call(store.get, "churn"))
            assert error.message.startswith("serve database unavailable")

            postgres.start()
            # The pool drops dead connections: the next calls work again.
            for _ in range(database.engine.pool.size() + 5):
                try:
                    found = database.runner.call(store.get, "churn")
                    break
                except Unavailable:
                    continue
            assert found.deployment_id == "churn"
        finally:
            database.close()
