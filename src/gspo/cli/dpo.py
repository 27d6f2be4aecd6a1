"""``gspo dpo``: offline DPO on preference pairs from a JSONL file (``prompt``, ``chosen``, ``rejected``).

    gspo dpo --data pairs.jsonl --max-steps 40 --output-dir runs/dpo
    gspo train --model runs/dpo/final            # RL from the DPO-tuned weights

Config: ``DPOConfig`` defaults < ``--config`` YAML < ``--field value``, as ``gspo sft``; every value, and
every row of the pairs file, is checked before a model loads. Online DPO (pairs sampled and judged by the
reward during training) is ``gspo train --algorithm dpo``. See :mod:`gspo.trainer.dpo`.
"""

from __future__ import annotations

from gspo.cli.runner import RunCommand, add_fields, add_run_parser, offline_report, run_command


def register(subparsers) -> None:
    from gspo.trainer.dpo import DPOConfig

    p = add_run_parser(
        subparsers,
        "dpo",
        DPOConfig,
        help="offline DPO on (prompt, chosen, rejected) pairs from a JSONL file",
        description="Direct preference optimisation against the starting model on the pairs of --data; evaluate "
        "the task's held-out accuracy before and after; save OUTPUT_DIR/final for `gspo train --model`.",
    )
    add_fields(p, DPOConfig)


def run(args) -> int:
    from gspo.trainer.dpo import build_dpo_trainer, load_dpo_config

    return run_command(args, RunCommand(load=load_dpo_config, build=build_dpo_trainer, report=offline_report))
