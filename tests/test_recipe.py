"""The v2 recipe's pieces: metrics where macro and micro differ, where thresholds come from,
calibration folded into the model, the optimiser's slower backbone, and the CLI's checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from poster_genres.decision import DecisionRule
from tests.conftest import TinyDataset
from training import calibration, metrics
from training.__main__ import main as training_cli
from training.recipes import RECIPES, Recipe


def test_macro_map_is_not_micro_ap() -> None:
    # Genre a is ranked perfectly; genre b is ranked backwards. Pooled, the two blur together.
    truth = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    probs = np.array([[0.9, 0.8], [0.8, 0.7], [0.1, 0.2], [0.2, 0.9]])
    macro = metrics.mean_average_precision(truth, probs)
    assert macro == pytest.approx((1.0 + 1 / 4) / 2)  # b's only positive is ranked last
    assert metrics.score(truth, probs, np.full(2, 0.5), ["a", "b"])["mAP"] == pytest.approx(macro)
    micro = metrics.average_precision(truth.ravel(), probs.ravel())
    # Pooled, ties put negatives first: positives at ranks 2, 4 and 7 of 8.
    assert micro == pytest.approx(np.mean([1 / 2, 2 / 4, 3 / 7]))
    assert abs(macro - micro) > 0.05


def test_set_scores_of_predicted_lists() -> None:
    truth = np.array([[1, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=bool)
    chosen = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]], dtype=bool)
    figures = metrics.set_scores(truth, chosen)
    assert figures["precision"] == pytest.approx(2 / 3)
    assert figures["recall"] == pytest.approx(2 / 4)
    assert figures["micro_F1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    # Per genre F1: a 2/3, b 0, c 1.
    assert figures["macro_F1"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert figures["mean_predicted"] == pytest.approx(1.0)


def test_decision_scores_report_the_lowest_shown_probability_and_empty_lists() -> None:
    rule = DecisionRule.build(["a", "b"], [0.3, 0.3], [True, True])
    probs = np.array([[0.5, 0.12], [0.05, 0.02]])
    figures = metrics.decision_scores(np.array([[1, 0], [0, 1]]), probs, rule)
    assert figures["min_predicted_probability"] == 0.5
    assert figures["empty_share"] == 0.5


def test_thresholds_are_tuned_on_validation_labels_only(
    tiny_dataset: TinyDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training import train

    received: list[np.ndarray] = []
    real = metrics.tune_thresholds

    def recording(labels: np.ndarray, probs: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        received.append(np.asarray(labels).copy())
        return real(labels, probs, *args, **kwargs)

    monkeypatch.setattr(train.metrics, "tune_thresholds", recording)
    path = train.run(
        train.TrainConfig(
            csv=tiny_dataset.csv,
            images=tiny_dataset.images,
            store=tmp_path,
            version="leak-check",
            arch="compact",
            recipe=Recipe(epochs=1, batch_size=16, learning_rate=1e-3, refit=True),
            val_fraction=0.25,
            test_fraction=0.25,
        )
    )
    from poster_genres.metadata import read_metadata

    split = read_metadata(path / "metadata.json").split
    assert split is not None and split.trained_on == ["train", "validation"]
    table = train.load_labels(tiny_dataset.csv)
    by_id = dict(zip(table.ids, table.labels, strict=True))
    validation = np.array([by_id[i] for i in split.ids["validation"]])
    assert len(received) == 1
    np.testing.assert_array_equal(received[0], validation)


def test_platt_scaling_folded_into_the_last_layer_is_exact() -> None:
    inputs = keras.Input((5,))
    outputs = keras.layers.Dense(3, activation="sigmoid", name="genres")(inputs)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(1).normal(size=(20, 5)).astype(np.float32)
    before = model.predict_on_batch(x).astype(np.float64)
    platt = calibration.Platt(np.array([0.5, 1.0, 2.0]), np.array([-1.0, 0.0, 0.3]))
    calibration.fold_into_model(model, platt)
    after = model.predict_on_batch(x).astype(np.float64)
    np.testing.assert_allclose(after, platt.apply(before), atol=1e-5)


def test_platt_scaling_repairs_an_overconfident_genre() -> None:
    rng = np.random.default_rng(0)
    truth_p = rng.uniform(0.05, 0.6, size=4000)
    labels = (rng.random(4000) < truth_p).astype(float)[:, None]
    overconfident = calibration.sigmoid(3 * calibration.logit(truth_p))[:, None]
    platt = calibration.fit_platt(labels, overconfident, np.array([True]))
    assert platt.scale[0] == pytest.approx(1 / 3, abs=0.05)
    before = calibration.expected_calibration_error(labels, overconfident)
    after = calibration.expected_calibration_error(labels, platt.apply(overconfident))
    assert after < before / 2
    plain, cross_validated = calibration.cross_validated_ece(
        labels, overconfident, np.array([True])
    )
    assert plain == pytest.approx(before) and cross_validated < plain / 2


def test_expected_calibration_error_by_hand() -> None:
    labels = np.array([[1], [0], [0], [0]])
    probs = np.array([[0.95], [0.95], [0.05], [0.05]])
    # Two bins: 0.95 predicted vs 0.5 observed (half the pairs), 0.05 vs 0 (the other half).
    assert calibration.expected_calibration_error(labels, probs) == pytest.approx(
        0.5 * 0.45 + 0.5 * 0.05
    )
    bins = calibration.reliability(labels, probs)
    assert [b["count"] for b in bins] == [2, 2]


def test_a_zero_backbone_scale_leaves_the_backbone_untouched() -> None:
    from training.efficientnet_lite import open_backbone
    from training.model import build_model
    from training.optim import DiscriminativeAdamW

    model = build_model("lite0", 3, internal_size=32)
    slow = open_backbone(model)
    optimizer = DiscriminativeAdamW(slow, 0.0, learning_rate=1e-2, weight_decay=0.0)
    model.compile(optimizer=optimizer, loss="binary_crossentropy")
    before = [v.numpy().copy() for v in slow]
    head = model.get_layer("genres").get_weights()[0].copy()
    x = np.random.default_rng(0).random((2, 400, 400, 3)).astype(np.float32)
    model.train_on_batch(x, np.ones((2, 3), dtype=np.float32))
    assert max(float(np.abs(v.numpy() - b).max()) for v, b in zip(slow, before, strict=True)) == 0
    assert float(np.abs(model.get_layer("genres").get_weights()[0] - head).max()) > 1e-4


def test_the_shipped_recipe_is_the_v2_one() -> None:
    lite0 = RECIPES["lite0"]
    assert lite0.backbone_lr_scale == pytest.approx(0.05) and lite0.warmup_fraction > 0
    assert lite0.refit and lite0.patience == 0 and lite0.internal_size == 240


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--arch", "lite"], "invalid choice: 'lite'"),
        (["--arch", "compact", "--backbone-lr-scale", "0.1"], "pretrained architecture"),
        (["--epochs", "0"], "at least 1"),
        (["--refit", "--patience", "2"], "fixed number of epochs"),
    ],
)
def test_train_cli_refuses_bad_recipes_before_any_work(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = ["--csv", str(tmp_path / "none.csv"), "--images", str(tmp_path)]
    with pytest.raises(SystemExit) as stopped:
        training_cli(["train", *missing, *argv])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err
