"""Where the shared dataset lives: ../shared/data/Multi_Label_dataset beside the project, with
train.csv (an Id column first) and Images/<Id>.jpg. Absent on machines without it: each user
says what it does then (synthetic posters, a skip, a failure)."""

from __future__ import annotations

import csv
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
DATASET = PROJECT.parent / "shared" / "data" / "Multi_Label_dataset"
LABELS = DATASET / "train.csv"
IMAGES = DATASET / "Images"


def first_poster() -> Path:
    """The poster of the label file's first row: one real poster, the same on every run."""
    with LABELS.open(newline="") as handle:
        first = next(csv.DictReader(handle))["Id"]
    return IMAGES / f"{first}.jpg"
