"""``gspo plot RUN_DIR``: write PNG training curves from a run's ``metrics.jsonl``."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plot",
        help="plot training curves of a run",
        description="Write PNG curves (reward, accuracy, clip fraction, KL, length, loss) of a run.",
    )
    p.add_argument("run_dir", help="a run's output directory (holding metrics.jsonl)")
    p.add_argument("--output", default=None, help="PNG path (default: RUN_DIR/training_curves.png)")


def run(args) -> int:
    from gspo.cli.main import CLIError
    from gspo.trainer.plot import plot_run

    try:
        path = plot_run(args.run_dir, args.output)
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    print(path)
    return 0
