"""Score posters offline into CSV or JSON lines, with the service's own classifier and rule.

  python -m scorer POSTERS_DIR --out genres.csv         # a folder, searched recursively
  python -m scorer paths.txt --list --out genres.jsonl  # one path per line ('-' reads stdin)
  python -m scorer POSTERS_DIR --out genres.csv --explain heatmaps/  # plus a heatmap per poster
  python -m scorer POSTERS_DIR --shard 0/4 --out part-0.csv  # worker 0 of 4; then python -m scorer.merge

Exit status: 0 when at least one poster was scored (or a --shard holds none: its part is only a
header), 1 when none could be, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from poster_genres.cli import run_command
from poster_genres.runtimes import RUNTIME_CHOICES
from scorer.inputs import OUTPUT_FORMATS, posters_in, posters_listed
from scorer.shards import Shard, write_shard_record

DEFAULT_STORE = Path(__file__).resolve().parent.parent / "model_store"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scorer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", help="a folder of posters, or with --list a file of paths or -")
    parser.add_argument(
        "--list", action="store_true", help="SOURCE lists one poster path per line (- for stdin)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output file: .csv or .jsonl (by its suffix)"
    )
    parser.add_argument(
        "--top-k", type=int, default=3, help="genres in each JSON row's top_k (default 3)"
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="a model version folder (default: POSTER_MODEL_VERSION, or the newest, of "
        "POSTER_MODEL_NAME in POSTER_MODEL_STORE: what the service would serve)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="posters per model call (default 16)"
    )
    parser.add_argument(
        "--explain",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write DIR/<poster>.<genre>.png: where the model found each poster's most "
        "probable genre (Grad-CAM over the poster)",
    )
    parser.add_argument(
        "--full-precision",
        action="store_true",
        help="write each probability as the model's full float32 (default: rounded to 4 decimals,"
        " as the service shows them)",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIME_CHOICES,
        default=os.environ.get("POSTER_RUNTIME", "auto"),
        help="what runs the model: auto (LiteRT when the version has a checked model.tflite, "
        "else Keras), litert or keras (default: POSTER_RUNTIME, else auto)",
    )
    parser.add_argument(
        "--shard",
        type=_shard,
        default=None,
        metavar="I/N",
        help="score only worker I's share (I from 0) of N: a stable split by a hash of each "
        "poster's path, so N workers cover every poster once (merge with python -m scorer.merge)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--verbose", action="store_true", help="show TensorFlow's start-up messages"
    )
    return parser


def _shard(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _check_output(parser: argparse.ArgumentParser, out: Path) -> None:
    if out.suffix.lower() not in OUTPUT_FORMATS:
        formats = ", ".join(f"{suffix} ({name})" for suffix, name in OUTPUT_FORMATS.items())
        parser.error(f"--out {out}: unknown format {out.suffix or '(no suffix)'}; use {formats}")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        parser.error(f"--out {out}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        parser.error(f"--out {out}: the folder {folder} is not writable")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check_output(parser, args.out)
    if not 1 <= args.batch_size <= 256:
        parser.error("--batch-size must be between 1 and 256")
    if args.explain is not None:
        try:
            args.explain.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            parser.error(f"--explain {args.explain}: {exc.strerror}")
        if not os.access(args.explain, os.W_OK):
            parser.error(f"--explain {args.explain}: the folder is not writable")
    ignored = 0
    if args.list:
        if args.source == "-":
            paths = posters_listed(sys.stdin)
        else:
            try:
                with open(args.source, encoding="utf-8") as listing:
                    paths = posters_listed(listing)
            except OSError as exc:
                parser.error(f"cannot read the list {args.source}: {exc.strerror}")
        items = [(str(p), p) for p in paths]
    else:
        folder = Path(args.source)
        if not folder.is_dir():
            parser.error(f"{folder} is not a folder (to read a list of paths, add --list)")
        found, ignored = posters_in(folder)
        items = [(p.relative_to(folder).as_posix(), p) for p in found]
    if args.shard is not None:
        items = args.shard.take(items)

    from poster_genres.artifact import open_version, resolve_version_dir
    from poster_genres.classifier import GenreClassifier
    from poster_genres.cli import import_tensorflow
    from poster_genres.errors import ModelStoreError
    from poster_genres.runtimes import resolve_runtime
    from poster_genres.runtimes.threads import process_budget
    from scorer.folder import score_posters

    try:
        path = args.model_dir or resolve_version_dir(
            Path(os.environ.get("POSTER_MODEL_STORE", DEFAULT_STORE)),
            os.environ.get("POSTER_MODEL_NAME", "poster-genres"),
            os.environ.get("POSTER_MODEL_VERSION") or None,
        )
        version = open_version(path)
        if resolve_runtime(args.runtime, version) == "keras":
            import_tensorflow(verbose=args.verbose, threads=process_budget().size)
        classifier = GenreClassifier.from_version(
            version, runtime=args.runtime, max_batch=args.batch_size
        )
    except ModelStoreError as exc:
        print(f"cannot score: {exc}", file=sys.stderr)
        return 1
    if not 1 <= args.top_k <= len(classifier.genres):
        parser.error(f"--top-k must be between 1 and {len(classifier.genres)}")
    summary = score_posters(
        classifier,
        items,
        args.out,
        top_k=args.top_k,
        progress=not args.quiet,
        full_precision=args.full_precision,
    )
    summary.ignored = ignored
    if args.shard is not None:
        write_shard_record(args.out, args.shard, len(items))
    print(f"{summary.describe()}; wrote {args.out}", file=sys.stderr)
    if args.explain is not None and summary.scored:
        from scorer.heatmaps import write_heatmaps

        try:
            written = write_heatmaps(classifier, items, args.explain, progress=not args.quiet)
        except ValueError as exc:
            print(f"cannot write heatmaps: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {written} heatmaps to {args.explain}", file=sys.stderr)
    if summary.scored == 0 and not (args.shard is not None and not items):
        print("nothing could be scored", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_command(main)
