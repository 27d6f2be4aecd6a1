"""Summarise the seeds of a recipe: the README row (held-out before -> after, mean ± std) and curves.

    for s in 0 1 2; do gspo train --config recipes/NAME.yaml --seed $s --output-dir runs/NAME/seed$s; done
    python recipes/summarize.py runs/NAME [--out docs/img/NAME.png]

Reads each ``seed*/summary.json`` and ``metrics.jsonl`` under the folder; prints one markdown line
per seed and the mean ± std row, and draws held-out accuracy, reward, completion length and entropy
as mean ± std bands over the seeds (``gspo.experiments.stats.band``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gspo.experiments.stats import band, describe
from gspo.trainer.metrics import read_metrics
from gspo.trainer.plot import series

PANELS = (("eval/accuracy", "held-out accuracy (greedy)"), ("reward/mean", "reward (mean over the rollout)"),
          ("completion/length_mean", "completion length (tokens)"), ("entropy", "entropy (nats/token)"))  # fmt: skip


def _curve(rows: list[dict], key: str, before: float | None) -> dict[str, list]:
    steps, values = series(rows, key)
    if key == "eval/accuracy" and before is not None and 0 not in steps:
        steps, values = [0, *steps], [before, *values]
    return {"steps": steps, "values": values}


def summarize(folder: Path) -> tuple[list[str], dict]:
    """Markdown lines (one per seed, then the mean ± std) and per-panel bands."""
    runs = sorted(p for p in folder.glob("seed*") if (p / "summary.json").is_file())
    if not runs:
        raise SystemExit(f"no seed*/summary.json under {folder}")
    lines, before, after, bands = [], [], [], {}
    curves: dict[str, list] = {key: [] for key, _ in PANELS}
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        rows = read_metrics(run / "metrics.jsonl")
        before.append(summary["eval_before"])
        after.append(summary["eval_after"])
        lines.append(f"| {run.name} | {summary['eval_before']:.3f} | {summary['eval_after']:.3f} | "
                     f"{summary['eval_after'] - summary['eval_before']:+.3f} | {summary['steps']} | "
                     f"{summary['train_seconds'] / 60:.1f} min |")  # fmt: skip
        for key, _ in PANELS:
            curves[key].append(_curve(rows, key, summary["eval_before"]))
    b, a = describe(before), describe(after)
    gain = describe([y - x for x, y in zip(before, after)])
    lines.append(f"| mean ± std ({len(runs)} seeds) | {b['mean']:.3f} ± {b['std']:.3f} | {a['mean']:.3f} ± "
                 f"{a['std']:.3f} | {gain['mean']:+.3f} ± {gain['std']:.3f} | | |")  # fmt: skip
    for key, _ in PANELS:
        bands[key] = band([c for c in curves[key] if c["steps"]])
    return lines, bands


def plot(bands: dict, title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.2))
    for ax, (key, label) in zip(axes, PANELS):
        data = bands[key]
        if data["steps"]:
            lo = [m - s for m, s in zip(data["mean"], data["std"])]
            hi = [m + s for m, s in zip(data["mean"], data["std"])]
            ax.fill_between(data["steps"], lo, hi, alpha=0.25)
            ax.plot(data["steps"], data["mean"], marker="o" if key == "eval/accuracy" else None, ms=3)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step")
    fig.suptitle(f"{title}: mean ± std over seeds", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="folder holding seed*/ run folders")
    parser.add_argument("--out", type=Path, default=None, help="PNG path (default: FOLDER/curves.png)")
    args = parser.parse_args(argv)
    lines, bands = summarize(args.folder)
    print("| seed | before | after | gain | steps | training time |\n|---|---:|---:|---:|---:|---:|")
    print("\n".join(lines))
    plot(bands, args.folder.name, args.out or args.folder / "curves.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
