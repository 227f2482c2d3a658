"""Command line: `python -m training train|evaluate|card ...` (see --help of each)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from poster_genres.cli import run_command
from poster_genres.decision import PROBABILITY_FLOOR, RULE_KINDS
from poster_genres.runtimes import RUNTIME_CHOICES
from training.recipes import ARCHITECTURES, DEFAULT_ARCH, RECIPES, check_recipe

DEFAULT_DATA = Path("../shared/data/Multi_Label_dataset")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument(
        "--verbose", action="store_true", help="show TensorFlow's start-up messages"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="train a model version into the model store",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Recipe flags left out take the chosen architecture's defaults "
        "(training/recipes.py), shown per architecture below.",
    )
    train.add_argument("--csv", type=Path, default=DEFAULT_DATA / "train.csv", help="label CSV")
    train.add_argument("--images", type=Path, default=DEFAULT_DATA / "Images", help="poster folder")
    train.add_argument("--store", type=Path, default=Path("model_store"), help="model store root")
    train.add_argument("--name", default="poster-genres", help="model name in the store")
    train.add_argument("--version", default="", help="version folder; empty: a UTC timestamp")
    train.add_argument(
        "--arch",
        default=DEFAULT_ARCH,
        choices=ARCHITECTURES,
        help="seed: the tutorial CNN; compact: a small CNN; lite0: pretrained EfficientNet-Lite0",
    )
    for field, kind, meaning in RECIPE_FLAGS:
        flag = "--" + field.replace("_", "-")
        per_arch = ", ".join(f"{arch} {getattr(RECIPES[arch], field)}" for arch in ARCHITECTURES)
        if kind is bool:
            train.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=f"{meaning} (default: {per_arch})",
            )
        else:
            train.add_argument(
                flag, type=kind, default=argparse.SUPPRESS, help=f"{meaning} (default: {per_arch})"
            )
    train.add_argument(
        "--split-seed", type=int, default=42, help="seed of the split and of training"
    )
    train.add_argument("--strict", action="store_true", help="stop on a missing/unreadable image")
    train.add_argument("--limit", type=int, default=0, help="use only the first N posters; 0: all")
    train.add_argument("--workers", type=int, default=2, help="image decoding threads")

    defaults = argparse.ArgumentDefaultsHelpFormatter
    evaluate = commands.add_parser(
        "evaluate", help="score a model version on a labelled set", formatter_class=defaults
    )
    evaluate.add_argument("--model-dir", type=Path, required=True, help="a model version folder")
    evaluate.add_argument("--images", type=Path, required=True, help="folder of <Id>.jpg posters")
    evaluate.add_argument("--csv", type=Path, required=True, help="label CSV (Id, Genre, genres)")
    evaluate.add_argument(
        "--split",
        choices=["train", "validation", "test"],
        default=None,
        help="only the Ids the version recorded for this split; default: every labelled poster",
    )

    evaluate.add_argument(
        "--runtime",
        choices=RUNTIME_CHOICES,
        default="auto",
        help="auto: LiteRT when the version has a checked model.tflite, else Keras",
    )

    export = commands.add_parser(
        "export-litert",
        help="write a version's model.tflite, checked against its Keras model on held-out posters",
        formatter_class=defaults,
    )
    export.add_argument("--model-dir", type=Path, required=True, help="a model version folder")
    export.add_argument(
        "--images",
        type=Path,
        default=DEFAULT_DATA / "Images",
        help="the dataset's poster folder (the check runs on the version's held-out posters)",
    )
    export.add_argument("--posters", type=int, default=320, help="held-out posters to check on")

    drift = commands.add_parser(
        "drift-reference",
        help="record a version's predicted rates on its held-out posters and its drift threshold",
        formatter_class=defaults,
    )
    drift.add_argument("--model-dir", type=Path, required=True, help="a model version folder")
    drift.add_argument(
        "--images", type=Path, default=DEFAULT_DATA / "Images", help="the dataset's poster folder"
    )
    drift.add_argument("--runtime", choices=RUNTIME_CHOICES, default="auto", help="model runtime")

    rules = commands.add_parser(
        "compare-rules",
        help="compare decision rules on a version's validation.npz (cross-fitted), and choose",
        formatter_class=defaults,
    )
    rules.add_argument(
        "--model-dir", type=Path, required=True, help="a version folder with validation.npz"
    )

    derive = commands.add_parser(
        "derive-version",
        help="a new version with a version's weights and another decision rule",
        formatter_class=defaults,
    )
    derive.add_argument("--model-dir", type=Path, required=True, help="the version to derive from")
    derive.add_argument("--version", required=True, help="the new version's folder name")
    derive.add_argument("--rule", choices=RULE_KINDS, required=True, help="the decision rule")
    derive.add_argument("--max-predicted", type=int, default=0, help="cap; 0: none")
    derive.add_argument("--floor", type=float, default=PROBABILITY_FLOOR, help="probability floor")
    derive.add_argument("--threshold", type=float, default=None, help="global_threshold's cut")
    derive.add_argument(
        "--validation", type=Path, default=None, help="the validation.npz the rule was chosen on"
    )
    derive.add_argument("--csv", type=Path, default=DEFAULT_DATA / "train.csv", help="label CSV")
    derive.add_argument(
        "--images", type=Path, default=DEFAULT_DATA / "Images", help="the dataset's poster folder"
    )

    compare = commands.add_parser(
        "compare",
        help="record another run's test figures (same split) in a version's metadata",
        formatter_class=defaults,
    )
    compare.add_argument("--model-dir", type=Path, required=True, help="the version to annotate")
    compare.add_argument(
        "--baseline-dir", type=Path, required=True, help="the version to compare with"
    )
    compare.add_argument("--as", dest="label", default="seed", help="name in the model card")

    card = commands.add_parser(
        "card", help="print the model card (Markdown) of a model version", formatter_class=defaults
    )
    card.add_argument("--model-dir", type=Path, required=True, help="a model version folder")
    card.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the card into this page (between its markers; e.g. docs/model-card.md) "
        "instead of printing it",
    )
    return parser


# The recipe's flags: (field of training.recipes.Recipe, type, meaning).
RECIPE_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("epochs", int, "training epochs"),
    ("batch_size", int, "posters per step"),
    ("learning_rate", float, "peak learning rate (of the head, for pretrained models)"),
    ("patience", int, "early-stopping patience on validation mAP; 0: off"),
    ("weight_decay", float, "AdamW weight decay"),
    ("backbone_lr_scale", float, "backbone learning rate / head's; 0: backbone frozen"),
    ("warmup_fraction", float, "one-cycle warm-up share of the steps; 0: constant rate"),
    ("internal_size", int, "pretrained models: the size the 400x400 input is resized to"),
    ("translate", float, "pretrained models: random shift (share of the side) while training"),
    ("refit", bool, "refit on train + validation after choosing on validation"),
)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from poster_genres.cli import import_tensorflow

    import_tensorflow(verbose=args.verbose)  # every subcommand reaches Keras (the card: metadata)
    if args.command == "train":
        chosen = {
            field: getattr(args, field) for field, _, _ in RECIPE_FLAGS if hasattr(args, field)
        }
        recipe = dataclasses.replace(RECIPES[args.arch], **chosen)
        try:
            check_recipe(args.arch, recipe)  # before TensorFlow is even imported
        except ValueError as exc:
            _parser().error(str(exc))
        writable = next((p for p in (args.store, *args.store.parents) if p.exists()), Path("."))
        if not os.access(writable, os.W_OK):
            _parser().error(f"--store {args.store}: {writable} is not writable")
        if not args.csv.is_file() or not args.images.is_dir():
            _parser().error(f"the dataset is not there: --csv {args.csv}, --images {args.images}")
        from training.train import TrainConfig, run

        config = TrainConfig(
            csv=args.csv,
            images=args.images,
            store=args.store,
            name=args.name,
            version=args.version,
            arch=args.arch,
            split_seed=args.split_seed,
            strict=args.strict,
            limit=args.limit,
            workers=args.workers,
            recipe=recipe,
        )
        run(config)
        return 0
    if args.command == "evaluate":
        from training.evaluate import evaluate
        from training.metrics import format_table, summary

        model_result, prior_result = evaluate(
            args.model_dir, args.images, args.csv, split=args.split, runtime=args.runtime
        )
        print(format_table(model_result, prior_result))
        print(
            json.dumps(
                {
                    **summary(model_result),
                    "predicted": model_result["predicted"],
                    "label_prior": summary(prior_result),
                }
            )
        )
        return 0
    if args.command == "export-litert":
        from training.litert_export import ExportRefused, export_litert

        try:
            record = export_litert(args.model_dir, args.images, posters=args.posters)
        except ExportRefused as exc:
            print(f"export refused: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(record["parity"]))
        return 0
    if args.command == "drift-reference":
        from training.drift_reference import record_drift_reference

        reference = record_drift_reference(args.model_dir, args.images, runtime=args.runtime)
        print(json.dumps(reference.model_dump(exclude={"predicted_rate", "mean_probability"})))
        return 0
    if args.command == "compare-rules":
        import numpy as np

        from poster_genres.artifact import VALIDATION_FILE, open_version
        from training.decision_study import study, table

        version = open_version(args.model_dir)
        found = study(
            args.model_dir / VALIDATION_FILE,
            version.genres,
            np.asarray(version.metadata.predictable_flags()),
        )
        print(table(found), file=sys.stderr)
        print(f"chosen: {found['chosen']}", file=sys.stderr)
        print(json.dumps(found))
        return 0
    if args.command == "derive-version":
        from poster_genres.metadata import DecisionSettings
        from training.derive import derive_version

        try:
            decision = DecisionSettings(
                rule=args.rule,
                floor=args.floor,
                max_predicted=args.max_predicted,
                threshold=args.threshold,
            )
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            print(
                f"derive-version: {exc.errors()[0]['msg'] if hasattr(exc, 'errors') else exc}",
                file=sys.stderr,
            )
            return 2
        path = derive_version(
            args.model_dir,
            args.version,
            decision,
            images=args.images,
            csv=args.csv,
            validation=args.validation,
        )
        print(path)
        return 0
    if args.command == "compare":
        from training.export import record_comparison

        record_comparison(args.model_dir, args.baseline_dir, args.label)
        return 0
    if args.command == "card":
        from training.card import model_card, write_card

        if args.out:
            write_card(args.model_dir, args.out)
        else:
            print(model_card(args.model_dir))
        return 0
    return 2


if __name__ == "__main__":
    run_command(main)
