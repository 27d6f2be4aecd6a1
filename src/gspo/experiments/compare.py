"""Matched comparison of the algorithm table's entries (GSPO, GSPO-token, GRPO, PPO with a critic, online
DPO, the GSPO family ...) and SFT, the plain fine-tuning baseline: ``--algos gspo,grpo,ppo,dpo,sft``.

``run_comparison(base, algos, seeds, output_dir)`` trains one run per (algorithm, seed), one after the
other in this process, and writes one report folder::

    OUTPUT_DIR/report.json            every number below, and every run's curves
    OUTPUT_DIR/report.md              the tables, the definitions, the figures
    OUTPUT_DIR/reward_curves.png      training reward, mean over seeds with the min-max band
    OUTPUT_DIR/eval_accuracy.png      held-out greedy accuracy, mean over seeds with the min-max band
    OUTPUT_DIR/clip_fraction.png      clip fraction per step, and its mean per algorithm (log scale)
    OUTPUT_DIR/runs/<algo>-seed<S>/   each run's own output (metrics.jsonl, summary.json, final/ ...)

**Matched runs.** Every run of one seed starts from the same weights and shares the base config except
``algorithm`` (and ``output_dir``): the same prompts in the same order (``PromptOrder(seed)``), the same
sampling generator seed, the same budget (``max_steps`` × ``prompts_per_step`` × ``group_size``
completions) and the same evaluation rows. Each algorithm gets its own documented defaults (the table's:
GSPO and GSPO-token clip 3e-4/4e-4, GRPO 0.2/0.27, PPO 0.2 with its critic and GAE, DPO β 0.1 on the
best/worst pair of each group) unless ``clip_low``/``clip_high`` are set, which then apply to all.
PPO's critic starts from the same weights as the policy; DPO's reference is the starting policy. Runs go seed by seed (all algorithms of seed 0, then seed 1 ...) so slow phases of a shared
machine are spread over the algorithms rather than landing on one. When ``eval_every`` is 0 it is set
to ``max(1, max_steps // 8)`` so every run has a held-out accuracy curve.

**SFT** (``sft`` in ``algos``): :class:`gspo.trainer.sft.SFTTrainer` on the task's references with
``batch_size = prompts_per_step`` and ``max_steps`` equal to the RL runs', so it sees exactly the same
training prompts in the same order (one reference each, where RL samples ``group_size`` completions);
its other settings come from an optional ``SFTConfig`` template. It has no reward or clip fraction. SFT
always fine-tunes all weights: with ``lora_r > 0`` the RL runs train adapters and SFT does not (warned).

**Collapse.** With ``r_t`` the mean training reward of step ``t`` and ``m_t`` its trailing mean over the
last ``W`` steps (``W = collapse_window``, default ``max(3, ceil(steps / 10))``), a run *collapsed* when
``max_t m_t - m_T > collapse_drop`` (default 0.2 reward units): its smoothed reward fell more than
``collapse_drop`` below its best level and had not recovered by the last step ``T``. Every run's
``drop = max_t m_t - m_T`` is reported, collapsed or not.

**Statistics.** ``mean ± std`` are over seeds, std the sample standard deviation (n - 1; 0 for one
seed). ``clip_frac`` is the trainer's: the fraction of *sequences* clipped for GSPO/GSPO-token (a
clipped response removes all its tokens from the gradient) and of *tokens* for GRPO and PPO, so both
read as "fraction of tokens clipped" as in the paper's figure; its per-run value is the mean over
steps. DPO clips nothing and has none (a dash).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gspo.algorithms import ALGORITHMS
from gspo.config import ConfigError, GSPOConfig
from gspo.experiments.stats import DEFAULT_COLLAPSE_DROP, band, collapse_stats, describe, mean_or_none

logger = logging.getLogger("gspo")

#: What ``--algos`` accepts: the RL algorithms and the supervised baseline.
COMPARE_ALGORITHMS = (*ALGORITHMS, "sft")
#: Fields of GSPOConfig that SFT runs copy, so that both see the same model, data and evaluation.
SFT_MATCHED_FIELDS = (
    "model",
    "dtype",
    "device",
    "num_threads",
    "task",
    "task_options",
    "data_path",
    "train_split",
    "eval_split",
    "eval_limit",
    "eval_every",
    "chat",
    "max_prompt_tokens",
    "progress",
    "report_to",
)


@dataclass
class RunPlan:
    """One run of the comparison: its algorithm, seed, folder and complete config."""

    name: str
    """Run name, '<algorithm>-seed<seed>' (also its folder under runs/)."""
    algorithm: str
    """One of COMPARE_ALGORITHMS."""
    seed: int
    """The run's seed (shared by every algorithm's run of this seed)."""
    run_dir: Path
    """The run's output_dir."""
    config: Any
    """A GSPOConfig (RL) or an SFTConfig (sft)."""


# ---------------------------------------------------------------------------------------- parsing
def parse_algos(text: str | Sequence[str]) -> list[str]:
    """``"gspo,grpo"`` -> ``["gspo", "grpo"]``; unknown or repeated names raise ConfigError."""
    names = [a.strip().lower() for a in (text.split(",") if isinstance(text, str) else text) if a.strip()]
    bad = [a for a in names if a not in COMPARE_ALGORITHMS]
    if not names or bad:
        raise ConfigError("algos", f"must be a comma-separated list of {list(COMPARE_ALGORITHMS)}, got {text!r}")
    if len(set(names)) != len(names):
        raise ConfigError("algos", f"lists an algorithm twice: {text!r}")
    return names


def parse_seeds(text: str | int | Sequence[int], base_seed: int = 0) -> list[int]:
    """``"3"`` -> ``[base, base+1, base+2]`` (a count); ``"0,5,7"`` -> those seeds."""
    try:
        if isinstance(text, int):
            count, explicit = text, None
        elif isinstance(text, str) and "," not in text:
            count, explicit = int(text), None
        else:
            items = text.split(",") if isinstance(text, str) else text
            count, explicit = None, [int(s) for s in items if str(s).strip()]
    except ValueError:
        raise ConfigError(
            "seeds", f"must be a count (3) or a comma-separated list of seeds (0,1,2), got {text!r}"
        ) from None
    if explicit is None:
        assert count is not None
        if count < 1:
            raise ConfigError("seeds", f"must be >= 1, got {text!r}")
        return [base_seed + i for i in range(count)]
    if not explicit or len(set(explicit)) != len(explicit):
        raise ConfigError("seeds", f"must list distinct seeds, got {text!r}")
    return explicit


def default_eval_every(max_steps: int) -> int:
    """Evaluation interval when the base config has none: about 8 points per curve (plus before and after)."""
    return max(1, max_steps // 8)


def default_collapse_window(steps: int) -> int:
    return max(3, math.ceil(steps / 10))


# ---------------------------------------------------------------------------------------- planning
def sft_config_for(base: GSPOConfig, *, seed: int, output_dir: Path, template=None):
    """The SFT run matched to ``base``: same model, data, evaluation, seed, prompts and prompt order."""
    from gspo.trainer.sft import SFTConfig

    values = dataclasses.asdict(template or SFTConfig())
    values.update({name: getattr(base, name) for name in SFT_MATCHED_FIELDS})
    values.update(
        eval_max_new_tokens=base.eval_max_new_tokens or base.max_new_tokens,  # what GSPOTrainer.evaluate uses
        batch_size=base.prompts_per_step,
        max_steps=base.max_steps,
        seed=seed,
        output_dir=str(output_dir),
        train_limit=None,
    )
    return SFTConfig(**values).validate()


def plan_runs(
    base: GSPOConfig, algos: Sequence[str], seeds: Sequence[int], output_dir: Path, *, sft_template=None
) -> list[RunPlan]:
    """Every (seed, algorithm) run, seed-major."""
    plans = []
    for seed in seeds:
        for algo in algos:
            name = f"{algo}-seed{seed}"
            run_dir = Path(output_dir) / "runs" / name
            if algo == "sft":
                config = sft_config_for(base, seed=seed, output_dir=run_dir, template=sft_template)
            else:
                config = dataclasses.replace(
                    base, algorithm=algo, seed=seed, output_dir=str(run_dir), resume=False
                ).validate()
            plans.append(RunPlan(name, algo, seed, run_dir, config))
    return plans


# ---------------------------------------------------------------------------------------- one run
def _execute(plan: RunPlan) -> dict[str, Any]:
    from gspo.trainer.build import build_trainer
    from gspo.trainer.sft import build_sft_trainer

    build: Any = build_sft_trainer if plan.algorithm == "sft" else build_trainer
    trainer = build(plan.config)
    try:
        return trainer.train()
    finally:
        del trainer
        gc.collect()


def run_one(plan: RunPlan, *, reuse: bool = False) -> tuple[dict[str, Any], float, bool]:
    """Train one run (or, with ``reuse``, take a finished run with an identical config); returns
    ``(summary, wall_seconds, reused)``. Wall time covers building (model load) and training."""
    marker = plan.run_dir / "compare_run.json"
    config = json.loads(json.dumps(dataclasses.asdict(plan.config)))
    if reuse and marker.is_file() and (plan.run_dir / "metrics.jsonl").is_file():
        previous = json.loads(marker.read_text())
        if previous.get("config") == config:
            return previous["summary"], float(previous["wall_seconds"]), True
        logger.info("%s: config changed since the previous run; running it again", plan.name)
    start = time.perf_counter()
    summary = _execute(plan)
    wall = time.perf_counter() - start
    marker.write_text(json.dumps({"config": config, "summary": summary, "wall_seconds": wall}, indent=1))
    return summary, wall, False


def _points(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of a metric, one value per step (the last logged one)."""
    from gspo.trainer.plot import series

    by_step = dict(zip(*series(rows, key)))
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def run_record(
    plan: RunPlan,
    summary: dict[str, Any],
    wall: float,
    *,
    report_dir: Path,
    collapse_window: int | None,
    collapse_drop: float,
) -> dict[str, Any]:
    """Everything the report keeps about one run, read from its summary and metrics.jsonl."""
    from gspo.trainer.metrics import read_metrics

    rows = read_metrics(plan.run_dir / "metrics.jsonl")
    steps = int(summary["steps"])
    ev_steps, ev_values = _points(rows, "eval/accuracy")
    if summary.get("eval_before") is not None:
        ev_steps, ev_values = [0, *ev_steps], [float(summary["eval_before"]), *ev_values]
    record: dict[str, Any] = {
        "name": plan.name,
        "algorithm": plan.algorithm,
        "seed": plan.seed,
        "run_dir": str(plan.run_dir.relative_to(report_dir))
        if plan.run_dir.is_relative_to(report_dir)
        else str(plan.run_dir),
        "steps": steps,
        "eval_before": summary.get("eval_before"),
        "eval_after": summary.get("eval_after"),
        "best_eval": max(ev_values) if ev_values else None,
        # mean accuracy over the evaluations after step 0: the area under the curve (efficiency)
        "eval_auc": mean_or_none(ev_values[1:] if summary.get("eval_before") is not None else ev_values),
        "wall_seconds": wall,
        "train_seconds": summary.get("train_seconds"),
        "eval_curve": {"steps": ev_steps, "values": ev_values},
    }
    loss_steps, loss = _points(rows, "loss")
    record["loss_curve"] = {"steps": loss_steps, "values": loss}
    if plan.algorithm == "sft":
        record.update(
            examples_seen=summary.get("examples_seen"),
            reference_column=summary.get("reference_column"),
            reference_accuracy=summary.get("reference_accuracy"),
        )
        return record
    cfg: GSPOConfig = plan.config
    r_steps, rewards = _points(rows, "reward/mean")
    c_steps, clip = _points(rows, "clip_frac")
    _, lengths = _points(rows, "completion/length_mean")
    _, step_times = _points(rows, "time/step")
    window = collapse_window or default_collapse_window(len(rewards))
    record.update(
        clip_range=list(cfg.clip_range),
        reward_curve={"steps": r_steps, "values": rewards},
        clip_frac_curve={"steps": c_steps, "values": clip},
        mean_reward=mean_or_none(rewards),
        final_reward=collapse_stats(rewards, window, collapse_drop)["final"],
        clip_frac_mean=mean_or_none(clip),
        collapse=collapse_stats(rewards, window, collapse_drop),
        completions=steps * cfg.rollout_size,
        completion_tokens=round(sum(lengths) * cfg.rollout_size),
        seconds_per_step=mean_or_none(step_times),
        optimizer_steps=summary.get("optimizer_steps"),
        skipped_steps=summary.get("skipped_steps"),
    )
    return record


# ---------------------------------------------------------------------------------------- aggregation
def aggregate(records: Sequence[dict[str, Any]], algos: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per algorithm: accuracy, reward, clip fraction, collapses and time over its seeds, plus curve bands."""
    out = {}
    for algo in algos:
        runs = [r for r in records if r["algorithm"] == algo]
        entry: dict[str, Any] = {
            "seeds": [r["seed"] for r in runs],
            "eval_before": describe([r["eval_before"] for r in runs]),
            "eval_after": describe([r["eval_after"] for r in runs]),
            "eval_after_by_seed": {str(r["seed"]): r["eval_after"] for r in runs},
            "best_eval": describe([r["best_eval"] for r in runs]),
            "eval_auc": describe([r.get("eval_auc") for r in runs]),
            "eval_gain": describe(
                [
                    r["eval_after"] - r["eval_before"]
                    for r in runs
                    if r["eval_after"] is not None and r["eval_before"] is not None
                ]
            ),
            "wall_seconds": describe([r["wall_seconds"] for r in runs]),
            "train_seconds": describe([r["train_seconds"] for r in runs]),
            "wall_seconds_total": sum(r["wall_seconds"] for r in runs),
            "eval_curve": band([r["eval_curve"] for r in runs]),
        }
        if algo != "sft":
            entry.update(
                clip_range=runs[0]["clip_range"] if runs else None,
                final_reward=describe([r["final_reward"] for r in runs]),
                mean_reward=describe([r["mean_reward"] for r in runs]),
                clip_frac=describe([r["clip_frac_mean"] for r in runs]),
                collapses=sum(bool(r["collapse"]["collapsed"]) for r in runs),
                collapsed_seeds=[r["seed"] for r in runs if r["collapse"]["collapsed"]],
                max_drop=describe([r["collapse"]["drop"] for r in runs])["max"],
                seconds_per_step=describe([r["seconds_per_step"] for r in runs]),
                reward_curve=band([r["reward_curve"] for r in runs]),
                clip_frac_curve=band([r["clip_frac_curve"] for r in runs]),
            )
        else:
            entry["loss_curve"] = band([r["loss_curve"] for r in runs])
        out[algo] = entry
    return out


def headline(algorithms: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The numbers behind the paper's claims, where the algorithms involved were run."""

    def mean(algo, key):
        return (algorithms.get(algo) or {}).get(key, {}).get("mean")

    out: dict[str, Any] = {}
    g, r = mean("gspo", "clip_frac"), mean("grpo", "clip_frac")
    if g is not None and r is not None:
        out["clip_frac_gspo_over_grpo"] = g / r if r > 0 else None
    for other in ("grpo", "gspo-token", "sft"):
        a, b = mean("gspo", "eval_after"), mean(other, "eval_after")
        if a is not None and b is not None:
            out[f"eval_after_gspo_minus_{other}"] = a - b
    if "gspo" in algorithms and "gspo-token" in algorithms:
        a, b = algorithms["gspo"]["eval_after_by_seed"], algorithms["gspo-token"]["eval_after_by_seed"]
        diffs = [abs(a[s] - b[s]) for s in a if b.get(s) is not None and a[s] is not None]
        out["gspo_vs_gspo_token_max_abs_eval_after_diff"] = max(diffs) if diffs else None
    return out


# ---------------------------------------------------------------------------------------- the whole thing
def run_comparison(
    base: GSPOConfig,
    algos: Sequence[str],
    seeds: Sequence[int],
    output_dir: str | Path,
    *,
    sft_template=None,
    collapse_window: int | None = None,
    collapse_drop: float = DEFAULT_COLLAPSE_DROP,
    reuse: bool = False,
    plots: bool = True,
) -> dict[str, Any]:
    """Run every (seed, algorithm) pair, then write report.json, report.md and the PNGs; return the report."""
    from gspo.experiments.report import write_report

    algos = parse_algos(list(algos))
    if collapse_window is not None and collapse_window < 1:
        raise ConfigError("collapse_window", f"must be >= 1, got {collapse_window}")
    if not collapse_drop > 0:
        raise ConfigError("collapse_drop", f"must be > 0, got {collapse_drop}")
    base = dataclasses.replace(base, eval_every=base.eval_every or default_eval_every(base.max_steps)).validate()
    collapse_window = collapse_window or default_collapse_window(base.max_steps)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_runs(base, algos, seeds, out, sft_template=sft_template)
    if "sft" in algos and getattr(base, "lora_r", 0) > 0:
        logger.warning("compare: sft runs fine-tune all weights; the RL runs use LoRA (lora_r=%d)", base.lora_r)
    records = []
    start = time.perf_counter()
    if not (reuse and all((p.run_dir / "compare_run.json").is_file() for p in plans)):
        _warm_up(base)
    for i, plan in enumerate(plans, 1):
        logger.info("compare [%d/%d]: %s", i, len(plans), plan.name)
        summary, wall, reused = run_one(plan, reuse=reuse)
        record = run_record(
            plan, summary, wall, report_dir=out, collapse_window=collapse_window, collapse_drop=collapse_drop
        )
        record["reused"] = reused
        records.append(record)
        logger.info(
            "compare [%d/%d]: %s held-out %s -> %s in %.0fs%s",
            i,
            len(plans),
            plan.name,
            _fmt(record["eval_before"]),
            _fmt(record["eval_after"]),
            wall,
            " (reused)" if reused else "",
        )
    algorithms = aggregate(records, algos)
    import torch

    report = {
        "format": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "algorithms_order": list(algos),
        "seeds": list(seeds),
        "settings": {
            "base_config": dataclasses.asdict(base),
            "eval_every": base.eval_every,
            "completions_per_run": base.max_steps * base.rollout_size,
            "prompts_per_run": base.max_steps * base.prompts_per_step,
            "collapse_window": collapse_window,
            "collapse_drop": collapse_drop,
            "sft_config": dataclasses.asdict(plans[[p.algorithm for p in plans].index("sft")].config)
            if "sft" in algos
            else None,
        },
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "machine": platform.machine(),
        },
        "total_wall_seconds": time.perf_counter() - start,
        "runs_wall_seconds": sum(r["wall_seconds"] for r in records),
        "algorithms": algorithms,
        "headline": headline(algorithms),
        "runs": records,
    }
    write_report(report, out, plots=plots)
    return report


def _warm_up(base: GSPOConfig) -> None:
    """Load the model once, untimed, so one-time import and file-cache costs do not land on the first run."""
    from gspo.models.loading import load_model_and_tokenizer

    try:
        model, _ = load_model_and_tokenizer(base.model, dtype=base.dtype, device="cpu")
    except Exception:  # noqa: BLE001 - the first run reports the real error
        return
    del model
    gc.collect()


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"
