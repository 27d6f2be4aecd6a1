"""``gspo sft``: supervised fine-tuning on a task's reference completions (baseline, or RL warm start).

    gspo sft --task addition --max-steps 40 --output-dir runs/sft
    gspo train --model runs/sft/final            # RL from the fine-tuned weights

Config: ``SFTConfig`` defaults < ``--config`` YAML < ``--field value``; every value is validated before
torch or a model is imported. See :mod:`gspo.trainer.sft` for the reference-column rule and the loss.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def register(subparsers) -> None:
    from gspo.config import add_config_arguments
    from gspo.trainer.sft import SFTConfig

    p = subparsers.add_parser(
        "sft",
        help="supervised fine-tuning on a task's reference solutions (baseline / warm start)",
        description="Fine-tune on (prompt, reference completion + EOS) pairs with a prompt-masked cross-entropy; "
        "evaluate held-out accuracy before and after; save OUTPUT_DIR/final for `gspo train --model`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", default=None, help="YAML file with SFTConfig fields (command-line options override it)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    add_config_arguments(p, SFTConfig)


def run(args) -> int:
    from gspo.cli.main import CLIError
    from gspo.config import ConfigError
    from gspo.config.fields import overrides_from_args
    from gspo.trainer.sft import load_sft_config

    try:
        config = load_sft_config(args.config, overrides_from_args(args))
    except ConfigError as exc:
        raise CLIError(str(exc)) from None
    if args.print_config:
        from gspo.config import to_yaml

        print(to_yaml(config), end="")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from gspo.trainer.sft import build_sft_trainer

    try:
        trainer = build_sft_trainer(config)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from None
    summary = trainer.train()
    print(json.dumps(summary, indent=1))
    before, after = summary.get("eval_before"), summary.get("eval_after")
    if before is not None and after is not None:
        print(f"held-out accuracy: before {before:.3f} -> after {after:.3f} ({after - before:+.3f}); "
              f"loss {summary['first_loss']:.3f} -> {summary['final_loss']:.3f}; model in {config.output_dir}/final")
    return 0
