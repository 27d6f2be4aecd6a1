"""``gspo train``: build a run from the config (defaults < YAML < ``--field value``) and train.

Every field is validated before torch or a model is imported, so a bad value answers at once with
the field's name and what is allowed. With no arguments this is the embedded default run: the
project's tiny pre-trained adder learns to carry (see README), evaluated before and after.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from gspo.config import ConfigError, GSPOConfig, add_config_arguments, load_config
from gspo.config.fields import overrides_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model with GSPO / GSPO-token / GRPO",
        description="Train with GSPO. With no arguments: the embedded default run (a few minutes on CPU).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", default=None, help="YAML file with config fields (command-line options override it)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    add_config_arguments(p, GSPOConfig)


def run(args) -> int:
    from gspo.cli.main import CLIError

    try:
        config = load_config(args.config, overrides_from_args(args))
    except ConfigError as exc:
        raise CLIError(str(exc)) from None
    if args.print_config:
        from gspo.config import to_yaml

        print(to_yaml(config), end="")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from gspo.trainer.build import build_trainer

    try:
        trainer = build_trainer(config)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from None
    summary = trainer.train()
    print(json.dumps(summary, indent=1))
    before, after = summary.get("eval_before"), summary.get("eval_after")
    if before is not None and after is not None:
        print(f"held-out accuracy: before {before:.3f} -> after {after:.3f} ({after - before:+.3f}) "
              f"in {summary['train_seconds']:.0f}s; outputs in {config.output_dir}")
    return 0
