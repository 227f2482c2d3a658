"""The training-curves PNG saved with each model version."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display
import matplotlib.pyplot as plt


def save_curves(history: list[dict[str, float]], path: Path) -> None:
    """Loss (train and validation) and validation mAP per epoch, side by side."""
    epochs = [r["epoch"] for r in history]
    figure, (loss_axis, map_axis) = plt.subplots(1, 2, figsize=(9, 3.5))
    loss_axis.plot(epochs, [r["loss"] for r in history], marker="o", label="train")
    loss_axis.plot(epochs, [r["val_loss"] for r in history], marker="o", label="validation")
    loss_axis.set(title="Binary cross-entropy", xlabel="epoch")
    loss_axis.legend()
    map_axis.plot(epochs, [r["val_mAP"] for r in history], marker="o", color="tab:green")
    map_axis.set(title="Validation mAP", xlabel="epoch")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def save_reliability(bins: list[dict[str, float]], path: Path) -> None:
    """Reliability diagram: observed frequency against mean predicted probability per bin."""
    figure, axis = plt.subplots(figsize=(4, 4))
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    axis.plot(
        [b["mean_probability"] for b in bins],
        [b["frequency"] for b in bins],
        marker="o",
        label="model (test split)",
    )
    axis.set(xlabel="predicted probability", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1))
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
