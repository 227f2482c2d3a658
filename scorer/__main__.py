"""Score a folder of posters offline into CSV or JSON lines, with the service's own classifier.

python -m scorer POSTERS_DIR --out genres.csv      # or .jsonl
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from poster_genres.artifact import load_version, resolve_version_dir

DEFAULT_STORE = Path(__file__).resolve().parent.parent / "model_store"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scorer",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("folder", type=Path, help="folder of posters (searched recursively)")
    parser.add_argument("--out", type=Path, required=True, help="output .csv or .jsonl")
    parser.add_argument("--top-k", type=int, default=3, help="genres in each row's top_k")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="a version folder; default: POSTER_MODEL_VERSION (or the newest) of "
        "POSTER_MODEL_NAME in POSTER_MODEL_STORE, as the service would serve",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="posters per model call")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    path = args.model_dir or resolve_version_dir(
        Path(os.environ.get("POSTER_MODEL_STORE", DEFAULT_STORE)),
        os.environ.get("POSTER_MODEL_NAME", "poster-genres"),
        os.environ.get("POSTER_MODEL_VERSION") or None,
    )
    from poster_genres.classifier import GenreClassifier
    from scorer.folder import score_folder

    classifier = GenreClassifier(load_version(path), max_batch=args.batch_size)
    scored, failed = score_folder(
        classifier, args.folder, args.out, top_k=args.top_k, progress=not args.quiet
    )
    print(f"scored {scored} posters, {failed} could not be read; wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
