"""Split a catalogue between N workers, and merge what they wrote into one ordered file.

A poster's shard is a hash of its name (its path relative to the folder scored), so the split is
stable whatever the order, the machine or the number of files: N workers given the same folder
cover every poster exactly once, as an Indexed Job's pods do (`--shard $JOB_COMPLETION_INDEX/N`).

Each worker writes its part in path order, and beside it a small record (`<part>.shard.json`)
of which shard it is and how many rows it holds. The merge streams the parts (memory does not grow
with the catalogue) and refuses anything that is not exactly one whole set of shards.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import heapq
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TypeVar

T = TypeVar("T")
RECORD_SUFFIX = ".shard.json"


class MergeError(ValueError):
    """The parts do not fit together: other columns, a poster twice, a shard missing."""


@dataclass(frozen=True)
class Shard:
    """Worker `index` (from 0) of `count`."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'I/N', I from 0 to N - 1; ValueError otherwise."""
        found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not found:
            raise ValueError(f"--shard {text!r}: expected I/N, e.g. 0/4")
        index, count = int(found[1]), int(found[2])
        if not 0 <= index < count:
            raise ValueError(f"--shard {text!r}: I must be between 0 and N - 1")
        return cls(index, count)

    def holds(self, name: str) -> bool:
        """Whether the poster called `name` (a relative path) is this worker's."""
        digest = hashlib.sha256(PurePosixPath(name).as_posix().encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index

    def take(self, items: Iterable[tuple[str, T]]) -> list[tuple[str, T]]:
        """The (name, anything) pairs this worker scores, in path order (the merge's order)."""
        return sorted(
            (item for item in items if self.holds(item[0])), key=lambda i: path_order(i[0])
        )


def path_order(name: str) -> tuple[str, ...]:
    """The order of a folder run (sorted paths), which the merged file keeps."""
    return PurePosixPath(name).parts


@contextlib.contextmanager
def atomic_output(out: Path) -> Iterator[IO[str]]:
    """A text file that appears at `out` whole, or not at all.

    The temporary name is unique, so two workers given the same `out` (a replaced pod beside one
    still running) never write into one file; the last to finish wins with a whole file.
    """
    handle, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(name, out)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def write_shard_record(part: Path, shard: Shard, rows: int) -> None:
    """Say beside a finished part which shard it holds, and how many rows."""
    with atomic_output(part.with_name(part.name + RECORD_SUFFIX)) as handle:
        json.dump({"shard": f"{shard.index}/{shard.count}", "rows": rows}, handle)


def _parts_in(paths: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in (".csv", ".jsonl"))
        else:
            found.append(path)
    return found


def _check_set(parts: list[Path]) -> None:
    """Exactly shards 0..N-1 of one N, each part whole."""
    seen: dict[int, Path] = {}
    counts = set()
    for part in parts:
        record_path = part.with_name(part.name + RECORD_SUFFIX)
        try:
            record = json.loads(record_path.read_text())
            shard = Shard.parse(record["shard"])
        except (OSError, ValueError, KeyError, TypeError):
            raise MergeError(
                f"{part} has no shard record ({record_path.name}): unfinished?"
            ) from None
        if shard.index in seen:
            raise MergeError(f"{part} and {seen[shard.index]} are both shard {record['shard']}")
        seen[shard.index] = part
        counts.add(shard.count)
    if len(counts) != 1:
        raise MergeError(f"the parts come from splits into {sorted(counts)} shards, not one")
    count = counts.pop()
    missing = sorted(set(range(count)) - set(seen))
    if missing:
        raise MergeError(f"shards {missing} of {count} are missing")


def _rows(
    part: Path, as_csv: bool, header: list[str] | None
) -> Iterator[tuple[str, str | list[str]]]:
    with part.open(newline="", encoding="utf-8") as handle:
        if as_csv:
            reader = csv.reader(handle)
            if next(reader, None) != header:
                raise MergeError(f"{part} has other columns than the first part")
            for row in reader:
                yield row[0], row
        else:
            for line in handle:
                if line.strip():
                    yield json.loads(line)["file"], line


def merge_parts(paths: Sequence[Path], out: Path) -> int:
    """Merge one whole set of shard parts (CSV or JSON lines, as `out`) into `out`, in path
    order, streaming. Written atomically. Returns the number of rows."""
    parts = _parts_in(paths)
    as_csv = out.suffix.lower() == ".csv"
    if not parts or any((p.suffix.lower() == ".csv") != as_csv for p in parts):
        raise MergeError(f"need one or more part files of the same format as {out.name}")
    _check_set(parts)
    header = None
    if as_csv:
        with parts[0].open(newline="", encoding="utf-8") as first:
            header = next(csv.reader(first), None)
    streams = [
        ((path_order(name), name, row) for name, row in _rows(part, as_csv, header))
        for part in parts
    ]
    written, previous = 0, None
    with atomic_output(out) as handle:
        writer = csv.writer(handle) if as_csv else None
        if writer is not None:
            writer.writerow(header or [])
        for key, name, row in heapq.merge(*streams, key=lambda entry: entry[0]):
            if previous is not None and key <= previous[0]:
                if name == previous[1]:
                    raise MergeError(f"{name} is in two parts (were the shards of one N?)")
                raise MergeError(f"a part is not in path order at {name}: not the scorer's")
            previous = (key, name)
            if writer is not None:
                writer.writerow(row)
            else:
                handle.write(str(row).rstrip("\n") + "\n")
            written += 1
    return written
