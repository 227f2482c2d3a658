"""The v2 recipe's pieces: where thresholds come from, the optimiser's slower backbone, the
recipe table and the CLI's checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import TinyDataset
from training import metrics
from training.__main__ import main as training_cli
from training.recipes import RECIPES, Recipe


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
            litert=False,  # not what this test is about
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
        ([], "the dataset is not there"),
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


def test_train_help_shows_each_flag_and_default_without_tensorflow() -> None:
    from tests.cli_process import run_without_tensorflow

    result = run_without_tensorflow("training.__main__:main", ["train", "--help"])
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "--arch {seed,compact,lite0}" in text and "(default: lite0)" in text
    assert "training epochs (default: seed 10, compact 24, lite0 10)" in text
    assert "(default: None)" not in text
