"""``gspo train``: build a run from the config (defaults < YAML < ``--field value``) and train.

Every field is validated before torch or a model is imported, so a bad value answers at once with
the field's name and what is allowed. With no arguments this is the embedded default run: the
project's tiny pre-trained adder learns to carry (see README), evaluated before and after.
"""

from __future__ import annotations

import sys

from gspo.cli.runner import RunCommand, add_fields, add_run_parser, before_after, run_command
from gspo.config import GSPOConfig, load_config


def register(subparsers) -> None:
    p = add_run_parser(
        subparsers,
        "train",
        GSPOConfig,
        help="train a model with GSPO (or GRPO, PPO, online DPO ...: --algorithm)",
        description="Train with GSPO. With no arguments: the embedded default run (a few minutes on CPU).",
    )
    p.add_argument(
        "--num-processes",
        type=int,
        default=1,
        help="data-parallel processes: re-launches this command under `accelerate launch` (GPUs, or CPU with gloo)",
    )
    p.add_argument(
        "--accelerate-config",
        default=None,
        help="accelerate config file for the launch (e.g. configs/accelerate/fsdp.yaml, deepspeed_zero2.yaml)",
    )
    add_fields(p, GSPOConfig)


def run(args) -> int:
    from gspo.trainer.build import build_trainer

    return run_command(args, RunCommand(load=load_config, build=build_trainer, report=_report, launch=_launch))


def _report(summary: dict, config: GSPOConfig) -> str:
    return f"{before_after(summary)} in {summary['train_seconds']:.0f}s; outputs in {config.output_dir}"


def _launch(args, config: GSPOConfig) -> int | None:
    """Re-run under ``accelerate launch`` when more processes are asked for (None: run here)."""
    if (args.num_processes > 1 or args.accelerate_config) and not _inside_launch():
        _check_launch_here(args)
        return _relaunch(args)
    return None


def _inside_launch() -> bool:
    from gspo.trainer.distributed import launched_distributed

    return launched_distributed()


def _check_launch_here(args) -> None:
    """Refuse, in one sentence and before any process starts, a launch this machine cannot run."""
    from gspo.cli.main import CLIError
    from gspo.config import load_yaml
    from gspo.trainer.distributed import gpu_only_launch_error

    if args.num_processes < 1:
        raise CLIError(f"--num-processes must be >= 1, got {args.num_processes}")
    if not args.accelerate_config:
        return
    settings = load_yaml(args.accelerate_config)
    error = gpu_only_launch_error(str(settings.get("distributed_type", "")), args.accelerate_config)
    if error:
        raise CLIError(error)


def _relaunch(args) -> int:
    """Run the same command under ``accelerate launch`` with the requested process count."""
    import os
    import subprocess

    argv = sys.argv[sys.argv.index("train") + 1 :] if "train" in sys.argv else []
    cleaned, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        if token in ("--num-processes", "--accelerate-config"):
            skip = True
            continue
        if token.startswith(("--num-processes=", "--accelerate-config=")):
            continue
        cleaned.append(token)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(args.num_processes)]
    if args.accelerate_config:
        cmd += ["--config_file", args.accelerate_config]
    elif args.num_processes > 1:
        # torchrun-style workers; without CUDA each worker runs on the CPU with gloo (Accelerator(cpu=True)
        # in build_trainer). accelerate's --cpu would start ONE process unless MPI is set up.
        cmd += ["--multi_gpu"]
    cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "gspo", "train", *cleaned]
    print("launching:", " ".join(cmd), file=sys.stderr)
    return subprocess.call(cmd, env=dict(os.environ))
