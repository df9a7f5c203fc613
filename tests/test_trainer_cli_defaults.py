"""shelfscan-train: defaults come from the config dataclasses the run is built from, and --help shows them."""

from __future__ import annotations

from trainer.augment import AugmentConfig
from trainer.cli import build_parser
from trainer.finetune import FineTuneConfig
from trainer.head import HeadConfig
from trainer.run import TrainConfig


def test_parser_defaults_are_the_dataclass_defaults():
    args = build_parser().parse_args(["data", "--out", "run"])
    head, tune, run = HeadConfig(), FineTuneConfig(), TrainConfig(data="data", out="run")
    assert (args.learning_rate, args.hidden, args.dropout, args.label_smoothing, args.balance) == (
        head.learning_rate,
        head.hidden,
        head.dropout,
        head.label_smoothing,
        head.balance,
    )
    assert args.standardize_features == head.standardize
    assert (args.fine_tune_epochs, args.fine_tune_lr) == (tune.epochs, tune.learning_rate)
    assert (args.augment_views, args.weights, args.interpolation, args.val_pct, args.test_pct) == (
        AugmentConfig().views,
        run.weights,
        run.interpolation,
        run.val_pct,
        run.test_pct,
    )
    assert (args.batch_size, args.seed, args.strategy, args.cache_dir) == (
        run.batch_size,
        run.seed,
        run.strategy,
        run.cache_dir,
    )


def test_help_shows_the_defaults():
    text = build_parser().format_help()
    assert f"(default: {HeadConfig().hidden})" in text and f"(default: {FineTuneConfig().learning_rate})" in text
