"""The training-and-export core on the Palmer penguins (nulls, string categoricals).

The data ships inside the ``palmerpenguins`` package: nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from palmerpenguins import load_penguins

from ferry_common.errors import InvalidArgument
from ferry_train.pipeline import (
    PROBABILITY_ATOL,
    ExportedModel,
    ExportMismatchError,
    FitConfig,
    FitResult,
    FittedPreprocessor,
    TabularMlp,
    Task,
    build_mlp,
    export_onnx,
    fit,
    fit_preprocessor,
    predict_onnx,
    predict_torch,
    verify_export,
)

# Lightning's advice for big data sets, its own use of a deprecated torch API,
# and its notice that a checkpoint came from another directory (as a resumed
# job's will): none is about this code.
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers.*",
    "ignore:.*LeafSpec.*",
    "ignore:The dirpath has changed.*",
)

EPOCHS = 3
SEED = 7


@dataclass
class Run:
    preprocessor: FittedPreprocessor
    module: TabularMlp
    result: FitResult
    epochs: list[tuple[int, dict[str, float]]]
    checkpoint_dir: Path


@pytest.fixture(scope="module")
def penguins() -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = load_penguins()
    order = np.random.default_rng(0).permutation(len(frame))
    cut = int(len(frame) * 0.75)
    return frame.iloc[order[:cut]].reset_index(drop=True), frame.iloc[order[cut:]].reset_index(drop=True)


def train_run(
    splits: tuple[pd.DataFrame, pd.DataFrame],
    target: str,
    task: Task,
    checkpoint_dir: Path,
    *,
    max_epochs: int = EPOCHS,
    resume_from: Path | None = None,
) -> Run:
    train, validation = splits
    preprocessor = fit_preprocessor(train, target=target, features=[], task=task)
    x_train, y_train = preprocessor.encode_split(train, split_field="training_job.training_split")
    x_val, y_val = preprocessor.encode_split(validation, split_field="training_job.validation_split")
    pl.seed_everything(SEED, workers=True, verbose=False)
    module = build_mlp(preprocessor, y_train, hidden_units=[32, 16], learning_rate=1e-2)
    epochs: list[tuple[int, dict[str, float]]] = []

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        # The worker uploads this checkpoint before announcing the epoch.
        assert (checkpoint_dir / f"epoch={epoch}.ckpt").is_file()
        epochs.append((epoch, metrics))

    result = fit(
        module,
        (x_train, y_train),
        (x_val, y_val),
        FitConfig(
            max_epochs=max_epochs,
            batch_size=32,
            seed=SEED,
            checkpoint_dir=checkpoint_dir,
            resume_from=resume_from,
        ),
        on_epoch=on_epoch,
    )
    return Run(preprocessor, module, result, epochs, checkpoint_dir)


@pytest.fixture(scope="module")
def classifier(penguins: tuple[pd.DataFrame, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Run:
    return train_run(penguins, "species", Task.CLASSIFICATION, tmp_path_factory.mktemp("species"))


@pytest.fixture(scope="module")
def regressor(penguins: tuple[pd.DataFrame, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Run:
    return train_run(penguins, "body_mass_g", Task.REGRESSION, tmp_path_factory.mktemp("mass"))


@pytest.fixture(scope="module")
def classifier_onnx(classifier: Run) -> ExportedModel:
    return export_onnx(classifier.preprocessor, classifier.module)


@pytest.fixture(scope="module")
def regressor_onnx(regressor: Run) -> ExportedModel:
    return export_onnx(regressor.preprocessor, regressor.module)


def odd_rows(validation: pd.DataFrame) -> pd.DataFrame:
    """Validation rows plus one with nulls everywhere and one with an unseen island."""
    rows = pd.concat([validation, validation.iloc[[0, 1]]], ignore_index=True)
    nulls, unseen = len(rows) - 2, len(rows) - 1
    rows.loc[nulls, ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"]] = np.nan
    rows.loc[nulls, ["sex", "island"]] = None
    rows.loc[unseen, "island"] = "Atlantis"
    return rows


def test_classifier_reports_every_epoch_and_beats_the_majority_class(
    classifier: Run, penguins: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    assert [epoch for epoch, _ in classifier.epochs] == [0, 1, 2]
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(classifier.epochs[-1][1])
    assert classifier.result.epochs_completed == EPOCHS
    train, validation = penguins
    majority = validation["species"].eq(train["species"].mode()[0]).mean()
    assert classifier.result.metrics["val_accuracy"] > majority + 0.3
    assert classifier.preprocessor.classes == ("Adelie", "Chinstrap", "Gentoo")
    names = sorted(p.name for p in classifier.checkpoint_dir.iterdir())
    assert names == ["epoch=0.ckpt", "epoch=1.ckpt", "epoch=2.ckpt", "last.ckpt"]


def test_regressor_beats_predicting_the_training_mean(
    regressor: Run, penguins: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, validation = penguins
    target = validation["body_mass_g"].dropna()
    baseline_rmse = float(np.sqrt(((target - train["body_mass_g"].mean()) ** 2).mean()))
    assert {"train_loss", "val_loss", "val_rmse"} <= set(regressor.result.metrics)
    assert regressor.result.metrics["val_rmse"] < 0.7 * baseline_rmse


def test_classifier_onnx_equals_pytorch_on_raw_rows(
    classifier: Run, classifier_onnx: ExportedModel, penguins: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    rows = odd_rows(penguins[1])
    report = verify_export(classifier_onnx.onnx_bytes, classifier.preprocessor, classifier.module, rows)
    assert report.rows == len(rows) and report.labels_equal == len(rows)
    exported = predict_onnx(classifier_onnx.onnx_bytes, classifier.preprocessor, rows)
    reference = predict_torch(classifier.preprocessor, classifier.module, rows)
    np.testing.assert_allclose(exported.values, reference.values, rtol=0, atol=PROBABILITY_ATOL)
    np.testing.assert_allclose(exported.values.sum(axis=1), 1.0, atol=1e-5)
    assert exported.labels is not None and exported.labels.shape == (len(rows), 1)
    assert set(exported.labels.reshape(-1)) <= {"Adelie", "Chinstrap", "Gentoo"}
    # The rows the network never saw in that form still get finite answers.
    assert np.isfinite(exported.values[-2:]).all()


def test_regressor_onnx_equals_pytorch_on_raw_rows(
    regressor: Run, regressor_onnx: ExportedModel, penguins: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    rows = odd_rows(penguins[1]).drop(columns=["body_mass_g"])
    report = verify_export(regressor_onnx.onnx_bytes, regressor.preprocessor, regressor.module, rows)
    exported = predict_onnx(regressor_onnx.onnx_bytes, regressor.preprocessor, rows)
    assert exported.values.shape == (len(rows), 1) and np.isfinite(exported.values).all()
    assert report.max_abs_diff < 1e-5 * float(np.abs(exported.values).max())
    # In grams, around the penguins' mean, not the standardised scale.
    assert 2500 < float(np.median(exported.values)) < 6500


def test_verify_rejects_a_model_that_differs(
    classifier: Run, classifier_onnx: ExportedModel, penguins: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    other = build_mlp(classifier.preprocessor, np.zeros(1), hidden_units=[32, 16])
    with pytest.raises(ExportMismatchError, match="probabilities"):
        verify_export(classifier_onnx.onnx_bytes, classifier.preprocessor, other, penguins[1])


def test_signature_matches_design_and_graph(classifier_onnx: ExportedModel, regressor_onnx: ExportedModel) -> None:
    signature = classifier_onnx.signature.as_dict()
    assert signature["inputs"] == [
        {"name": "island", "datatype": "BYTES", "shape": [-1, 1]},
        {"name": "bill_length_mm", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "bill_depth_mm", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "flipper_length_mm", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "body_mass_g", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "sex", "datatype": "BYTES", "shape": [-1, 1]},
        {"name": "year", "datatype": "FP32", "shape": [-1, 1]},
    ]
    assert signature["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "label", "datatype": "BYTES", "shape": [-1, 1]},
    ]
    assert regressor_onnx.signature.as_dict()["outputs"] == [
        {"name": "prediction", "datatype": "FP32", "shape": [-1, 1]}
    ]
    assert "body_mass_g" not in {spec.name for spec in regressor_onnx.signature.inputs}
    # The graph itself says the same thing the signature does.
    for exported in (classifier_onnx, regressor_onnx):
        graph = onnx.load_model_from_string(exported.onnx_bytes).graph
        elem = {onnx.TensorProto.FLOAT: "FP32", onnx.TensorProto.STRING: "BYTES"}
        for value, spec in zip(
            [*graph.input, *graph.output],
            [*exported.signature.inputs, *exported.signature.outputs],
            strict=True,
        ):
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
            assert (value.name, elem[value.type.tensor_type.elem_type], tuple(dims)) == (
                spec.name,
                spec.datatype,
                spec.shape,
            )


def test_onnx_file_is_one_self_contained_file(classifier_onnx: ExportedModel, tmp_path: Path) -> None:
    model = onnx.load_model_from_string(classifier_onnx.onnx_bytes)
    assert not any(
        t.data_location == onnx.TensorProto.EXTERNAL for t in onnx.external_data_helper._get_all_tensors(model)
    )
    # Loaded from a directory holding nothing else, it still checks and runs.
    path = tmp_path / "model.onnx"
    path.write_bytes(classifier_onnx.onnx_bytes)
    onnx.checker.check_model(str(path), full_check=True)
    assert list(tmp_path.iterdir()) == [path]


def test_same_seed_gives_the_same_metrics(
    classifier: Run, penguins: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    again = train_run(penguins, "species", Task.CLASSIFICATION, tmp_path)
    assert again.result.metrics.keys() == classifier.result.metrics.keys()
    for name, value in classifier.result.metrics.items():
        assert again.result.metrics[name] == pytest.approx(value, abs=1e-6), name
    for a, b in zip(again.module.parameters(), classifier.module.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_resume_continues_after_the_checkpointed_epoch(
    classifier: Run, penguins: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    resumed = train_run(
        penguins,
        "species",
        Task.CLASSIFICATION,
        tmp_path,
        resume_from=classifier.checkpoint_dir / "epoch=1.ckpt",
    )
    # Epochs 0 and 1 are not trained again; epoch 2 is.
    assert [epoch for epoch, _ in resumed.epochs] == [2]
    assert resumed.result.epochs_completed == EPOCHS
    # Same data order per epoch and the same weights at the checkpoint: the
    # resumed run ends where the uninterrupted one did.
    for name, value in classifier.result.metrics.items():
        assert resumed.result.metrics[name] == pytest.approx(value, abs=1e-6), name


@pytest.mark.parametrize(
    ("target", "features", "task", "field", "message"),
    [
        ("weight", [], Task.CLASSIFICATION, "training_job.target", "'weight' not found"),
        ("species", ["island", "wingspan"], Task.CLASSIFICATION, "training_job.features[1]", "'wingspan' not found"),
        ("species", ["island", "species"], Task.CLASSIFICATION, "training_job.features[1]", "is the target"),
        ("species", [], Task.REGRESSION, "training_job.target", "numeric target"),
        ("island", [], Task.CLASSIFICATION, "training_job.target", "at least two classes"),
    ],
)
def test_bad_columns_name_the_field(
    penguins: tuple[pd.DataFrame, pd.DataFrame],
    target: str,
    features: list[str],
    task: Task,
    field: str,
    message: str,
) -> None:
    train = penguins[0]
    if message == "at least two classes":
        train = train[train["island"] == "Biscoe"]
    with pytest.raises(InvalidArgument, match=message) as caught:
        fit_preprocessor(train, target=target, features=features, task=task)
    assert caught.value.field == field
    assert caught.value.message.startswith(field)


def test_validation_class_unknown_to_training_names_the_split(
    penguins: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, validation = penguins
    preprocessor = fit_preprocessor(
        train[train["species"] != "Gentoo"], target="species", features=[], task=Task.CLASSIFICATION
    )
    with pytest.raises(InvalidArgument, match="Gentoo") as caught:
        preprocessor.encode_split(validation, split_field="training_job.validation_split")
    assert caught.value.field == "training_job.validation_split"


@pytest.mark.parametrize(
    ("hidden_units", "dropout", "learning_rate", "field"),
    [
        ([], 0.0, 1e-3, "training_job.model.mlp.hidden_units"),
        ([8, 0], 0.0, 1e-3, "training_job.model.mlp.hidden_units[1]"),
        ([8], 1.0, 1e-3, "training_job.model.mlp.dropout"),
        ([8], 0.0, 0.0, "training_job.hyperparameters.learning_rate"),
    ],
)
def test_bad_mlp_settings_name_the_field(
    classifier: Run, hidden_units: list[int], dropout: float, learning_rate: float, field: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        build_mlp(
            classifier.preprocessor,
            np.zeros(1),
            hidden_units=hidden_units,
            dropout=dropout,
            learning_rate=learning_rate,
        )
    assert caught.value.field == field


@pytest.mark.parametrize(("max_epochs", "batch_size", "field"), [(-1, 32, "max_epochs"), (3, 0, "batch_size")])
def test_bad_training_settings_name_the_field(max_epochs: int, batch_size: int, field: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument) as caught:
        FitConfig(max_epochs=max_epochs, batch_size=batch_size, seed=0, checkpoint_dir=tmp_path)
    assert caught.value.field == f"training_job.hyperparameters.{field}"


def test_a_model_of_numeric_features_only_exports_and_matches(
    penguins: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    """skl2onnx writes a numeric-only ColumnTransformer at a lower opset than the network's;
    the export lifts it (merge_models refused the mix: "different operator set ids")."""
    numeric = ["species", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    splits = (penguins[0][numeric], penguins[1][numeric])
    run = train_run(splits, "species", Task.CLASSIFICATION, tmp_path, max_epochs=1)
    exported = export_onnx(run.preprocessor, run.module)
    assert {spec.datatype for spec in exported.signature.inputs} == {"FP32"}
    report = verify_export(exported.onnx_bytes, run.preprocessor, run.module, splits[1])
    assert report.labels_equal == report.rows == len(splits[1])
