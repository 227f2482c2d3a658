"""Merge the part files of a sharded scoring run into one file, ordered by poster path.

  python -m scorer.merge parts/ --out genres.csv      # every .csv in parts/
  python -m scorer.merge part-0.csv part-1.csv --out genres.csv

Exit status: 0 when merged, 1 when the parts do not fit together (other columns, a poster twice).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from poster_genres.cli import run_command
from scorer.shards import MergeError, merge_parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scorer.merge",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("parts", nargs="+", type=Path, help="part files, or folders of them")
    parser.add_argument("--out", type=Path, required=True, help="the merged .csv or .jsonl")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.parts if not p.exists()]
    if missing:
        parser.error(f"no such part file or folder: {', '.join(missing)}")
    try:
        rows = merge_parts(args.parts, args.out)
    except MergeError as exc:
        print(f"cannot merge: {exc}", file=sys.stderr)
        return 1
    print(f"merged {rows} posters into {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_command(main)
