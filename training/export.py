"""Atomic write of a model version: a crashed run never leaves a half-written version behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from app.model_store import GENRES_FILE, METADATA_FILE, MODEL_FILE, read_json, sha256_of


def write_version(
    store: Path,
    name: str,
    version: str,
    model: keras.Model,
    metadata: dict[str, Any],
    extra_files: Callable[[Path], None] | None = None,
) -> Path:
    """Write model, genres and metadata into a temporary folder, then rename it into place."""
    final = store / name / version
    if final.exists():
        raise FileExistsError(f"{final} already exists; choose another --version")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=final.parent))
    try:
        # A fresh model from the config: uncompiled, so the file carries no optimizer state
        # (clone_model would compile the copy like the original).
        serving_model = keras.Model.from_config(model.get_config())
        serving_model.set_weights(model.get_weights())
        serving_model.save(staging / MODEL_FILE)
        metadata = {**metadata, "name": name, "version": version}
        metadata["model_sha256"] = sha256_of(staging / MODEL_FILE)
        (staging / GENRES_FILE).write_text(json.dumps(metadata["genres"], indent=1) + "\n")
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=1, sort_keys=True) + "\n")
        if extra_files is not None:
            extra_files(staging)
        os.chmod(staging, 0o755)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(staging, path)


def record_comparison(model_dir: Path, baseline_dir: Path, label: str) -> None:
    """Copy a baseline run's test figures into a version's metadata, for its model card.

    Only runs tested on exactly the same Ids are comparable; anything else is refused. The model
    file (and its SHA-256) is untouched.
    """
    metadata = read_json(model_dir / METADATA_FILE)
    baseline = read_json(baseline_dir / METADATA_FILE)
    if baseline["split"]["ids"]["test"] != metadata["split"]["ids"]["test"]:
        raise ValueError(
            f"{baseline_dir} was tested on other posters than {model_dir}; "
            "train it from the same CSV with the same --split-seed"
        )
    metadata.setdefault("compared", {})[label] = {
        "architecture": baseline["architecture"],
        "version": baseline["version"],
        "test": baseline["metrics"]["test"]["model"],
        "training": {k: baseline["training"][k] for k in ("epochs_run", "duration_s")},
    }
    _write_json_atomically(model_dir / METADATA_FILE, metadata)


def record_probe(model_dir: Path, result: dict[str, Any]) -> None:
    """Keep a linear-probe result (see training/probe.py) with the version it informed."""
    metadata = read_json(model_dir / METADATA_FILE)
    probes = [
        p for p in metadata.get("probes", []) if p["internal_size"] != result["internal_size"]
    ]
    metadata["probes"] = sorted([*probes, result], key=lambda p: p["internal_size"])
    _write_json_atomically(model_dir / METADATA_FILE, metadata)
