"""Command line: `python -m training train|evaluate|card ...` (see --help of each)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_DATA = Path("../shared/data/Multi_Label_dataset")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model version into the model store")
    train.add_argument("--csv", type=Path, default=DEFAULT_DATA / "train.csv")
    train.add_argument("--images", type=Path, default=DEFAULT_DATA / "Images")
    train.add_argument("--store", type=Path, default=Path("model_store"))
    train.add_argument("--name", default="poster-genres")
    train.add_argument("--version", default="", help="default: a UTC timestamp")
    train.add_argument("--arch", default=None, help="seed (the tutorial CNN) or compact (default)")
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--learning-rate", type=float, default=None)
    train.add_argument("--patience", type=int, default=None, help="early stopping; 0 = off")
    train.add_argument("--split-seed", type=int, default=42)
    train.add_argument("--strict", action="store_true", help="stop on a missing/unreadable image")
    train.add_argument("--limit", type=int, default=0, help="use only the first N posters")
    train.add_argument("--workers", type=int, default=2, help="image decoding threads")
    train.add_argument("--fine-tune-epochs", type=int, default=None, help="lite0: 2nd phase")
    train.add_argument("--fine-tune-from-block", type=int, default=None)
    train.add_argument("--fine-tune-learning-rate", type=float, default=None)

    evaluate = commands.add_parser("evaluate", help="score a model version on a labelled set")
    evaluate.add_argument("--model-dir", type=Path, required=True)
    evaluate.add_argument("--images", type=Path, required=True)
    evaluate.add_argument("--csv", type=Path, required=True)
    evaluate.add_argument("--split", choices=["train", "validation", "test"], default=None)

    compare = commands.add_parser(
        "compare", help="record another run's test figures (same split) in a version's metadata"
    )
    compare.add_argument("--model-dir", type=Path, required=True)
    compare.add_argument("--baseline-dir", type=Path, required=True)
    compare.add_argument("--as", dest="label", default="seed", help="name in the model card")

    probe = commands.add_parser(
        "probe", help="linear probe: pretrained vs random Lite0 features on the validation split"
    )
    probe.add_argument("--csv", type=Path, default=DEFAULT_DATA / "train.csv")
    probe.add_argument("--images", type=Path, default=DEFAULT_DATA / "Images")
    probe.add_argument("--train-limit", type=int, default=1500)
    probe.add_argument("--internal-size", type=int, default=224)
    probe.add_argument("--record", type=Path, default=None, help="add to this version's metadata")

    card = commands.add_parser("card", help="print the model card (Markdown) of a model version")
    card.add_argument("--model-dir", type=Path, required=True)
    card.add_argument("--readme", type=Path, default=None, help="rewrite the card inside README")
    return parser


# What each architecture trains with unless the command line says otherwise. The seed's are the
# tutorial's own: 10 epochs, batch 64, Adam's defaults, no early stopping.
_NO_FINE_TUNING = {
    "fine_tune_epochs": 0,
    "fine_tune_from_block": 10,
    "fine_tune_learning_rate": 1e-4,
}
ARCH_DEFAULTS: dict[str, dict[str, float]] = {
    "seed": {"epochs": 10, "batch_size": 64, "learning_rate": 1e-3, "patience": 0}
    | _NO_FINE_TUNING,
    "compact": {"epochs": 24, "batch_size": 32, "learning_rate": 2e-3, "patience": 5}
    | _NO_FINE_TUNING,
    "lite0": {
        "epochs": 8,
        "batch_size": 32,
        "learning_rate": 1e-3,
        "patience": 3,
        "fine_tune_epochs": 6,
        "fine_tune_from_block": 10,
        "fine_tune_learning_rate": 1e-4,
    },
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "train":
        from training.model import DEFAULT_ARCH
        from training.train import TrainConfig, run

        arch = args.arch or DEFAULT_ARCH
        defaults = ARCH_DEFAULTS.get(arch, ARCH_DEFAULTS[DEFAULT_ARCH])
        chosen = {
            key: getattr(args, key) if getattr(args, key) is not None else value
            for key, value in defaults.items()
        }
        config = TrainConfig(
            csv=args.csv,
            images=args.images,
            store=args.store,
            name=args.name,
            version=args.version,
            arch=arch,
            split_seed=args.split_seed,
            strict=args.strict,
            limit=args.limit,
            workers=args.workers,
            **chosen,
        )
        run(config)
        return 0
    if args.command == "evaluate":
        from training.evaluate import evaluate
        from training.metrics import format_table, summary

        model_result, prior_result = evaluate(
            args.model_dir, args.images, args.csv, split=args.split
        )
        print(format_table(model_result, prior_result))
        print(json.dumps({**summary(model_result), "label_prior": summary(prior_result)}))
        return 0
    if args.command == "compare":
        from training.export import record_comparison

        record_comparison(args.model_dir, args.baseline_dir, args.label)
        return 0
    if args.command == "probe":
        from training.export import record_probe
        from training.probe import linear_probe

        result = linear_probe(
            args.csv, args.images, train_limit=args.train_limit, internal_size=args.internal_size
        )
        if args.record:
            record_probe(args.record, result)
        print(json.dumps(result))
        return 0
    if args.command == "card":
        from training.card import model_card, replace_in_readme

        text = model_card(args.model_dir)
        if args.readme:
            replace_in_readme(args.readme, text)
        else:
            print(text)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
