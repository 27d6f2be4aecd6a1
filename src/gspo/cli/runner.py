"""The one runner behind ``gspo train`` and ``gspo sft``: a sub-parser with ``--config``,
``--print-config`` and one option per config field; then config (defaults < YAML < options) ->
trainer -> ``train()`` -> the summary as JSON and a one-line before/after report."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunCommand:
    """What differs between the run commands: their config, trainer builder and report line."""

    load: Callable[..., Any]  # load(path, overrides) -> a validated config
    build: Callable[[Any], Any]  # config -> a trainer with .train() -> summary
    report: Callable[[dict[str, Any], Any], str]  # (summary, config) -> the closing line
    launch: Callable[[Any, Any], int | None] | None = None  # (args, config) -> exit code when it relaunched


def add_run_parser(subparsers, name: str, config_cls: type, **parser_kwargs) -> argparse.ArgumentParser:
    """The sub-parser of a run command: ``--config`` and ``--print-config``; then ``add_fields``."""
    p = subparsers.add_parser(name, formatter_class=argparse.ArgumentDefaultsHelpFormatter, **parser_kwargs)
    p.add_argument(
        "--config", default=None, help=f"YAML file with {config_cls.__name__} fields (command-line options override it)"
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    return p


def add_fields(p: argparse.ArgumentParser, config_cls: type) -> None:
    from gspo.config import add_config_arguments

    add_config_arguments(p, config_cls)


def run_command(args, command: RunCommand) -> int:
    """Load the config, maybe relaunch or print it, build the trainer, train, print the summary."""
    from gspo.cli.main import CLIError
    from gspo.config import ConfigError, to_yaml
    from gspo.config.fields import overrides_from_args

    try:
        config = command.load(args.config, overrides_from_args(args))
    except ConfigError as exc:
        raise CLIError(str(exc)) from None
    if command.launch is not None:
        code = command.launch(args, config)
        if code is not None:
            return code
    if args.print_config:
        print(to_yaml(config), end="")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        trainer = command.build(config)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from None
    summary = trainer.train()
    dist = getattr(trainer, "dist", None)
    if dist is not None and not dist.is_main:
        return 0
    print(json.dumps(summary, indent=1))
    if summary.get("eval_before") is not None and summary.get("eval_after") is not None:
        print(command.report(summary, config))
    return 0


def before_after(summary: dict[str, Any]) -> str:
    """``held-out accuracy: before B -> after A (+D)``."""
    before, after = summary["eval_before"], summary["eval_after"]
    return f"held-out accuracy: before {before:.3f} -> after {after:.3f} ({after - before:+.3f})"


def offline_report(summary: dict[str, Any], config) -> str:
    """The last line of an offline run (``gspo sft``, ``gspo dpo``): accuracy, loss, where the model is."""
    return (
        f"{before_after(summary)}; loss {summary['first_loss']:.3f} -> {summary['final_loss']:.3f}; "
        f"model in {config.output_dir}/final"
    )
