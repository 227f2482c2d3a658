"""The training run: data checks, split, fit with validation mAP, thresholds, test scoring, export."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import resource
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np

from poster_genres.artifact import CURVES_FILE, RELIABILITY_FILE, VALIDATION_FILE, write_version
from poster_genres.decision import NEVER_PREDICTED, DecisionRule
from poster_genres.metadata import SCHEMA_VERSION
from poster_genres.preprocessing import PREPROCESSING_SPEC
from training import calibration, metrics
from training.dataset import (
    RARE_GENRE_MIN_EXAMPLES,
    DatasetError,
    LabelTable,
    PosterBatches,
    check_images,
    describe_problems,
    image_path,
    load_labels,
    split_indices,
)
from training.drift_reference import record_drift_reference
from training.efficientnet_lite import open_backbone
from training.model import build_model
from training.optim import DiscriminativeAdamW, one_cycle
from training.plots import save_curves, save_reliability
from training.recipes import ARCHITECTURES, DEFAULT_ARCH, RECIPES, Recipe, check_recipe

# Tune a threshold (and let the genre be predicted) only with this many validation positives.
MIN_POSITIVES_TO_PREDICT = 15


@dataclass
class TrainConfig:
    """Everything that decides what a run produces; recorded verbatim in the metadata.

    `recipe` defaults to the architecture's own (training/recipes.py).
    """

    csv: Path
    images: Path
    store: Path = Path("model_store")
    name: str = "poster-genres"
    version: str = ""
    arch: str = DEFAULT_ARCH
    recipe: Recipe | None = None
    split_seed: int = 42
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    strict: bool = False
    limit: int = 0  # train on the first N unique posters only (smoke runs)
    workers: int = 2
    min_positives_to_predict: int = MIN_POSITIVES_TO_PREDICT
    litert: bool = True  # also export a checked model.tflite (training/litert_export.py)

    def __post_init__(self) -> None:
        if self.recipe is None and self.arch in RECIPES:
            self.recipe = RECIPES[self.arch]

    @property
    def hyper(self) -> Recipe:
        """The hyper-parameters: the recipe, set by __post_init__ for every known architecture."""
        if self.recipe is None:
            raise ValueError(f"unknown architecture {self.arch!r}; choose one of {ARCHITECTURES}")
        return self.recipe

    def check(self) -> None:
        """Refuse a contradictory configuration before any work is done."""
        check_recipe(self.arch, self.hyper)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Progress(keras.callbacks.Callback):
    """Prints each epoch; with a validation set, scores its mAP (which drives early stopping).

    With `saved`, the history so far is kept in that file, so a phase resumed after epoch
    `resumed_at` reports every epoch.
    """

    def __init__(
        self,
        epochs: int,
        validation: tuple[PosterBatches, np.ndarray] | None,
        genres: list[str],
        saved: Path | None = None,
        resumed_at: int = 0,
    ) -> None:
        super().__init__()
        self.epochs, self.validation, self.genres, self.saved = epochs, validation, genres, saved
        self.history: list[dict[str, float]] = []
        if resumed_at and saved is not None and saved.is_file():
            # The history is written before the checkpoint: a kill between the two re-runs that
            # epoch, so what follows the checkpoint's epoch is dropped.
            self.history = json.loads(saved.read_text())[:resumed_at]
        self.resumed_at = resumed_at
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs if logs is not None else {}
        record = {"epoch": epoch + 1, "loss": float(logs.get("loss", float("nan")))}
        if self.validation is not None:
            batches, labels = self.validation
            probs = self.model.predict(batches, verbose=0)
            val_map = metrics.mean_average_precision(labels, probs)
            logs["val_mAP"] = val_map
            record["val_loss"] = float(np.mean(keras.losses.binary_crossentropy(labels, probs)))
            record["val_mAP"] = val_map
        self.history.append(record)
        if self.saved is not None:
            self.saved.parent.mkdir(parents=True, exist_ok=True)
            self.saved.write_text(json.dumps(self.history))
        elapsed = time.monotonic() - self.started
        done_here = epoch + 1 - self.resumed_at
        eta = elapsed / done_here * (self.epochs - epoch - 1)
        shown = "  ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch")
        say(
            f"epoch {epoch + 1}/{self.epochs}  {shown}  elapsed {elapsed / 60:.1f} min  "
            f"ETA {eta / 60:.1f} min  peak RSS {peak_rss_mb():.0f} MB"
        )


class RandomStateBackup(keras.callbacks.Callback):
    """Keeps the augmentation layers' random states beside the checkpoint, which lacks them.

    Without them a resumed phase would draw other flips and shifts than an uninterrupted one.
    """

    def __init__(self, saved: Path) -> None:
        super().__init__()
        self.saved = saved

    def _states(self) -> list[Any]:
        return [
            generator.state
            for layer in self.model._flatten_layers()
            for generator in layer._seed_generators
        ]

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        if self.saved.is_file():
            with np.load(self.saved) as kept:
                for index, state in enumerate(self._states()):
                    state.assign(kept[str(index)])

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.saved.parent.mkdir(parents=True, exist_ok=True)
        states = {str(i): np.asarray(state) for i, state in enumerate(self._states())}
        np.savez(self.saved, **states)  # type: ignore[arg-type]  # numpy stubs type allow_pickle as **kwds


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


class _Trainer:
    """Builds, compiles and fits one model of the configured recipe on one set of posters.

    Each fit keeps a checkpoint after every epoch in `backups/<phase>`; running the same command
    again after an interruption resumes at the last finished epoch, with the same shuffle order.
    """

    def __init__(self, config: TrainConfig, genres: list[str], backups: Path) -> None:
        self.config, self.genres, self.backups = config, genres, backups

    def batches(self, part: LabelTable, shuffle: bool) -> PosterBatches:
        return PosterBatches(
            [image_path(self.config.images, i) for i in part.ids],
            part.labels if shuffle else None,
            batch_size=self.config.hyper.batch_size,
            shuffle_seed=self.config.split_seed if shuffle else None,
            workers=self.config.workers,
        )

    def fit(
        self, train: LabelTable, validation: LabelTable | None, phase: str
    ) -> tuple[keras.Model, list[dict[str, float]]]:
        config = self.config
        backup = self.backups / phase
        keras.utils.set_random_seed(config.split_seed)
        model = build_model(
            config.arch,
            len(self.genres),
            internal_size=config.hyper.internal_size,
            translate=config.hyper.translate,
        )
        slow = open_backbone(model) if config.hyper.backbone_lr_scale else []
        train_batches = self.batches(train, shuffle=True)
        rate: Any = config.hyper.learning_rate
        if config.hyper.warmup_fraction:
            rate = one_cycle(
                config.hyper.learning_rate,
                len(train_batches) * config.hyper.epochs,
                config.hyper.warmup_fraction,
            )
        optimizer = DiscriminativeAdamW(
            slow,
            config.hyper.backbone_lr_scale,
            learning_rate=rate,
            weight_decay=config.hyper.weight_decay,
        )
        model.compile(optimizer=optimizer, loss="binary_crossentropy")
        checked = None
        if validation is not None:
            checked = (self.batches(validation, shuffle=False), validation.labels)
        checkpointed = backup / "training_metadata.json"  # BackupAndRestore's record
        done = json.loads(checkpointed.read_text())["epoch"] if checkpointed.is_file() else 0
        progress = Progress(
            config.hyper.epochs, checked, self.genres, backup / "history.json", resumed_at=done
        )
        if done:
            say(f"{phase}: resuming after epoch {done} from {backup}")
            train_batches.start_at(done)
        callbacks: list[keras.callbacks.Callback] = [
            progress,
            keras.callbacks.BackupAndRestore(str(backup), delete_checkpoint=False),
            RandomStateBackup(backup / "random_states.npz"),
        ]
        if config.hyper.patience and checked is not None:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_mAP",
                    mode="max",
                    patience=config.hyper.patience,
                    restore_best_weights=True,
                )
            )
        model.fit(
            train_batches,
            epochs=config.hyper.epochs,
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 0,
        )
        return model, progress.history

    def forget_backups(self) -> None:
        """Drop every checkpoint of this run, once its version is written."""
        shutil.rmtree(self.backups, ignore_errors=True)

    def predict(self, model: keras.Model, part: LabelTable, *, flip: bool = False) -> np.ndarray:
        batches = self.batches(part, shuffle=False)
        outputs = []
        for index in range(len(batches)):
            images = batches.inputs(index)
            outputs.append(model.predict_on_batch(images[:, :, ::-1] if flip else images))
        return np.concatenate(outputs).astype(np.float64)


def run(config: TrainConfig) -> Path:
    """Train, calibrate, decide thresholds, (refit,) evaluate and export one model version.

    Thresholds, calibration and which genres are predictable always come from the validation
    split scored by a model that never trained on it: with `refit`, the model fitted on the
    training split only; the refitted model (train + validation) is the one shipped.
    """
    config.check()
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
    version = config.version or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    trainer = _Trainer(config, table.genres, config.store / ".checkpoints" / config.name / version)
    train, validation, test = parts["train"], parts["validation"], parts["test"]

    say("phase 1: fit on the training split, score the validation split each epoch")
    model, history = trainer.fit(train, validation, "phase1")
    val_raw = trainer.predict(model, validation)
    val_flip = (val_raw + trainer.predict(model, validation, flip=True)) / 2
    positives = validation.labels.sum(axis=0)
    predictable = positives >= config.min_positives_to_predict
    predictable &= np.array([g not in NEVER_PREDICTED for g in table.genres])
    ece_plain, ece_platt = calibration.cross_validated_ece(validation.labels, val_raw, predictable)
    platt = (
        calibration.fit_platt(validation.labels, val_raw, predictable)
        if ece_platt < ece_plain
        else calibration.Platt.identity(len(table.genres))
    )
    val_probs = platt.apply(val_raw)
    thresholds = metrics.tune_thresholds(validation.labels, val_probs)
    rule = DecisionRule.build(table.genres, thresholds, predictable)

    refit_history: list[dict[str, float]] = []
    trained_on = train
    if config.hyper.refit:
        trained_on = table.subset(split["train"] + split["validation"])
        say(f"phase 2: refit on train + validation ({len(trained_on.ids)} posters)")
        model, refit_history = trainer.fit(trained_on, None, "phase2")
    calibration.fold_into_model(model, platt)
    test_probs = trainer.predict(model, test)

    prior = metrics.label_prior(trained_on.labels)

    def scored(part: LabelTable, probs: np.ndarray) -> dict[str, Any]:
        model_result = metrics.score(part.labels, probs, thresholds, table.genres)
        prior_result = metrics.score(
            part.labels, metrics.prior_predictions(prior, len(part.ids)), thresholds, table.genres
        )
        return {"model": model_result, "label_prior": prior_result}

    validation_scores = scored(validation, val_probs)
    test_scores = scored(test, test_probs)
    test_decisions = metrics.decision_scores(test.labels, test_probs, rule)
    test_ece = calibration.expected_calibration_error(test.labels, test_probs)
    reliability = calibration.reliability(test.labels, test_probs)
    say(metrics.format_table(test_scores["model"], test_scores["label_prior"]))
    say(f"test: predicted lists {test_decisions}, ECE {test_ece:.4f}")
    best = max(history, key=lambda r: r.get("val_mAP", 0.0)) if history else {}

    metadata: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "architecture": config.arch,
        "genres": table.genres,
        "thresholds": [float(t) for t in thresholds],
        "predictable": [bool(p) for p in rule.predictable],
        "decision": {"rule": rule.kind, "floor": rule.floor, "max_predicted": rule.max_predicted},
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
            "trained_on": ["train", "validation"] if config.hyper.refit else ["train"],
            "decisions_from": "validation split scored by the model fitted on train only",
        },
        "calibration": {
            "method": "per-genre Platt scaling folded into the output layer"
            if ece_platt < ece_plain
            else "none (did not lower the cross-validated ECE)",
            "validation_ece_cv": {"uncalibrated": ece_plain, "platt": ece_platt},
            "scale": platt.scale.tolist(),
            "shift": platt.shift.tolist(),
            "test_ece": test_ece,
            "test_reliability": reliability,
        },
        "metrics": {
            "validation": {k: metrics.summary(v) for k, v in validation_scores.items()},
            "validation_flip_averaged_mAP": metrics.mean_average_precision(
                validation.labels, val_flip
            ),
            "test": {k: metrics.summary(v) for k, v in test_scores.items()},
            "test_per_genre": test_scores["model"]["per_genre"],
            "test_predicted": test_decisions,
            "validation_positives": [int(p) for p in positives],
        },
        "training": {
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
            "epochs_run": len(history),
            "best_epoch": best.get("epoch"),
            "history": history,
            "refit_history": refit_history,
            "duration_s": round(time.monotonic() - started, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "machine": f"{platform.machine()}, {platform.system()}, {_cpu_count()} cores",
        },
        "libraries": _library_versions(),
    }

    def figures(folder: Path) -> None:
        save_curves(history, folder / CURVES_FILE)
        save_reliability(reliability, folder / RELIABILITY_FILE)
        # The validation split as the train-only model scored it: a later change of the decision
        # rule is chosen on these, with no retraining.
        np.savez_compressed(
            folder / VALIDATION_FILE,
            ids=np.asarray(validation.ids),
            labels=validation.labels.astype(np.uint8),
            raw=val_raw.astype(np.float32),
            calibrated=val_probs.astype(np.float32),
        )

    path = write_version(config.store, config.name, version, model, metadata, extra_files=figures)
    trainer.forget_backups()
    if config.litert:
        from training.litert_export import ExportRefused, export_litert

        try:
            parity = export_litert(path, config.images)["parity"]
            say(f"exported model.tflite: {parity}")
        except ExportRefused as exc:
            say(f"no model.tflite: {exc}")  # the version still serves with Keras
    try:
        reference = record_drift_reference(path, config.images)
        say(f"drift reference: PSI threshold {reference.psi_threshold} from {reference.source}")
    except DatasetError as exc:  # the version is written and serves; drift goes unwatched
        say(f"no drift reference: {exc}")
    say(
        f"wrote {path} in {metadata['training']['duration_s'] / 60:.1f} min, "
        f"peak RSS {peak_rss_mb():.0f} MB"
    )
    return path


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0))
