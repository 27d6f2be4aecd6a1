"""``gspo compare``: matched runs of the table's algorithms (and SFT) over several seeds, one report.

    gspo compare --algos gspo,grpo,ppo,dpo,sft --seeds 3 --max-steps 40 --output-dir runs/compare
    gspo compare --algos gspo,grpo,sft --seeds 0,1 --task addition --model embedded --clip-low 0.1

Every ``GSPOConfig`` field is accepted as ``--field value`` (or in ``--config`` YAML) and applies to every
run; ``algorithm`` is set per run, ``seed`` is the first seed of ``--seeds N``, and ``--output-dir`` is
the report folder (default ``runs/compare``; each run writes to ``OUTPUT_DIR/runs/<algo>-seed<S>``).
Without ``--eval-every`` the runs evaluate every ``max(1, max_steps // 8)`` steps, so that every run has
a held-out accuracy curve of about 8 points.
See :mod:`gspo.experiments.compare` for what "matched" means and the collapse criterion.
"""

from __future__ import annotations

import argparse
import logging
import sys

DEFAULT_OUTPUT_DIR = "runs/compare"


def register(subparsers) -> None:
    from gspo.config import GSPOConfig, add_config_arguments
    from gspo.experiments.compare import COMPARE_ALGORITHMS, DEFAULT_COLLAPSE_DROP

    p = subparsers.add_parser(
        "compare",
        help="compare GSPO, GRPO, PPO, DPO, SFT ... in matched runs over several seeds",
        description="Train each algorithm on the same data order, seeds and sampling budget (each with its own "
        "documented defaults, its paper clip range unless --clip-low/--clip-high are given), then write "
        "report.json, report.md and PNG curves to --output-dir.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--algos",
        default="gspo,grpo",
        help=f"comma-separated algorithms to compare, from {', '.join(COMPARE_ALGORITHMS)} "
        "(sft: supervised fine-tuning on the task's references, same prompts)",
    )
    p.add_argument(
        "--seeds",
        default="3",
        help="a number N of seeds (SEED, SEED+1, ..., from --seed) or a comma-separated list of seeds",
    )
    p.add_argument("--config", default=None, help="YAML file of GSPOConfig fields shared by every run")
    p.add_argument(
        "--sft-config",
        default=None,
        help="YAML file of SFTConfig fields for the sft runs (model, data, evaluation, seed, batch_size "
        "and max_steps are always matched to the RL runs)",
    )
    p.add_argument(
        "--collapse-window",
        type=int,
        default=None,
        help="W of the collapse criterion: trailing window (steps) of the reward mean "
        "(default: max(3, ceil(steps/10)))",
    )
    p.add_argument(
        "--collapse-drop",
        type=float,
        default=DEFAULT_COLLAPSE_DROP,
        help="a run collapsed when its trailing-mean reward ends more than this below its peak",
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="keep finished runs in OUTPUT_DIR whose config is unchanged instead of training them again",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    add_config_arguments(p, GSPOConfig, skip=("algorithm",))


def run(args) -> int:
    from gspo.cli.main import CLIError
    from gspo.config import ConfigError, GSPOConfig
    from gspo.config.fields import from_dict, load_yaml, overrides_from_args
    from gspo.experiments.compare import parse_algos, parse_seeds

    try:
        values = dict(load_yaml(args.config)) if args.config else {}
        if "algorithm" in values:
            raise ConfigError("algorithm", "is chosen per run by --algos; remove it from the YAML file")
        values.update(overrides_from_args(args))
        values.setdefault("output_dir", DEFAULT_OUTPUT_DIR)
        values.setdefault("eval_every", 0)  # not given: run_comparison picks max(1, max_steps // 8)
        base = from_dict(GSPOConfig, values, source=args.config or "command line").validate()
        algos = parse_algos(args.algos)
        seeds = parse_seeds(args.seeds, base.seed)
        sft_template = None
        if "sft" in algos:
            from gspo.trainer.sft import load_sft_config

            sft_template = load_sft_config(args.sft_config)
        elif args.sft_config:
            raise ConfigError("sft_config", "given but 'sft' is not in --algos")
    except ConfigError as exc:
        raise CLIError(str(exc)) from None

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from gspo.experiments.compare import run_comparison

    try:
        report = run_comparison(
            base,
            algos,
            seeds,
            base.output_dir,
            sft_template=sft_template,
            collapse_window=args.collapse_window,
            collapse_drop=args.collapse_drop,
            reuse=args.reuse,
            plots=not args.no_plots,
        )
    except (ValueError, FileNotFoundError) as exc:  # ConfigError is a ValueError
        raise CLIError(str(exc)) from None
    print(f"{'algorithm':<11} {'acc before':>11} {'acc after (mean ± std)':>23} {'clip frac':>10} {'collapses':>9}")
    for algo in algos:
        a = report["algorithms"][algo]
        after = a["eval_after"]
        after_s = "n/a" if after["mean"] is None else f"{after['mean']:.3f} ± {after['std']:.3f}"
        before = a["eval_before"]["mean"]
        clip = a.get("clip_frac", {}).get("mean")
        print(
            f"{algo:<11} {'n/a' if before is None else f'{before:.3f}':>11} {after_s:>23} "
            f"{'—' if clip is None else f'{clip:.3g}':>10} {a.get('collapses', '—')!s:>9}"
        )
    print(f"report: {base.output_dir}/report.md ({report['total_wall_seconds']:.0f}s)")
    return 0
