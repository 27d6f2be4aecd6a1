"""Writing a comparison report: ``report.json``, ``report.md`` and the PNG figures.

The report dict is built by :func:`gspo.experiments.compare.run_comparison`; this module only renders
it. Figures (matplotlib, Agg, the style of :mod:`gspo.trainer.plot`): per algorithm the mean over
seeds as a line and the min-max range over seeds as a shaded band.

- ``reward_curves.png``: training reward per step, smoothed with the trailing mean used by the collapse
  criterion (raw per-step mean drawn thin);
- ``eval_accuracy.png``: held-out greedy accuracy (step 0 = before training);
- ``clip_fraction.png``: clip fraction per step (log scale) and its mean over training per algorithm,
  one dot per seed (log scale: GSPO and GRPO differ by orders of magnitude).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

COLORS = {
    "gspo": "tab:blue",
    "gspo-token": "tab:green",
    "grpo": "tab:orange",
    "sft": "tab:gray",
    "ppo": "tab:red",
    "dpo": "tab:purple",
    "dapo": "tab:brown",
    "dr-grpo": "tab:pink",
    "cispo": "tab:olive",
    "gmpo": "tab:cyan",
    "sapo": "indigo",
    "rloo": "teal",
    "reinforce++": "goldenrod",
}
#: Colours for algorithms registered later (not named above).
OTHER_COLORS = ("navy", "lime", "k", "tab:gray")


def color_of(algo: str) -> str:
    """A fixed colour per algorithm (named above); one from OTHER_COLORS for any other."""
    if algo in COLORS:
        return COLORS[algo]
    return OTHER_COLORS[sum(map(ord, algo)) % len(OTHER_COLORS)]


#: GSPO-token equals GSPO in exact arithmetic: dashed, so that a curve on top of GSPO's stays visible.
STYLES = {"gspo-token": "--"}
FIGURES = ("reward_curves.png", "eval_accuracy.png", "clip_fraction.png")


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def _g(value: Any) -> str:
    return "—" if value is None else f"{value:.3g}"


def _pm(d: dict[str, Any] | None, digits: int = 3) -> str:
    if not d or d.get("mean") is None:
        return "—"
    return f"{d['mean']:.{digits}f} ± {d['std']:.{digits}f}"


def report_markdown(report: dict[str, Any]) -> str:
    """The human-readable report: settings, the per-algorithm table, per-run table, definitions, figures."""
    cfg = report["settings"]["base_config"]
    algos = report["algorithms_order"]
    n_seeds = len(report["seeds"])
    lines = [
        f"# Comparison: {', '.join(algos)} on `{cfg['task']}` with `{cfg['model']}`",
        "",
        f"Seeds {report['seeds']}; every run: {cfg['max_steps']} steps × {cfg['prompts_per_step']} prompts × "
        f"{cfg['group_size']} completions = {report['settings']['completions_per_run']} sampled completions "
        f"({report['settings']['prompts_per_run']} prompts), {cfg['num_minibatches']} minibatches × "
        f"{cfg['num_epochs']} epoch(s) per step, lr {cfg['learning_rate']}, temperature {cfg['temperature']}, "
        f"max {cfg['max_new_tokens']} new tokens. Held-out greedy accuracy on {cfg['eval_limit']} rows of "
        f"split `{cfg['eval_split']}` before training, every {report['settings']['eval_every']} steps and after.",
        "",
        f"## Results (mean ± std over {n_seeds} seed{'s' if n_seeds != 1 else ''})",
        "",
        "| algorithm | clip ε (low / high) | held-out acc. before | held-out acc. after | mean during run "
        "| best during run | final train reward | mean train reward | mean clip fraction | collapses | train s / run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for algo in algos:
        a = report["algorithms"][algo]
        rng = a.get("clip_range") or [None, None]
        clip = "—" if None in rng else f"{rng[0]:g} / {rng[1]:g}"  # SAPO has no clip range
        collapses = "—" if algo == "sft" else f"{a['collapses']}/{len(a['seeds'])}"
        lines.append(
            f"| {algo} | {clip} | {_pm(a['eval_before'])} | **{_pm(a['eval_after'])}** | {_pm(a.get('eval_auc'))} "
            f"| {_pm(a['best_eval'])} "
            f"| {_pm(a.get('final_reward'))} | {_pm(a.get('mean_reward'))} | {_pm_g(a.get('clip_frac'))} "
            f"| {collapses} | {_f(a['train_seconds']['mean'], 0)} |"
        )
    lines += [
        "",
        "## Per run",
        "",
        "| run | held-out before | after | best | final train reward | mean clip fraction "
        "| reward drop from peak | collapsed | train s | wall s | folder |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        col = r.get("collapse") or {}
        lines.append(
            f"| {r['name']} | {_f(r['eval_before'])} | {_f(r['eval_after'])} | {_f(r['best_eval'])} "
            f"| {_f(r.get('final_reward'))} | {_g(r.get('clip_frac_mean'))} | {_f(col.get('drop'))} "
            f"| {'yes' if col.get('collapsed') else ('no' if col else '—')} | {_f(r['train_seconds'], 0)} "
            f"| {_f(r['wall_seconds'], 0)} "
            f"| `{r['run_dir']}` |"
        )
    lines += ["", "## Headline numbers", ""]
    head = report.get("headline", {})
    if "clip_frac_gspo_over_grpo" in head:
        g = report["algorithms"]["gspo"]["clip_frac"]["mean"]
        r = report["algorithms"]["grpo"]["clip_frac"]["mean"]
        lines.append(
            f"- Clip fraction GSPO {_g(g)} vs GRPO {_g(r)}: ratio {_g(head['clip_frac_gspo_over_grpo'])} "
            "(paper, figure 2: about 0.15 vs 0.0013, a ratio of about 100)."
        )
    for key, value in head.items():
        if key.startswith("eval_after_gspo_minus_"):
            lines.append(
                f"- Held-out accuracy after training, GSPO minus {key[len('eval_after_gspo_minus_') :]}: "
                f"{value:+.3f} (means over seeds)."
            )
    if head.get("gspo_vs_gspo_token_max_abs_eval_after_diff") is not None:
        lines.append(
            "- GSPO vs GSPO-token, same seed: largest |difference| in final held-out accuracy "
            f"{head['gspo_vs_gspo_token_max_abs_eval_after_diff']:.3f} (equal in exact arithmetic)."
        )
    s = report["settings"]
    window = s["collapse_window"]
    lines += [
        f"- Total wall time {report['total_wall_seconds']:.0f} s ({report['runs_wall_seconds']:.0f} s in runs), "
        f"torch {report['environment']['torch']} with {report['environment']['torch_threads']} thread(s).",
        "",
        "## Definitions",
        "",
        "- *held-out acc.*: greedy accuracy with the task's scorer on the held-out rows; *mean during run*: the "
        "mean over the evaluations after step 0 (the area under the accuracy curve: efficiency at equal sampling "
        "budget); *best during run*: the best of the periodic evaluations, including before and after.",
        f"- *final train reward*: mean training reward over the last W steps (W = {window}); *mean train reward*: "
        "over all steps (the area under the reward curve, per step: efficiency at equal sampling budget).",
        "- *clip fraction*: fraction of sequences clipped for GSPO / GSPO-token (a clipped response drops all its "
        "tokens), of tokens for GRPO; mean over the steps of a run, then over seeds.",
        f"- *collapse*: with m_t the trailing mean of the training reward over W = {window} steps, a run collapsed "
        f"when max_t m_t − m_last > {s['collapse_drop']} (its smoothed reward fell that far below its best and "
        "had not recovered by the last step). *reward drop from peak* is max_t m_t − m_last for every run.",
        "- *train s*: the trainer's own time (evaluations included, model loading excluded); *wall s*: the "
        "whole run including loading. Machines are shared: compare times only within one report.",
        "- mean ± std: over seeds, sample standard deviation (n − 1).",
        "",
        "## Figures",
        "",
    ]
    lines += [f"![{name[:-4]}]({name})" for name in report.get("figures", [])]
    return "\n".join(lines) + "\n"


def _pm_g(d: dict[str, Any] | None) -> str:
    if not d or d.get("mean") is None:
        return "—"
    return f"{d['mean']:.3g} ± {d['std']:.2g}"


def _band(
    ax, curve: dict[str, list], color: str, label: str, *, raw: dict[str, list] | None = None, style: str = "-"
) -> None:
    xs = curve["steps"]
    if not xs:
        return
    ax.plot(
        xs,
        curve["mean"],
        color=color,
        linewidth=2,
        label=label,
        marker="o" if len(xs) < 12 else None,
        markersize=3,
        linestyle=style,
    )
    ax.fill_between(xs, curve["min"], curve["max"], color=color, alpha=0.18, linewidth=0)
    if raw is not None and raw["steps"]:
        ax.plot(raw["steps"], raw["mean"], color=color, linewidth=0.7, alpha=0.35)


def _smoothed(runs: list[dict[str, Any]], window: int) -> dict[str, list]:
    """Band over seeds of each run's trailing-mean reward (the collapse criterion's m_t)."""
    from gspo.experiments.stats import band

    smooth = []
    for r in runs:
        vals, steps = r["reward_curve"]["values"], r["reward_curve"]["steps"]
        w = max(1, min(window, len(vals)))
        smooth.append(
            {"steps": steps[w - 1 :], "values": [sum(vals[t - w + 1 : t + 1]) / w for t in range(w - 1, len(vals))]}
        )
    return band(smooth)


def plot_report(report: dict[str, Any], out_dir: Path) -> list[str]:
    """Write the three comparison figures into ``out_dir``; return their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = report["algorithms_order"]
    rl = [a for a in algos if a != "sft"]
    cfg = report["settings"]["base_config"]
    title = (
        f"{cfg['task']}, lr {cfg['learning_rate']:g}, {len(report['seeds'])} seed(s): mean, band = min–max over seeds"
    )
    written = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        written.append(name)

    if rl:
        fig, ax = plt.subplots(figsize=(7, 4))
        for algo in rl:
            runs = [r for r in report["runs"] if r["algorithm"] == algo]
            window = max((r["collapse"]["window"] for r in runs), default=1)
            _band(
                ax,
                _smoothed(runs, window),
                color_of(algo),
                f"{algo} (trailing mean, W={window})",
                raw=report["algorithms"][algo]["reward_curve"],
                style=STYLES.get(algo, "-"),
            )
        ax.set(xlabel="step (equal sampling budget per step)", ylabel="training reward", title=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, FIGURES[0])

    fig, ax = plt.subplots(figsize=(7, 4))
    for algo in algos:
        label = algo if algo != "sft" else "sft (same prompts per step)"
        _band(ax, report["algorithms"][algo]["eval_curve"], color_of(algo), label, style=STYLES.get(algo, "-"))
    ax.set(xlabel="step (0 = before training)", ylabel="held-out greedy accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, FIGURES[1])

    if rl:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
        positive = [
            v
            for algo in rl
            for v in report["algorithms"][algo]["clip_frac_curve"]["min"]
            + report["algorithms"][algo]["clip_frac_curve"]["max"]
            if v and v > 0
        ]
        floor = min(positive) / 3 if positive else 1e-6  # zeros are drawn at the floor of the log axis
        for algo in rl:
            curve = report["algorithms"][algo]["clip_frac_curve"]
            floored = {k: [max(v, floor) for v in curve[k]] for k in ("mean", "min", "max")}
            _band(ax1, {"steps": curve["steps"], **floored}, color_of(algo), algo, style=STYLES.get(algo, "-"))
        ax1.set_yscale("log")
        ax1.set_ylim(bottom=floor)
        ax1.set(xlabel="step", ylabel="clip fraction (0 drawn at the bottom)", title="clip fraction per step")
        ax1.grid(alpha=0.3, which="both")
        ax1.legend(fontsize=8)
        for i, algo in enumerate(rl):
            d = report["algorithms"][algo]["clip_frac"]
            if d["mean"] is None:
                continue
            color = color_of(algo)
            ax2.bar(i, max(d["mean"], floor) - floor, bottom=floor, color=color, alpha=0.6)
            ax2.scatter([i] * len(d["values"]), [max(v, floor) for v in d["values"]], color=color, s=14, zorder=3)
            ax2.annotate(f"{d['mean']:.3g}", (i, max(d["mean"], floor)), ha="center", va="bottom", fontsize=8)
        ax2.set_yscale("log")
        ax2.set_xticks(range(len(rl)), rl, rotation=45 if len(rl) > 4 else 0, ha="right" if len(rl) > 4 else "center")
        ax2.set(ylabel="mean clip fraction", title="mean over training (dots: seeds)")
        ax2.grid(alpha=0.3, axis="y", which="both")
        save(fig, FIGURES[2])
    return written


def write_report(report: dict[str, Any], out_dir: str | Path, *, plots: bool = True) -> Path:
    """Write the figures (optional), ``report.json`` and ``report.md`` into ``out_dir``; return the .md path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report["figures"] = plot_report(report, out) if plots else []
    (out / "report.json").write_text(json.dumps(report, indent=1))
    path = out / "report.md"
    path.write_text(report_markdown(report))
    return path
