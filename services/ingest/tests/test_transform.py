"""TransformDataset: recipes, splits, lineage and content-hash idempotency."""

from __future__ import annotations

import hashlib
import io

import grpc
import numpy as np
import pandas as pd
import pytest

from ferry.ingest.v1 import ingest_pb2 as pb
from ferry_ingest.messages import recipe_from_proto
from ferry_ingest.testing import Ingest, csv_bytes, rpc_error

Step = pb.RecipeStep


def _split(*parts: tuple[str, float], seed: int = 7, stratify: str = "") -> pb.RecipeStep:
    fractions = [pb.SplitFraction(name=name, fraction=fraction) for name, fraction in parts]
    return Step(split=pb.SplitStep(fractions=fractions, seed=seed, stratify_column=stratify))


CLEAN = pb.Recipe(
    steps=[
        Step(drop=pb.DropStep(columns=["flag"])),
        Step(filter=pb.FilterStep(column="id", operator=pb.FILTER_OPERATOR_GE, value="100")),
        Step(fill_null=pb.FillNullStep(column="score", strategy=pb.FILL_STRATEGY_MEAN)),
        Step(rename=pb.RenameStep(columns={"kind": "category"})),
        Step(cast=pb.CastStep(column="id", type="double")),
        _split(("train", 0.7), ("validation", 0.1), ("test", 0.2), stratify="category"),
    ]
)


def _transform(
    ingest: Ingest, source: str, recipe: pb.Recipe, dataset_id: str = "penguins-clean", request_id: str = ""
) -> pb.DatasetVersion:
    request = pb.TransformDatasetRequest(source=source, dataset_id=dataset_id, recipe=recipe, request_id=request_id)
    version: pb.DatasetVersion = ingest.stub.TransformDataset(request, timeout=60)
    return version


def test_recipe_with_split_makes_a_version_with_lineage_and_disjoint_parts(ingest: Ingest) -> None:
    data = csv_bytes(1000)
    parent = ingest.upload("penguins", data)
    version = _transform(ingest, parent.name, CLEAN)

    assert version.name == "datasets/penguins-clean/versions/1"
    assert version.lineage.parent == parent.name
    assert version.lineage.recipe == CLEAN

    source = pd.read_csv(io.BytesIO(data))
    expected = source.drop(columns=["flag"])
    expected = expected[expected["id"] >= 100].copy()
    expected["score"] = expected["score"].fillna(expected["score"].mean())
    expected = expected.rename(columns={"kind": "category"})
    expected["id"] = expected["id"].astype(float)

    whole = ingest.read_table(version.name).to_pandas()
    pd.testing.assert_frame_equal(whole, expected.reset_index(drop=True))
    assert [(f.name, f.type) for f in version.schema.fields] == [
        ("id", "double"),
        ("score", "double"),
        ("category", "string"),
    ]
    assert version.row_count == 900

    sizes = {s.name: s.row_count for s in version.splits}
    assert sizes == {"train": 630, "validation": 90, "test": 180}
    parts = {name: ingest.read_table(version.name, split=name).to_pandas() for name in sizes}
    ids = [set(part["id"]) for part in parts.values()]
    assert set.union(*ids) == set(whole["id"]) and sum(map(len, ids)) == len(whole)
    # Stratified: every part keeps the class proportions (300 of each class).
    for name, part in parts.items():
        counts = part["category"].value_counts()
        assert counts.max() - counts.min() <= 1, (name, counts)
    # Each split is an object standard tools read, with its own profile.
    for split in version.splits:
        assert split.uri.endswith(f"datasets/penguins-clean/versions/1/splits/{split.name}.parquet")
        assert ingest.read_from_store(split.uri).num_rows == split.row_count
        profile = ingest.stub.GetProfile(pb.GetProfileRequest(name=version.name, split=split.name))
        assert profile.split == split.name and profile.row_count == split.row_count


def test_same_recipe_on_same_parent_returns_the_existing_version(ingest: Ingest) -> None:
    parent = ingest.upload("penguins", csv_bytes(300))
    first = _transform(ingest, parent.name, CLEAN)
    again = _transform(ingest, parent.name, CLEAN)
    assert again.name == first.name
    expected = hashlib.sha256((parent.sha256 + recipe_from_proto(CLEAN).canonical_json()).encode()).hexdigest()
    assert first.sha256 == expected
    # Another seed is another recipe: a new version, with other parts.
    reseeded = pb.Recipe()
    reseeded.CopyFrom(CLEAN)
    reseeded.steps[-1].split.seed = 8
    other = _transform(ingest, parent.name, reseeded)
    assert other.version == 2 and other.sha256 != first.sha256
    train_a = ingest.read_table(first.name, split="train").column("id").to_pylist()
    train_b = ingest.read_table(other.name, split="train").column("id").to_pylist()
    assert sorted(train_a) != sorted(train_b)
    # The same seed gives the same parts (a fresh dataset, so nothing is deduplicated).
    replay = _transform(ingest, parent.name, CLEAN, dataset_id="penguins-replay")
    assert ingest.read_table(replay.name, split="train").column("id").to_pylist() == train_a


def test_select_deduplicate_filter_in_and_fill_with_value_mode_and_median(ingest: Ingest) -> None:
    frame = pd.DataFrame(
        {
            "a": [1, 1, 2, 2, 3, None, 5, 5],
            "b": ["x", "x", "y", None, "y", "z", "z", "z"],
            "c": [0.5, 0.5, 1.5, 2.5, None, 4.0, 9.0, 9.0],
        }
    )
    parent = ingest.upload("small", frame.to_csv(index=False).encode())
    recipe = pb.Recipe(
        steps=[
            Step(select=pb.SelectStep(columns=["c", "a", "b"])),
            Step(deduplicate=pb.DeduplicateStep()),
            Step(fill_null=pb.FillNullStep(column="a", strategy=pb.FILL_STRATEGY_MEDIAN)),
            Step(fill_null=pb.FillNullStep(column="b", strategy=pb.FILL_STRATEGY_MODE)),
            Step(fill_null=pb.FillNullStep(column="c", value="-1")),
            Step(filter=pb.FilterStep(column="b", operator=pb.FILTER_OPERATOR_IN, values=["y", "z"])),
        ]
    )
    out = ingest.read_table(_transform(ingest, parent.name, recipe).name).to_pandas()
    expected = frame[["c", "a", "b"]].drop_duplicates()
    expected["a"] = expected["a"].fillna(round(expected["a"].median()))
    expected["b"] = expected["b"].fillna(expected["b"].mode().iloc[0])
    expected["c"] = expected["c"].fillna(-1)
    expected = expected[expected["b"].isin(["y", "z"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(out, expected, check_dtype=False)


def test_split_without_stratify_has_exact_sizes_and_is_reproducible(ingest: Ingest) -> None:
    parent = ingest.upload("penguins", csv_bytes(1001))
    version = _transform(ingest, parent.name, pb.Recipe(steps=[_split(("train", 0.8), ("test", 0.2), seed=3)]))
    sizes = {s.name: s.row_count for s in version.splits}
    assert sizes == {"train": 801, "test": 200}
    train = np.array(ingest.read_table(version.name, split="train").column("id").to_pylist())
    assert not np.array_equal(train, np.arange(801))  # shuffled, not the first rows


@pytest.mark.parametrize(
    ("step", "field", "value"),
    [
        (Step(select=pb.SelectStep(columns=["id", "nope"])), "recipe.steps[0].select.columns", "'nope'"),
        (
            Step(filter=pb.FilterStep(column="score", operator=pb.FILTER_OPERATOR_GT, value="high")),
            "recipe.steps[0].filter.value",
            "'high'",
        ),
        (Step(filter=pb.FilterStep(column="score", value="1")), "recipe.steps[0].filter.operator", "required"),
        (Step(cast=pb.CastStep(column="id", type="int128")), "recipe.steps[0].cast.type", "'int128'"),
        (Step(cast=pb.CastStep(column="kind", type="int64")), "recipe.steps[0].cast.type", "'kind'"),
        (
            Step(fill_null=pb.FillNullStep(column="kind", strategy=pb.FILL_STRATEGY_MEAN)),
            "recipe.steps[0].fill_null.strategy",
            "'kind'",
        ),
        (Step(rename=pb.RenameStep(columns={"id": "kind"})), "recipe.steps[0].rename.columns", "kind"),
        (_split(("train", 0.8), ("test", 0.3)), "recipe.steps[0].split.fractions", "sum to 1.1"),
        (_split(("Train", 1.0)), "recipe.steps[0].split.fractions[0].name", "'Train'"),
        (_split(("train", 1.0), stratify="nope"), "recipe.steps[0].split.stratify_column", "'nope'"),
        (Step(), "recipe.steps[0]", "empty step"),
    ],
)
def test_bad_steps_are_invalid_and_named(ingest: Ingest, step: pb.RecipeStep, field: str, value: str) -> None:
    parent = ingest.upload("penguins", csv_bytes(20))
    error = rpc_error(_transform, ingest, parent.name, pb.Recipe(steps=[step]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(field) and value in error.details(), error.details()


def test_split_must_be_last_and_sources_must_exist(ingest: Ingest) -> None:
    parent = ingest.upload("penguins", csv_bytes(20))
    recipe = pb.Recipe(steps=[_split(("train", 1.0)), Step(drop=pb.DropStep(columns=["flag"]))])
    error = rpc_error(_transform, ingest, parent.name, recipe)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "recipe.steps[0].split" in error.details()
    error = rpc_error(_transform, ingest, "datasets/penguins/versions/9", CLEAN)
    assert error.code() == grpc.StatusCode.NOT_FOUND and "version 9" in error.details()
    error = rpc_error(_transform, ingest, parent.name, CLEAN, dataset_id="Bad")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "dataset_id" in error.details()
    assert rpc_error(_transform, ingest, parent.name, pb.Recipe()).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_cast_that_fails_on_a_value_names_the_step(ingest: Ingest) -> None:
    parent = ingest.upload("mixed", b"code\n12\n7\nx9\n")
    recipe = pb.Recipe(
        steps=[
            Step(fill_null=pb.FillNullStep(column="code", value="0")),
            Step(cast=pb.CastStep(column="code", type="int64")),
        ]
    )
    error = rpc_error(_transform, ingest, parent.name, recipe)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("recipe.steps[1].cast.type") and "'code'" in error.details()
