"""PNG curves of a run from its ``metrics.jsonl``: reward, held-out accuracy, clip fraction, KL,
completion length, loss, entropy and gradient norm — the panels a person checks first.

Raw values are drawn thin, with an exponential moving average on top when there are enough points.
"""

from __future__ import annotations

import math
from pathlib import Path

from gspo.trainer.metrics import read_metrics

PANELS = (
    ("reward/mean", "reward (mean)"),
    ("eval/accuracy", "held-out accuracy"),
    ("clip_frac", "clip fraction"),
    ("kl", "KL to reference"),
    ("completion/length_mean", "completion length (tokens)"),
    ("loss", "loss"),
    ("entropy", "entropy (nats/token)"),
    ("grad_norm", "gradient norm"),
)


def _ema(values: list[float], alpha: float = 0.2) -> list[float]:
    out, acc = [], None
    for v in values:
        acc = v if acc is None else alpha * v + (1 - alpha) * acc
        out.append(acc)
    return out


def series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for row in rows:
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            xs.append(int(row["step"]))
            ys.append(float(value))
    return xs, ys


def plot_run(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write ``training_curves.png`` (or ``output``) for the run in ``run_dir``; return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.jsonl"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"no metrics.jsonl in {run_dir}")
    rows = read_metrics(metrics_path)
    panels = [(k, t) for k, t in PANELS if series(rows, k)[0]]
    if not panels:
        raise ValueError(f"{metrics_path} has no plottable metrics")
    cols = 2 if len(panels) > 1 else 1
    n_rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(6 * cols, 3 * n_rows), squeeze=False)
    for ax, (key, title) in zip(axes.flat, panels):
        xs, ys = series(rows, key)
        many = len(xs) >= 8
        ax.plot(xs, ys, color="tab:blue", alpha=0.35 if many else 1.0, linewidth=1, marker=None if many else "o")
        if many:
            ax.plot(xs, _ema(ys), color="tab:blue", linewidth=2)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(f"gspo run: {run_dir.name}")
    fig.tight_layout()
    out = Path(output) if output else run_dir / "training_curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
