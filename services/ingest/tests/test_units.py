"""Plain-Python tests of the recipe, SQL safety and store pieces (profiles: libs/profile/tests)."""

from __future__ import annotations

import pathlib

import grpc.aio
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ferry_common.errors import InvalidArgument
from ferry_ingest.memory import bound_receive_window
from ferry_ingest.parquet_output import ParquetOutput, write_parquet
from ferry_ingest.recipe import Filter, Recipe, Split, SplitPart, content_hash
from ferry_ingest.spool import Spool
from ferry_ingest.sql_import import check_query
from ferry_ingest.store.sql import _MIGRATIONS as MIGRATIONS
from ferry_ingest.store.sql import HEAD_REVISION, SqlDatasetStore
from ferry_ingest.transform import allocate


def test_canonical_recipe_json_and_content_hash_are_stable() -> None:
    recipe = Recipe((Filter("age", "gt", "3"), Split((SplitPart("train", 0.8), SplitPart("test", 0.2)), seed=7)))
    assert recipe.canonical_json() == (
        '{"steps":[{"filter":{"column":"age","operator":"gt","value":"3","values":[]}},'
        '{"split":{"fractions":[{"fraction":0.8,"name":"train"},{"fraction":0.2,"name":"test"}],'
        '"seed":7,"stratify_column":""}}]}'
    )
    assert Recipe.from_json_dict(recipe.to_json_dict()) == recipe
    assert content_hash("ab" * 32, recipe) == content_hash("ab" * 32, Recipe.from_json_dict(recipe.to_json_dict()))
    assert content_hash("ab" * 32, recipe) != content_hash("cd" * 32, recipe)


def test_split_sizes_use_largest_remainders() -> None:
    assert allocate(10, [0.7, 0.2, 0.1]) == [7, 2, 1]
    assert allocate(1001, [0.8, 0.2]) == [801, 200]
    assert allocate(2, [1 / 3, 1 / 3, 1 / 3]) == [1, 1, 0]
    assert sum(allocate(99_991, [0.6, 0.25, 0.15])) == 99_991


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1",
        "  with a as (select 1) select * from a;  ",
        "/* hi */ -- there\n SELECT ';'",
        "select 'x;y'",
        "SELECT $$;$$",
        'SELECT "a;b" FROM t',
    ],
)
def test_select_and_with_queries_pass(query: str) -> None:
    assert check_query(query)


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO t VALUES (1)",
        "SELECT 1; SELECT 2",
        "select 1; drop table t",
        "",
        "  -- nothing\n",
        "VACUUM",
        "(SELECT 1)",
        "COPY t TO '/tmp/x'",
        "SELECT 1;;",
    ],
)
def test_other_statements_are_refused(query: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        check_query(query)
    assert raised.value.message.startswith("sql.query")


def test_head_revision_matches_the_migration_scripts(tmp_path: pathlib.Path) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION
    store = SqlDatasetStore.open(f"sqlite:///{tmp_path / 'ingest.db'}")
    try:
        assert store.revision() == HEAD_REVISION
    finally:
        store.close()
    SqlDatasetStore.open(f"sqlite:///{tmp_path / 'ingest.db'}").close()  # a second start needs no migration


def test_servers_made_after_bound_receive_window_have_no_bdp_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, object]] = []
    monkeypatch.setattr(grpc.aio, "server", lambda **kwargs: made.append(kwargs))
    bound_receive_window()
    bound_receive_window()  # once only: the option is not added twice
    grpc.aio.server(options=[("grpc.so_reuseport", 0)], interceptors=[])
    grpc.aio.server()
    assert made == [
        {"options": [("grpc.so_reuseport", 0), ("grpc.http2.bdp_probe", 0)], "interceptors": []},
        {"options": [("grpc.http2.bdp_probe", 0)]},
    ]


def test_canonical_parquet_keeps_dictionary_pages_off_free_text(tmp_path: pathlib.Path) -> None:
    rows = 20_000
    batch = pa.record_batch(
        {
            "kind": pa.array(["red", "green", None, "blue"] * (rows // 4)),
            "note": pa.array([f"customer {i} asked about order {i * 7}" for i in range(rows)]),
        }
    )
    path = tmp_path / "data.parquet"
    profile = write_parquet(iter([batch]), batch.schema, path, max_distinct=1_000)
    metadata = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {metadata.column(i).path_in_schema: metadata.column(i).encodings for i in range(2)}
    assert "RLE_DICTIONARY" in encodings["kind"]
    assert "RLE_DICTIONARY" not in encodings["note"] and "PLAIN" in encodings["note"]
    assert pq.read_table(path).equals(pa.Table.from_batches([batch]))
    note = profile.column("note").categorical
    assert note is not None and not note.distinct_exact and note.untracked_count == rows - 1_000


def test_canonical_parquet_keeps_statistics_on_numbers_not_strings(tmp_path: pathlib.Path) -> None:
    rows = 10_000
    batch = pa.record_batch(
        {
            "amount": pa.array([float(i % 97) for i in range(rows)]),
            "flag": pa.array([i % 3 == 0 for i in range(rows)]),
            "kind": pa.array(["red", "green", None, "blue"] * (rows // 4)),
            "note": pa.array([f"customer {i} asked about order {i * 7}" for i in range(rows)]),
            "tags": pa.array([[i, i + 1] for i in range(rows)]),
        }
    )
    path = tmp_path / "data.parquet"
    write_parquet(iter([batch]), batch.schema, path, max_distinct=1_000)
    group = pq.ParquetFile(path).metadata.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    amount = columns["amount"].statistics
    assert amount is not None and amount.has_min_max and (amount.min, amount.max) == (0.0, 96.0)
    for name in ("flag", "tags.list.element"):  # nested leaves by their Parquet path
        statistics = columns[name].statistics
        assert statistics is not None and statistics.has_min_max, name
    for name in ("kind", "note"):
        statistics = columns[name].statistics
        assert statistics is None or not statistics.has_min_max, name
    assert pq.read_table(path).equals(pa.Table.from_batches([batch]))


def test_canonical_parquet_through_a_spool_can_be_read_while_it_is_written(tmp_path: pathlib.Path) -> None:
    # Arrow writes the file itself; the spool's readers (the S3 upload) follow each row group.
    out = tmp_path / "data.parquet"
    spool = Spool(out, hashed=False)
    output = ParquetOutput(out, pa.schema({"x": pa.int64(), "s": pa.string()}), 1000, spool)
    rows = 300_000  # two full row groups and a partial one
    table = pa.table({"x": pa.array(range(rows)), "s": pa.array([str(i % 7) for i in range(rows)])})
    with spool.reader() as reader:
        for batch in table.to_batches(max_chunksize=50_000):
            output.write(batch)
        assert not spool.closed and spool.size > 4
        head = reader.read(spool.size)  # what the first row groups wrote, before the footer exists
        profile = output.close()
        assert head + reader.read() == out.read_bytes()
    assert pq.read_table(out).equals(table)
    assert profile.row_count == rows
    with pytest.raises(ValueError, match="keeps no hash"):
        spool.sha256()
