"""Additions to a written version's metadata: baseline comparisons and linear-probe results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poster_genres.artifact import METADATA_FILE, update_metadata
from poster_genres.metadata import ModelMetadata, read_metadata


def record_comparison(model_dir: Path, baseline_dir: Path, label: str) -> None:
    """Copy a baseline run's test figures into a version's metadata, for its model card.

    Only runs tested on exactly the same Ids are comparable; anything else is refused. The model
    file (and its SHA-256) is untouched.
    """
    baseline = read_metadata(baseline_dir / METADATA_FILE)

    def add(metadata: ModelMetadata) -> ModelMetadata:
        if (
            baseline.split is None
            or metadata.split is None
            or (baseline.split.ids.get("test") != metadata.split.ids.get("test"))
        ):
            raise ValueError(
                f"{baseline_dir} was tested on other posters than {model_dir}; "
                "train it from the same CSV with the same --split-seed"
            )
        compared = dict(getattr(metadata, "compared", None) or {})
        compared[label] = {
            "architecture": baseline.architecture,
            "version": baseline.version,
            "test": baseline.metrics["test"]["model"],
            "test_predicted": baseline.metrics.get("test_predicted"),
            "training": {k: baseline.training.get(k) for k in ("epochs_run", "duration_s")},
        }
        return metadata.model_copy(update={"compared": compared})

    update_metadata(model_dir, add)


def record_probe(model_dir: Path, result: dict[str, Any]) -> None:
    """Keep a linear-probe result (see tools/linear_probe.py) with the version it informed."""

    def add(metadata: ModelMetadata) -> ModelMetadata:
        probes = [
            p
            for p in (getattr(metadata, "probes", None) or [])
            if p["internal_size"] != result["internal_size"]
        ]
        ordered = sorted([*probes, result], key=lambda p: p["internal_size"])
        return metadata.model_copy(update={"probes": ordered})

    update_metadata(model_dir, add)
