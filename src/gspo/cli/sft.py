"""``gspo sft``: supervised fine-tuning on a task's reference completions (baseline, or RL warm start).

    gspo sft --task addition --max-steps 40 --output-dir runs/sft
    gspo train --model runs/sft/final            # RL from the fine-tuned weights

Config: ``SFTConfig`` defaults < ``--config`` YAML < ``--field value``; every value is validated before
torch or a model is imported. See :mod:`gspo.trainer.sft` for the reference-column rule and the loss.
"""

from __future__ import annotations

from gspo.cli.runner import RunCommand, add_fields, add_run_parser, offline_report, run_command


def register(subparsers) -> None:
    from gspo.trainer.sft import SFTConfig

    p = add_run_parser(
        subparsers,
        "sft",
        SFTConfig,
        help="supervised fine-tuning on a task's reference solutions (baseline / warm start)",
        description="Fine-tune on (prompt, reference completion + EOS) pairs with a prompt-masked cross-entropy; "
        "evaluate held-out accuracy before and after; save OUTPUT_DIR/final for `gspo train --model`.",
    )
    add_fields(p, SFTConfig)


def run(args) -> int:
    from gspo.trainer.sft import build_sft_trainer, load_sft_config

    return run_command(args, RunCommand(load=load_sft_config, build=build_sft_trainer, report=offline_report))
