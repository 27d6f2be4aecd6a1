"""The ``gspo`` command: dispatches to one module per subcommand.

Each subcommand lives in ``gspo/cli/<name>.py`` and provides two functions:

- ``register(subparsers)``: add its ``argparse`` sub-parser (with ``help=`` for every option);
- ``run(args) -> int``: do the work and return the exit code.

Imports are lazy (torch and transformers load only when a subcommand runs), so ``gspo --help`` and
config errors answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

# Idle OpenMP threads sleep instead of spinning: on a shared CPU, spinning made 2-thread steps 3x slower
# than 1-thread ones (benchmarks/README.md, R9). Set before torch is imported; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: subcommand name -> module under gspo.cli
SUBCOMMANDS: dict[str, str] = {
    "train": "gspo.cli.train",
    "eval": "gspo.cli.eval",
    "plot": "gspo.cli.plot",
    "prepare-model": "gspo.cli.prepare",
    "compare": "gspo.cli.compare",
    "sft": "gspo.cli.sft",
    "dpo": "gspo.cli.dpo",
}


class CLIError(Exception):
    """A user-facing error: printed as ``gspo: error: ...`` with exit code 2, no traceback."""


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Any]]:
    parser = argparse.ArgumentParser(
        prog="gspo",
        description="Fine-tune language models with GSPO (Group Sequence Policy Optimization).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, Any] = {}
    for name, module_name in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # a subcommand not built yet
            if exc.name == module_name:
                continue
            raise
        module.register(sub)
        modules[name] = module
    return parser, modules


def _quiet_bars_off_terminal() -> None:
    """Library progress bars (transformers' "Loading weights", the GGUF conversion's plain tqdm, ...)
    only in a terminal: in a log file they are carriage-return soup. Set before transformers is
    imported; a user's value wins. Our own progress prints plain lines there instead
    (``gspo.trainer.progress``), so tqdm's default can be off."""
    try:
        interactive = sys.stderr.isatty()
    except (AttributeError, ValueError):
        interactive = False
    if not interactive:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")  # tqdm >= 4.66 reads its defaults from TQDM_* variables


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_bars_off_terminal()
    parser, modules = build_parser()
    if not argv:
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from gspo.config import ConfigError

    try:
        return int(modules[args.command].run(args) or 0)
    except (CLIError, ConfigError) as exc:
        print(f"gspo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
