"""The training package on the tiny synthetic dataset: quirks, split, metrics, artifacts, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from poster_genres.artifact import load_version, sha256_of, write_version
from poster_genres.preprocessing import poster_to_input
from tests.conftest import TINY_GENRES, TinyDataset, tiny_config, write_tiny_dataset
from training.__main__ import main as training_cli
from training.dataset import (
    DatasetError,
    PosterBatches,
    check_images,
    image_path,
    load_labels,
    split_indices,
)
from training.export import record_comparison
from training.model import build_model


def test_labels_keep_header_order_and_merge_identical_duplicates(tiny_dataset: TinyDataset) -> None:
    table = load_labels(tiny_dataset.csv)
    assert table.genres == TINY_GENRES
    assert table.merged_duplicates == [tiny_dataset.duplicated_id]
    assert len(table.ids) == len(set(table.ids)) == 49
    assert table.labels.shape == (49, 4) and table.labels.dtype == np.uint8


def test_conflicting_duplicate_is_an_error_naming_the_id(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("Id,Genre,A,B\ntt1,x,1,0\ntt1,x,0,1\n")
    with pytest.raises(DatasetError, match="tt1"):
        load_labels(csv)


def test_label_cell_not_0_or_1_names_row_and_column(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("Id,Genre,A,B\ntt1,x,1,0\ntt2,x,0,yes\n")
    with pytest.raises(DatasetError, match=r"t\.csv:3: column 'B'"):
        load_labels(csv)


def test_missing_image_is_reported_and_skipped_or_fatal_when_strict(
    tiny_dataset: TinyDataset,
) -> None:
    table = load_labels(tiny_dataset.csv)
    kept, skipped = check_images(table, tiny_dataset.images, strict=False)
    assert skipped == {tiny_dataset.missing_id: "missing"}
    assert len(kept.ids) == 48 and tiny_dataset.missing_id not in kept.ids
    with pytest.raises(DatasetError, match=tiny_dataset.missing_id):
        check_images(table, tiny_dataset.images, strict=True)


def test_unreadable_image_is_reported(tmp_path: Path) -> None:
    dataset = write_tiny_dataset(tmp_path, n=6)
    image_path(dataset.images, "tt0000002").write_bytes(b"not a jpeg")
    _, skipped = check_images(load_labels(dataset.csv), dataset.images, strict=False)
    assert set(skipped) == {"tt0000002", dataset.missing_id}
    assert skipped["tt0000002"].startswith("unreadable")


def test_split_is_deterministic_disjoint_and_complete() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((500, 6)) < [0.5, 0.3, 0.1, 0.05, 0.02, 0.01]).astype(np.uint8)
    first = split_indices(labels, seed=7)
    assert first == split_indices(labels, seed=7)
    assert first != split_indices(labels, seed=8)
    together = first["train"] + first["validation"] + first["test"]
    assert sorted(together) == list(range(500))
    assert 60 <= len(first["test"]) <= 90 and 60 <= len(first["validation"]) <= 90
    rare = np.flatnonzero(labels[:, 3])  # 5% genre: every split gets some
    for part in first.values():
        assert np.intersect1d(rare, part).size > 0


def test_batches_stream_the_shared_preprocessing(tiny_dataset: TinyDataset) -> None:
    paths = sorted(tiny_dataset.images.glob("*.jpg"))[:5]
    batches = PosterBatches(paths, np.zeros((5, 4)), batch_size=2)
    assert len(batches) == 3
    images, labels = batches[0]
    assert images.shape == (2, 400, 400, 3) and labels.shape == (2, 4)
    np.testing.assert_array_equal(images[0], poster_to_input(paths[0].read_bytes()))


def test_seed_architecture_is_the_tutorial_cnn() -> None:
    model = build_model("seed", 25)
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [16, 32, 64, 64]
    assert all(c.kernel_size == (5, 5) for c in convs)
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert [d.units for d in dense] == [128, 64, 25]
    assert dense[-1].activation.__name__ == "sigmoid"
    dropouts = [layer.rate for layer in model.layers if layer.__class__.__name__ == "Dropout"]
    assert dropouts == [0.25] * 4 + [0.5, 0.5]
    assert model.input_shape == (None, 400, 400, 3) and model.output_shape == (None, 25)


def test_unknown_architecture_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("resnet9000", 3)


def test_training_writes_every_artifact(tiny_version: Path) -> None:
    files = {p.name for p in tiny_version.iterdir()}
    assert files == {
        "model.keras", "model.tflite", "genres.json", "metadata.json", "curves.png",
        "reliability.png", "validation.npz",
    }  # fmt: skip
    metadata = json.loads((tiny_version / "metadata.json").read_text())
    assert metadata["litert"]["sha256"] == sha256_of(tiny_version / "model.tflite")
    assert metadata["litert"]["parity"]["max_abs_difference"] <= 1e-4
    assert metadata["litert"]["parity"]["changed_predicted"] == 0
    held_out = np.load(tiny_version / "validation.npz")
    assert list(held_out["ids"]) == metadata["split"]["ids"]["validation"]
    assert held_out["raw"].shape == held_out["labels"].shape == (len(held_out["ids"]), 4)
    assert json.loads((tiny_version / "genres.json").read_text()) == TINY_GENRES
    assert metadata["model_sha256"] == sha256_of(tiny_version / "model.keras")
    assert len(metadata["thresholds"]) == 4
    ids = metadata["split"]["ids"]
    assert not set(ids["train"]) & set(ids["test"])
    assert sum(len(v) for v in ids.values()) == 48
    assert metadata["data"]["skipped"] == {"tt9999999": "missing"}
    assert metadata["data"]["rare_genres"] == TINY_GENRES  # all under 30 examples here
    for split in ("validation", "test"):
        assert set(metadata["metrics"][split]) == {"model", "label_prior"}
    assert metadata["training"]["epochs_run"] == 3
    assert metadata["training"]["peak_rss_mb"] > 0
    assert (tiny_version / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_loader_reads_the_trained_version(tiny_version: Path) -> None:
    loaded = load_version(tiny_version)
    assert loaded.genres == TINY_GENRES and loaded.version == "tiny"
    assert loaded.model.output_shape == (None, 4)


def test_the_tiny_model_learns_the_colour_patterns(tiny_version: Path) -> None:
    metadata = json.loads((tiny_version / "metadata.json").read_text())
    validation = metadata["metrics"]["validation"]
    assert validation["model"]["macro_AUC"] > validation["label_prior"]["macro_AUC"]


def test_failed_write_leaves_no_version_behind(tmp_path: Path) -> None:
    model = build_model("seed", 2)

    def explode(folder: Path) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        metadata = {
            "genres": ["a", "b"],
            "thresholds": [0.5, 0.5],
            "architecture": "seed",
            "created_at": "2026-11-27T00:00:00+00:00",
        }
        write_version(tmp_path, "m", "v1", model, metadata, extra_files=explode)
    assert list((tmp_path / "m").iterdir()) == []


def test_evaluate_cli_prints_table_and_json_last_line(
    tiny_version: Path, tiny_dataset: TinyDataset, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", "--model-dir", str(tiny_version), "--images", str(tiny_dataset.images)]
    assert training_cli([*argv, "--csv", str(tiny_dataset.csv), "--split", "test"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["genre", "pos", "AP"]
    result = json.loads(lines[-1])
    for key in ("mAP", "micro_AP", "macro_AUC", "micro_F1", "macro_F1", "precision_at_3"):
        assert key in result
    recorded = json.loads((tiny_version / "metadata.json").read_text())["metrics"]["test"]
    assert result["n_images"] == recorded["model"]["n_images"]
    assert result["mAP"] == pytest.approx(recorded["model"]["mAP"], abs=0.005)
    assert result["label_prior"]["mAP"] == pytest.approx(recorded["label_prior"]["mAP"], abs=1e-9)


def test_compare_records_a_baseline_on_the_same_split(tmp_path: Path, tiny_version: Path) -> None:
    import shutil

    shipped = tmp_path / "shipped"
    shutil.copytree(tiny_version, shipped)
    record_comparison(shipped, tiny_version, "seed")
    metadata = json.loads((shipped / "metadata.json").read_text())
    assert metadata["compared"]["seed"]["test"] == metadata["metrics"]["test"]["model"]
    assert load_version(shipped).version == "tiny"  # the model file is untouched

    other = json.loads((tiny_version / "metadata.json").read_text())
    other["split"]["ids"]["test"] = other["split"]["ids"]["test"][1:]
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    (elsewhere / "metadata.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="other posters"):
        record_comparison(shipped, elsewhere, "seed")


def test_saved_model_carries_no_optimizer_state(tiny_version: Path) -> None:
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(tiny_version / "model.keras") as archive:
        weights = io.BytesIO(archive.read("model.weights.h5"))
    with h5py.File(weights) as h5:
        assert "optimizer" not in h5


def test_model_card_is_generated_from_metadata(tmp_path: Path, tiny_version: Path) -> None:
    import shutil

    from training.card import END, START, model_card, write_card

    version = tmp_path / "v"
    shutil.copytree(tiny_version, version)
    record_comparison(version, tiny_version, "seed")
    card = model_card(version)
    recorded = json.loads((version / "metadata.json").read_text())["metrics"]["test"]
    assert f"| {recorded['model']['mAP']:.3f} |" in card
    assert "label prior" in card and "seed (`compact`, same split)" in card
    assert "python -m training train --arch compact --epochs 3" in card
    page = tmp_path / "docs" / "model-card.md"
    write_card(version, page)  # a new page: a title, then the card between the markers
    assert page.read_text().startswith("# Model card") and START in page.read_text()
    page.write_text(f"intro\n{START}\nSTALE-CARD\n{END}\noutro\n")
    write_card(version, page)  # an existing page: only the text between the markers changes
    text = page.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "STALE-CARD" not in text
    assert f"{START}\n{model_card(version, page_dir=page.parent)}\n{END}" in text
    if "reliability.png" in card:  # figures are linked from the page's folder
        assert "(../v/reliability.png)" in text


def test_fine_tuning_a_model_without_a_pretrained_backbone_fails_before_any_work(
    tmp_path: Path,
) -> None:
    from training.recipes import Recipe
    from training.train import TrainConfig, run

    missing = tmp_path / "does-not-exist.csv"  # never read: the check comes first
    recipe = Recipe(epochs=1, batch_size=2, learning_rate=1e-3, backbone_lr_scale=0.1)
    with pytest.raises(ValueError, match="pretrained architecture"):
        run(TrainConfig(csv=missing, images=tmp_path, arch="compact", recipe=recipe))


def test_an_interrupted_run_resumes_at_its_last_epoch_and_ends_where_one_run_ends(
    tmp_path: Path, tiny_dataset: TinyDataset, tiny_version: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training import train as training_run

    config = tiny_config(tiny_dataset, tmp_path, litert=False)
    record_epoch = training_run.Progress.on_epoch_end

    def stop_after_second(
        self: training_run.Progress, epoch: int, logs: dict[str, float] | None = None
    ) -> None:
        record_epoch(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(training_run.Progress, "on_epoch_end", stop_after_second)
    with pytest.raises(KeyboardInterrupt):
        training_run.run(config)
    backups = tmp_path / ".checkpoints" / "poster-genres" / "tiny" / "phase1"
    assert len(json.loads((backups / "history.json").read_text())) == 2
    monkeypatch.setattr(training_run.Progress, "on_epoch_end", record_epoch)

    resumed = training_run.run(config)

    ran = json.loads((resumed / "metadata.json").read_text())["training"]
    whole = json.loads((tiny_version / "metadata.json").read_text())["training"]
    assert [r["epoch"] for r in ran["history"]] == [1, 2, 3]
    assert ran["history"] == whole["history"]
    assert not (tmp_path / ".checkpoints" / "poster-genres" / "tiny").exists()
    one_run = load_version(tiny_version).model.get_weights()
    for got, want in zip(load_version(resumed).model.get_weights(), one_run, strict=True):
        np.testing.assert_array_equal(got, want)
