"""Reading the dataset layout (`Images/<Id>.jpg` + a label CSV), its quirks, the split, and the
streaming input pipeline. Images go through `poster_genres.preprocessing.poster_to_input`, the
serving contract."""

from __future__ import annotations

import csv
import hashlib
import math
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from poster_genres.errors import PosterGenresError
from poster_genres.preprocessing import decode_poster, poster_to_input

RARE_GENRE_MIN_EXAMPLES = 30
IMAGE_SUFFIX = ".jpg"


class DatasetError(ValueError):
    """The CSV or image folder cannot be used as given; the message says where and why."""


@dataclass
class LabelTable:
    """Unique poster Ids with their 0/1 genre labels, genres in CSV header order."""

    ids: list[str]
    genres: list[str]
    labels: np.ndarray  # (n_ids, n_genres) uint8
    merged_duplicates: list[str] = field(default_factory=list)
    fingerprint: str = ""

    def subset(self, keep: Sequence[int]) -> LabelTable:
        index = list(keep)
        return LabelTable(
            ids=[self.ids[i] for i in index],
            genres=self.genres,
            labels=self.labels[index],
            merged_duplicates=self.merged_duplicates,
            fingerprint=self.fingerprint,
        )

    def genre_counts(self) -> dict[str, int]:
        return {g: int(c) for g, c in zip(self.genres, self.labels.sum(axis=0), strict=True)}


def load_labels(csv_path: Path) -> LabelTable:
    """Parse the label CSV: identical duplicate rows are merged, anything ambiguous is an error."""
    raw = csv_path.read_bytes()
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    if not rows:
        raise DatasetError(f"{csv_path}: the CSV is empty")
    header = rows[0]
    if not header or header[0] != "Id":
        raise DatasetError(f"{csv_path}: the first column must be 'Id', found {header[:1]}")
    first_genre = 2 if len(header) > 1 and header[1] == "Genre" else 1
    genres = header[first_genre:]
    if not genres:
        raise DatasetError(f"{csv_path}: no genre columns after {header[:first_genre]}")
    if len(set(genres)) != len(genres):
        raise DatasetError(f"{csv_path}: duplicated genre columns in the header")

    by_id: dict[str, tuple[int, ...]] = {}
    merged: list[str] = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DatasetError(
                f"{csv_path}:{line_no}: expected {len(header)} columns, found {len(row)}"
            )
        poster_id = row[0].strip()
        values = []
        for genre, cell in zip(genres, row[first_genre:], strict=True):
            if cell.strip() not in ("0", "1"):
                raise DatasetError(
                    f"{csv_path}:{line_no}: column {genre!r} must be 0 or 1, found {cell!r}"
                )
            values.append(int(cell))
        labels = tuple(values)
        if poster_id in by_id:
            if by_id[poster_id] != labels:
                raise DatasetError(
                    f"{csv_path}:{line_no}: Id {poster_id} appears again with different labels"
                )
            merged.append(poster_id)
            continue
        by_id[poster_id] = labels
    ids = list(by_id)
    return LabelTable(
        ids=ids,
        genres=genres,
        labels=np.asarray([by_id[i] for i in ids], dtype=np.uint8).reshape(len(ids), len(genres)),
        merged_duplicates=merged,
        fingerprint=hashlib.sha256(raw).hexdigest(),
    )


def image_path(images_dir: Path, poster_id: str) -> Path:
    return images_dir / f"{poster_id}{IMAGE_SUFFIX}"


def _problem(images_dir: Path, poster_id: str) -> str | None:
    path = image_path(images_dir, poster_id)
    try:
        decode_poster(path.read_bytes())
    except FileNotFoundError:
        return "missing"
    except (OSError, PosterGenresError) as exc:
        return f"unreadable ({exc})"
    return None


def check_images(
    table: LabelTable, images_dir: Path, *, strict: bool, workers: int = 4
) -> tuple[LabelTable, dict[str, str]]:
    """Drop rows whose image is missing or undecodable (or stop, with `strict`)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = list(pool.map(lambda i: _problem(images_dir, i), table.ids))
    bad = {pid: why for pid, why in zip(table.ids, problems, strict=True) if why}
    if bad and strict:
        raise DatasetError(f"{len(bad)} images missing or unreadable: {describe_problems(bad)}")
    keep = [i for i, why in enumerate(problems) if not why]
    return table.subset(keep), bad


def describe_problems(bad: dict[str, str], first: int = 5) -> str:
    shown = ", ".join(f"{pid} ({why})" for pid, why in list(bad.items())[:first])
    more = f" and {len(bad) - first} more" if len(bad) > first else ""
    return shown + more


def split_indices(
    labels: np.ndarray, *, seed: int, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> dict[str, list[int]]:
    """Deterministic train/validation/test split, stratified by each poster's rarest genre.

    Grouping by the rarest label is the usual cheap approximation of multi-label stratification:
    it guarantees rare genres land in every split when they can, which frequent ones do anyway.
    """
    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError("val_fraction and test_fraction must be in (0, 1) and sum below 1")
    counts = labels.sum(axis=0)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, row in enumerate(labels):
        positives = np.flatnonzero(row)
        key = int(positives[np.argmin(counts[positives])]) if positives.size else -1
        groups[key].append(i)
    rng = np.random.default_rng(seed)
    splits: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for key in sorted(groups):
        members = np.asarray(groups[key])
        rng.shuffle(members)
        n = len(members)
        n_test = math.floor(n * test_fraction + rng.random())
        n_val = math.floor(n * val_fraction + rng.random())
        splits["test"] += members[:n_test].tolist()
        splits["validation"] += members[n_test : n_test + n_val].tolist()
        splits["train"] += members[n_test + n_val :].tolist()
    return {name: sorted(index) for name, index in splits.items()}


class PosterBatches(keras.utils.PyDataset):
    """Streams (images, labels) batches from disk: memory holds a few batches, never the dataset."""

    def __init__(
        self,
        paths: Sequence[Path],
        labels: np.ndarray | None,
        *,
        batch_size: int,
        shuffle_seed: int | None = None,
        workers: int = 2,
    ) -> None:
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=4)
        self.paths = list(paths)
        self.labels = None if labels is None else labels.astype(np.float32)
        self.batch_size = batch_size
        self.shuffle_seed = shuffle_seed
        self.epoch = 0
        self.order = np.arange(len(self.paths))
        self._shuffle()

    def _shuffle(self) -> None:
        if self.shuffle_seed is not None:
            np.random.default_rng(self.shuffle_seed + self.epoch).shuffle(self.order)

    def __len__(self) -> int:
        return math.ceil(len(self.paths) / self.batch_size)

    def _rows(self, index: int) -> np.ndarray:
        return self.order[index * self.batch_size : (index + 1) * self.batch_size]

    def inputs(self, index: int) -> np.ndarray:
        """Batch `index`'s model inputs only, whether or not the batches carry labels."""
        return np.stack([poster_to_input(self.paths[r].read_bytes()) for r in self._rows(index)])

    def __getitem__(self, index: int) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        images = self.inputs(index)
        if self.labels is None:
            return images
        return images, self.labels[self._rows(index)]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._shuffle()

    def start_at(self, epoch: int) -> None:
        """Put the order where an uninterrupted run has it at `epoch` (each shuffle builds on the last)."""
        self.epoch, self.order = 0, np.arange(len(self.paths))
        self._shuffle()
        for _ in range(epoch):
            self.on_epoch_end()
