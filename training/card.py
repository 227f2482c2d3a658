"""The model card: Markdown generated from a version's metadata.json, never typed by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.model_store import CURVES_FILE, METADATA_FILE, read_json

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
    return (
        f"python -m training train --arch {config['arch']} --epochs {config['epochs']} "
        f"--batch-size {config['batch_size']} --learning-rate {config['learning_rate']} "
        f"--patience {config['patience']} --split-seed {config['split_seed']} "
        + (
            f"--fine-tune-epochs {config['fine_tune_epochs']} "
            f"--fine-tune-from-block {config['fine_tune_from_block']} "
            f"--fine-tune-learning-rate {config['fine_tune_learning_rate']} "
            if config.get("fine_tune_epochs")
            else ""
        )
        + f"--version {metadata['version']}"
    )


def weak_genres(metadata: dict[str, Any]) -> list[str]:
    weak = []
    for genre in metadata["metrics"]["test_per_genre"]:
        auc, positives = genre["AUC"], genre["positives"]
        if positives < MIN_TEST_POSITIVES or auc != auc or auc < MIN_AUC:
            shown = "n/a" if auc != auc else f"{auc:.2f}"
            weak.append(f"{genre['genre']} ({positives} posters, AUC {shown})")
    return weak


def model_card(model_dir: Path) -> str:
    """Markdown for the README: what the model is, what it saw, how good it is, how to remake it."""
    m = read_json(model_dir / METADATA_FILE)
    data, split, training = m["data"], m["split"], m["training"]
    sizes = {name: len(ids) for name, ids in split["ids"].items()}
    test = m["metrics"]["test"]
    lines = [
        f"**{m['name']} {m['version']}** — architecture `{m['architecture']}`, created "
        f"{m['created_at']}, input {m['input']['input_shape']} float32 in [0, 1], "
        f"{len(m['genres'])} sigmoid outputs.",
        "",
        f"**Data.** `{data['csv']}` (SHA-256 `{data['fingerprint_sha256'][:12]}…`): "
        f"{data['n_posters']} unique posters after merging {len(data['merged_duplicates'])} "
        f"identical duplicate rows; {len(data['skipped'])} skipped for a missing or unreadable "
        f"image. Split by Id with seed {split['seed']}, stratified by each poster's rarest genre: "
        f"train {sizes['train']}, validation {sizes['validation']} (early stopping, thresholds), "
        f"test {sizes['test']} (these figures only).",
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
    lines += _backbone_notes(m)
    lines += [
        "",
        "F1 figures use per-genre thresholds tuned for F1 on the validation split; the prior is "
        "scored at the same thresholds.",
        "",
        f"**Genres it cannot really predict** (test ROC-AUC under {MIN_AUC}, or fewer than "
        f"{MIN_TEST_POSITIVES} test posters): " + ", ".join(weak_genres(m)) + ". "
        f"Rare in training: {', '.join(data['rare_genres']) or 'none'}. `N/A` is never "
        "returned as a predicted genre.",
        "",
        f"**Training.** {training['epochs_run']} epochs (best {training['best_epoch']}), "
        f"{training['duration_s'] / 60:.0f} min, peak RSS {training['peak_rss_mb']:.0f} MB on "
        f"{training['machine']}. Reproduce with `{reproduce_command(m)}`; curves in "
        f"`{CURVES_FILE}` beside the model.",
    ]
    return "\n".join(lines)


def _backbone_notes(m: dict[str, Any]) -> list[str]:
    """What pretraining, fine-tuning and resolution bought, when the run measured them."""
    notes = []
    history = m["training"]["history"]
    # The first phase may have stopped early; older metadata only has the configured count.
    frozen_epochs = int(
        m["training"].get("first_phase_epochs_run", m["training"]["config"].get("epochs", 0))
    )
    if m["training"]["config"].get("fine_tune_epochs") and len(history) > frozen_epochs:
        frozen = max(r["val_mAP"] for r in history[:frozen_epochs])
        tuned = max(r["val_mAP"] for r in history[frozen_epochs:])
        notes.append(
            f"- Validation mAP with the backbone frozen: {frozen:.3f}; after fine-tuning blocks "
            f"{m['training']['config']['fine_tune_from_block']}+ : {tuned:.3f}."
        )
    for probe in m.get("probes", []):
        notes.append(
            f"- Linear probe at {probe['internal_size']}×{probe['internal_size']} "
            f"({probe['n_train']} training posters, validation split): ImageNet features mAP "
            f"{probe['pretrained']['mAP']:.3f}, the same network with random weights "
            f"{probe['random']['mAP']:.3f}, label prior {probe['label_prior']['mAP']:.3f}."
        )
    return ["", *notes] if notes else []


def replace_in_readme(readme: Path, card: str) -> None:
    """Rewrite the text between the model-card markers of the README."""
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise ValueError(f"{readme} has no {START} ... {END} section")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{card}\n{END}{tail}", encoding="utf-8")
