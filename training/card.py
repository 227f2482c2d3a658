"""The model card: Markdown generated from a version's metadata.json, never typed by hand."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from poster_genres.artifact import CURVES_FILE, METADATA_FILE, RELIABILITY_FILE, open_version
from poster_genres.decision import SHOWN_DECIMALS
from poster_genres.metadata import read_metadata
from training.recipes import Recipe

START = "<!-- model-card:start -->"
END = "<!-- model-card:end -->"
COLUMNS = (
    ("mAP", "mAP"),
    ("micro_AP", "micro-AP"),
    ("macro_AUC", "macro-AUC"),
    ("micro_F1", "micro-F1"),
    ("macro_F1", "macro-F1"),
    ("precision_at_3", "P@3"),
    ("brier", "Brier ↓"),
)
# A genre is "not really predictable" when the model barely ranks its posters above others (test
# ROC-AUC under MIN_AUC) or the test split has too few of its posters to tell.
MIN_TEST_POSITIVES = 10
MIN_AUC = 0.65


def _row(label: str, figures: dict[str, float]) -> str:
    return f"| {label} | " + " | ".join(f"{figures[key]:.3f}" for key, _ in COLUMNS) + " |"


def reproduce_command(metadata: dict[str, Any]) -> str:
    config = metadata["training"]["config"]
    # Runs record the recipe nested; the first v2 run recorded its fields flat in the config.
    recipe = config.get("recipe") or config
    flags = []
    for field in (f.name for f in dataclasses.fields(Recipe) if f.name in recipe):
        value = recipe[field]
        flag = "--" + field.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        else:
            flags.append(f"{flag} {value}")
    return " ".join(
        [
            f"python -m training train --arch {config['arch']}",
            *flags,
            f"--split-seed {config['split_seed']} --version {metadata['version']}",
        ]
    )


def weak_genres(metadata: dict[str, Any]) -> list[str]:
    weak = []
    for genre in metadata["metrics"]["test_per_genre"]:
        auc, positives = genre["AUC"], genre["positives"]
        undefined = auc is None or auc != auc  # no positive or no negative (NaN, null in JSON)
        if positives < MIN_TEST_POSITIVES or undefined or auc < MIN_AUC:
            shown = "n/a" if undefined else f"{auc:.2f}"
            weak.append(f"{genre['genre']} ({positives} posters, AUC {shown})")
    return weak


def unpredictable_genres(metadata: dict[str, Any]) -> list[str]:
    """Genres the decision rule never predicts, with their validation positives when recorded."""
    flags = metadata.get("predictable") or [g != "N/A" for g in metadata["genres"]]
    positives = metadata["metrics"].get("validation_positives")
    return [
        genre + (f" ({positives[i]} validation posters)" if positives else "")
        for i, (genre, able) in enumerate(zip(metadata["genres"], flags, strict=True))
        if not able or genre == "N/A"
    ]


def _decision_rows(m: dict[str, Any]) -> list[str]:
    """The `predicted` lists as users get them, for the shipped model and comparable baselines."""
    keys = (
        ("precision", "precision"),
        ("recall", "recall"),
        ("micro_F1", "micro-F1"),
        ("macro_F1", "macro-F1"),
        ("mean_predicted", "genres per poster"),
        ("min_predicted_probability", "lowest predicted probability"),
        ("empty_share", "share with none"),
    )
    rows = [(f"**shipped** (`{m['architecture']}`)", m["metrics"].get("test_predicted"))]
    rows += [
        (f"{label} (`{other['architecture']}`)", other.get("test_predicted"))
        for label, other in m.get("compared", {}).items()
    ]
    rows = [(label, figures) for label, figures in rows if figures]
    if not rows:
        return []
    lines = [
        "",
        "**The `predicted` lists on the test split** (each model with its own decision rule):",
        "",
        "| model | " + " | ".join(title for _, title in keys) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    for label, figures in rows:
        lines.append(f"| {label} | " + " | ".join(f"{figures[k]:.3f}" for k, _ in keys) + " |")
    return lines


def _calibration_notes(m: dict[str, Any]) -> list[str]:
    calibration = m.get("calibration")
    if not calibration:
        return []
    cv = calibration["validation_ece_cv"]
    return [
        "",
        f"**Calibration.** {calibration['method']}. Expected calibration error (15 bins, every "
        f"poster-genre pair): validation, 5-fold cross-validated, {cv['uncalibrated']:.4f} "
        f"uncalibrated vs {cv['platt']:.4f} with Platt scaling; test {calibration['test_ece']:.4f} "
        f"as shipped"
        + "".join(
            f"; {label} {other['test_ece']:.4f}"
            for label, other in m.get("compared", {}).items()
            if other.get("test_ece") is not None
        )
        + f". Reliability plot (`{RELIABILITY_FILE}` beside the model):",
        "",
        f"![Observed frequency against predicted probability, test split]"
        f"({m['_folder']}/{RELIABILITY_FILE})",
    ]


def _derivation(m: dict[str, Any]) -> str:
    source = m.get("derived_from")
    if not source:
        return ""
    return (
        f" This version is {source['version']}'s weights with another decision rule (its own was "
        f"`{source['decision'].get('rule', 'thresholds')}`), chosen on the validation split's "
        "cross-fitted predictions (`python -m training compare-rules`)."
    )


def model_card(model_dir: Path, page_dir: Path | None = None) -> str:
    """Markdown for the model card page: what the model is, what it saw, how good it is, how to
    remake it. Links to the figures beside the model are relative to `page_dir` when given."""
    m = read_metadata(model_dir / METADATA_FILE).model_dump()
    folder = Path(os.path.relpath(model_dir, page_dir)) if page_dir is not None else model_dir
    m["_folder"] = folder.as_posix().rstrip("/")  # for the figures' links
    data, split, training = m["data"], m["split"], m["training"]
    sizes = {name: len(ids) for name, ids in split["ids"].items()}
    test = m["metrics"]["test"]
    trained_on = " + ".join(split.get("trained_on", ["train"]))
    rule = open_version(model_dir).decision_rule()
    lines = [
        f"**{m['name']} {m['version']}** — architecture `{m['architecture']}`, created "
        f"{m['created_at']}, input {m['input']['input_shape']} float32 in [0, 1], "
        f"{len(m['genres'])} sigmoid outputs.",
        "",
        f"**Data.** `{data['csv']}` (SHA-256 `{data['fingerprint_sha256'][:12]}…`): "
        f"{data['n_posters']} unique posters after merging {len(data['merged_duplicates'])} "
        f"identical duplicate rows; {len(data['skipped'])} skipped for a missing or unreadable "
        f"image. Split by Id with seed {split['seed']}, stratified by each poster's rarest genre: "
        f"train {sizes['train']}, validation {sizes['validation']}, test {sizes['test']} (these "
        f"figures only, looked at once). The shipped weights were fitted on {trained_on}. "
        "Thresholds, calibration and which genres are predictable come from the validation "
        "split scored by a model fitted on train only (never on posters it trained on).",
        "",
        f"**Test split ({test['model']['n_images']} posters).**",
        "",
        "| model | " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
        _row("label prior (training frequencies)", test["label_prior"]),
    ]
    for label, other in m.get("compared", {}).items():
        lines.append(_row(f"{label} (`{other['architecture']}`, same split)", other["test"]))
    lines.append(_row(f"**shipped** (`{m['architecture']}`)", test["model"]))
    lines += _decision_rows(m)
    lines += _backbone_notes(m)
    lines += _calibration_notes(m)
    lines += [
        "",
        "F1 figures use per-genre thresholds tuned for F1 on the validation split; the prior is "
        f"scored at the same thresholds. `predicted` (rule `{rule.kind}`): {rule.summary()} "
        f"Probabilities are compared at the {SHOWN_DECIMALS} decimals shown." + _derivation(m),
        "",
        "**Never predicted** (a threshold needs enough validation posters; `N/A` is the dataset's "
        "no-genre marker): " + (", ".join(unpredictable_genres(m)) or "none") + ". "
        f"**Weak on test** (ROC-AUC under {MIN_AUC}, or fewer than {MIN_TEST_POSITIVES} test "
        "posters): " + (", ".join(weak_genres(m)) or "none") + ".",
        "",
        f"**Training.** {training['epochs_run']} epochs"
        + (f" (best on validation: {training['best_epoch']})" if training.get("best_epoch") else "")
        + (
            f", then {len(training['refit_history'])} epochs refitting on train + validation"
            if training.get("refit_history")
            else ""
        )
        + f", {training['duration_s'] / 60:.0f} min, peak RSS {training['peak_rss_mb']:.0f} MB on "
        f"{training['machine']}. Reproduce with `{reproduce_command(m)}`; curves in "
        f"`{CURVES_FILE}` beside the model.",
    ]
    return "\n".join(lines)


def _backbone_notes(m: dict[str, Any]) -> list[str]:
    """What pretraining, resolution and flip-averaging bought, when the run measured them."""
    notes = []
    flipped = m["metrics"].get("validation_flip_averaged_mAP")
    if flipped is not None:
        plain = m["metrics"]["validation"]["model"]["mAP"]
        notes.append(
            f"- Flip-averaging at inference (the train-only model, validation split): mAP "
            f"{plain:.3f} -> {flipped:.3f}, for twice the compute: not offered."
        )
    for probe in m.get("probes", []):
        notes.append(
            f"- Linear probe at {probe['internal_size']}×{probe['internal_size']} "
            f"({probe['n_train']} training posters, validation split): ImageNet features mAP "
            f"{probe['pretrained']['mAP']:.3f}, the same network with random weights "
            f"{probe['random']['mAP']:.3f}, label prior {probe['label_prior']['mAP']:.3f}."
        )
    return ["", *notes] if notes else []


PAGE_HEAD = """# Model card

Generated from a version's `metadata.json` by `make card` (the newest version in `model_store/`,
the one served by default) or `python -m training card --model-dir DIR --out docs/model-card.md`;
edit outside the markers only. How the model is trained: [training.md](training.md).
"""


def replace_between_markers(page: Path, card: str) -> None:
    """Rewrite the text between the model-card markers of an existing page."""
    text = page.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise ValueError(f"{page} has no {START} ... {END} section")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    page.write_text(f"{head}{START}\n{card}\n{END}{tail}", encoding="utf-8")


def write_card(model_dir: Path, page: Path) -> None:
    """Write the card of `model_dir` into `page`: between its markers when it exists, else as a
    new page with a title and the markers."""
    card = model_card(model_dir, page_dir=page.parent)
    if page.exists():
        replace_between_markers(page, card)
    else:
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(f"{PAGE_HEAD}\n{START}\n{card}\n{END}\n", encoding="utf-8")
