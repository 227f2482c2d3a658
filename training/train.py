"""The training run: data checks, split, fit with validation mAP, thresholds, test scoring, export."""

from __future__ import annotations

import importlib.metadata
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np

from app.imaging import PREPROCESSING_SPEC
from app.model_store import CURVES_FILE
from training import metrics
from training.dataset import (
    RARE_GENRE_MIN_EXAMPLES,
    LabelTable,
    PosterBatches,
    check_images,
    describe_problems,
    image_path,
    load_labels,
    split_indices,
)
from training.efficientnet_lite import unfreeze_top
from training.export import write_version
from training.model import FINE_TUNABLE, build_model
from training.plots import save_curves


@dataclass
class TrainConfig:
    """Everything that decides what a run produces; recorded verbatim in the metadata."""

    csv: Path
    images: Path
    store: Path = Path("model_store")
    name: str = "poster-genres"
    version: str = ""
    arch: str = "compact"
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 0  # 0: no early stopping (the tutorial's fixed schedule)
    split_seed: int = 42
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    strict: bool = False
    limit: int = 0  # train on the first N unique posters only (smoke runs)
    workers: int = 2
    fine_tune_epochs: int = 0  # second phase with the backbone's top opened (lite0)
    fine_tune_from_block: int = 10
    fine_tune_learning_rate: float = 1e-4


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ValidationMAP(keras.callbacks.Callback):
    """Scores the validation split each epoch (mAP drives early stopping) and prints progress."""

    def __init__(self, batches: PosterBatches, labels: np.ndarray, genres: list[str], epochs: int):
        super().__init__()
        self.batches, self.labels, self.genres, self.epochs = batches, labels, genres, epochs
        self.history: list[dict[str, float]] = []
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        probs = self.model.predict(self.batches, verbose=0)
        result = metrics.score(self.labels, probs, np.full(len(self.genres), 0.5), self.genres)
        logs = logs if logs is not None else {}
        logs["val_mAP"] = result["mAP"]
        record = {
            "epoch": epoch + 1,
            "loss": float(logs.get("loss", float("nan"))),
            "val_loss": float(np.mean(keras.losses.binary_crossentropy(self.labels, probs))),
            "val_mAP": float(result["mAP"]),  # type: ignore[arg-type]
        }
        self.history.append(record)
        elapsed = time.monotonic() - self.started
        eta = elapsed / (epoch + 1) * (self.epochs - epoch - 1)
        say(
            f"epoch {epoch + 1}/{self.epochs}  loss {record['loss']:.4f}  "
            f"val_loss {record['val_loss']:.4f}  val_mAP {record['val_mAP']:.4f}  "
            f"elapsed {elapsed / 60:.1f} min  ETA {eta / 60:.1f} min  peak RSS {peak_rss_mb():.0f} MB"
        )


def _early_stopping(patience: int) -> keras.callbacks.EarlyStopping:
    return keras.callbacks.EarlyStopping(
        monitor="val_mAP", mode="max", patience=patience, restore_best_weights=True
    )


def _library_versions() -> dict[str, str]:
    names = ("tensorflow-cpu", "tensorflow", "keras", "numpy", "pillow")
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    found["python"] = platform.python_version()
    return found


def _prepare_data(config: TrainConfig) -> tuple[LabelTable, dict[str, Any]]:
    table = load_labels(config.csv)
    if config.limit:
        table = table.subset(range(min(config.limit, len(table.ids))))
    say(f"{len(table.ids)} unique posters, {len(table.genres)} genres")
    if table.merged_duplicates:
        say(f"merged {len(table.merged_duplicates)} identical duplicate rows")
    table, skipped = check_images(table, config.images, strict=config.strict)
    if skipped:
        say(f"skipped {len(skipped)} posters: {describe_problems(skipped)}")
    counts = table.genre_counts()
    rare = [g for g, c in counts.items() if c < RARE_GENRE_MIN_EXAMPLES]
    if rare:
        say(f"genres with fewer than {RARE_GENRE_MIN_EXAMPLES} examples (trained, flagged): {rare}")
    info = {
        "csv": config.csv.name,
        "fingerprint_sha256": table.fingerprint,
        "n_posters": len(table.ids),
        "merged_duplicates": table.merged_duplicates,
        "skipped": skipped,
        "genre_counts": counts,
        "rare_genres": rare,
    }
    return table, info


def run(config: TrainConfig) -> Path:
    """Train, evaluate and export one model version; returns its directory."""
    if config.fine_tune_epochs and config.arch not in FINE_TUNABLE:
        # Checked first: finding out after the first phase would waste the whole run.
        raise ValueError(f"--fine-tune-epochs needs a pretrained architecture: {FINE_TUNABLE}")
    started = time.monotonic()
    table, data_info = _prepare_data(config)
    split = split_indices(
        table.labels,
        seed=config.split_seed,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
    )
    parts = {name: table.subset(index) for name, index in split.items()}
    say(", ".join(f"{name} {len(p.ids)}" for name, p in parts.items()))

    def batches(part: LabelTable, shuffle: bool) -> PosterBatches:
        return PosterBatches(
            [image_path(config.images, i) for i in part.ids],
            part.labels if shuffle else None,
            batch_size=config.batch_size,
            shuffle_seed=config.split_seed if shuffle else None,
            workers=config.workers,
        )

    keras.utils.set_random_seed(config.split_seed)
    model = build_model(config.arch, len(table.genres))
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="binary_crossentropy")
    val_batches = batches(parts["validation"], shuffle=False)
    total_epochs = config.epochs + config.fine_tune_epochs
    progress = ValidationMAP(val_batches, parts["validation"].labels, table.genres, total_epochs)
    train_batches = batches(parts["train"], shuffle=True)

    def fit(epochs: int) -> None:
        """One phase: `epochs` more epochs, early-stopped (best weights kept) when configured."""
        callbacks: list[keras.callbacks.Callback] = [progress]
        if config.patience:
            callbacks.append(_early_stopping(config.patience))
        model.fit(
            train_batches,
            initial_epoch=len(progress.history),
            epochs=len(progress.history) + epochs,
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 0,
        )

    fit(config.epochs)
    frozen_epochs = len(progress.history)
    if config.fine_tune_epochs:
        opened = unfreeze_top(model, config.fine_tune_from_block)
        say(f"fine-tuning: {opened} backbone layers from block {config.fine_tune_from_block} open")
        model.compile(
            optimizer=keras.optimizers.Adam(config.fine_tune_learning_rate),
            loss="binary_crossentropy",
        )
        best_before = max(r["val_mAP"] for r in progress.history)
        kept = {v.path: v.numpy() for v in model.weights}
        fit(config.fine_tune_epochs)
        # Early stopping may end this phase short, so count its epochs from where it began.
        if max(r["val_mAP"] for r in progress.history[frozen_epochs:]) < best_before:
            say("fine-tuning did not beat the frozen backbone on validation; keeping the latter")
            for variable in model.weights:
                variable.assign(kept[variable.path])

    prior = metrics.label_prior(parts["train"].labels)
    val_probs = model.predict(val_batches, verbose=0)
    thresholds = metrics.tune_thresholds(parts["validation"].labels, val_probs)
    test = parts["test"]
    test_probs = model.predict(batches(test, shuffle=False), verbose=0)

    def scored(part: LabelTable, probs: np.ndarray) -> dict[str, Any]:
        model_result = metrics.score(part.labels, probs, thresholds, table.genres)
        prior_result = metrics.score(
            part.labels, metrics.prior_predictions(prior, len(part.ids)), thresholds, table.genres
        )
        return {"model": model_result, "label_prior": prior_result}

    validation_scores = scored(parts["validation"], val_probs)
    test_scores = scored(test, test_probs)
    say(metrics.format_table(test_scores["model"], test_scores["label_prior"]))
    best = max(progress.history, key=lambda r: r["val_mAP"]) if progress.history else {}

    metadata: dict[str, Any] = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "architecture": config.arch,
        "genres": table.genres,
        "thresholds": [float(t) for t in thresholds],
        "label_prior": [float(p) for p in prior],
        "input": PREPROCESSING_SPEC,
        "data": data_info,
        "split": {
            "seed": config.split_seed,
            "fractions": {
                "train": 1 - config.val_fraction - config.test_fraction,
                "validation": config.val_fraction,
                "test": config.test_fraction,
            },
            "ids": {name: part.ids for name, part in parts.items()},
        },
        "metrics": {
            "validation": {k: metrics.summary(v) for k, v in validation_scores.items()},
            "test": {k: metrics.summary(v) for k, v in test_scores.items()},
            "test_per_genre": test_scores["model"]["per_genre"],
        },
        "training": {
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
            "epochs_run": len(progress.history),
            "first_phase_epochs_run": frozen_epochs,
            "best_epoch": best.get("epoch"),
            "history": progress.history,
            "duration_s": round(time.monotonic() - started, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "machine": f"{platform.machine()}, {platform.system()}, {_cpu_count()} cores",
        },
        "libraries": _library_versions(),
    }
    version = config.version or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    path = write_version(
        config.store,
        config.name,
        version,
        model,
        metadata,
        extra_files=lambda folder: save_curves(progress.history, folder / CURVES_FILE),
    )
    say(
        f"wrote {path} in {metadata['training']['duration_s'] / 60:.1f} min, "
        f"peak RSS {peak_rss_mb():.0f} MB"
    )
    return path


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0))
