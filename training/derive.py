"""A new version from an existing one's weights with another decision rule (a change of answers
is a change of version): files copied, hashes unchanged, the test split re-scored under the new
rule, and its drift reference recomputed (predicted rates depend on the rule)."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from poster_genres.artifact import METADATA_FILE, VALIDATION_FILE, open_version, update_metadata
from poster_genres.metadata import DecisionSettings, ModelMetadata, metadata_json, read_metadata
from poster_genres.runtimes import RuntimeChoice
from training.drift_reference import record_drift_reference
from training.evaluate import evaluate


def derive_version(
    source: Path,
    version: str,
    decision: DecisionSettings,
    *,
    images: Path,
    csv: Path,
    validation: Path | None = None,
    runtime: RuntimeChoice = "auto",
) -> Path:
    """Write `version` beside `source`: its model files, metadata naming `decision`, and (when
    given) the `validation.npz` the rule was chosen on. Appears whole or not at all."""
    target = source.parent / version
    if target.exists():
        raise FileExistsError(f"{target} already exists; choose another version")
    open_version(source)  # every model file checked against its hash before it is copied
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=source.parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        if validation is not None:
            shutil.copyfile(validation, staging / VALIDATION_FILE)
        metadata = read_metadata(staging / METADATA_FILE)
        derived = metadata.model_copy(
            update={
                "version": version,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "decision": decision,
                "derived_from": {"version": metadata.version, "decision": metadata.decision},
            }
        )
        (staging / METADATA_FILE).write_text(metadata_json(derived))
        staging.chmod(0o755)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result, _ = evaluate(target, images, csv, split="test", runtime=runtime)
    predicted = result["predicted"]

    def rescored(metadata: ModelMetadata) -> ModelMetadata:
        found = dict(metadata.metrics)
        found["test_predicted"] = predicted
        return metadata.model_copy(update={"metrics": found})

    update_metadata(target, rescored)
    record_drift_reference(target, images, runtime=runtime)
    return target
