"""Run logging: ``metrics.jsonl`` (one line per step, the source of truth), copied to the trackers
named in ``report_to`` (``gspo.trainer.trackers``); the progress bar's headline metrics.

On resume, lines of steps after the checkpoint being resumed are dropped from ``metrics.jsonl`` first,
so the file never holds two lines for one step.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from gspo.trainer.trackers import numeric_scalars, open_trackers

logger = logging.getLogger("gspo")

#: Shown in the progress bar, in this order, when present.
PROGRESS_KEYS = (("reward", "reward/mean"), ("loss", "loss"), ("clip", "clip_frac"), ("tok/s", "tokens_per_s"))


def _mean_of(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def rollout_metrics(roll, rewards, rewards_B, adv_B) -> dict[str, Any]:
    """Reward, advantage and completion-length statistics of one rollout (host floats).

        ``rewards``: the trainer's reward result (``total``, ``per_function``, ``failures``; missing
        rewards are NaN); ``rewards_B``: the global rewards tensor; ``adv_B``: this process's advantages (``[B]``, or ``[B, T]``
    per token, whose statistics then cover the completion tokens).
    """
    import torch

    lengths = roll.completion_mask_BT.sum(-1).float()
    if adv_B.dim() == 2:  # per-token advantages (GAE): statistics over the real tokens only
        adv_B = adv_B[roll.completion_mask_BT.bool()[:, : adv_B.shape[1]]]
    return {
        "reward/mean": _mean_of(rewards.total),
        "reward/std": float(torch.nan_to_num(rewards_B, nan=0.0).std()),
        **{f"reward/{name}": _mean_of(v) for name, v in rewards.per_function.items()},
        "reward/missing": sum(math.isnan(v) for v in rewards.total),
        "reward/failures": sum(rewards.failures.values()),
        "advantage/abs_mean": float(adv_B.abs().mean()),
        "advantage/zero_frac": float((adv_B == 0).float().mean()),
        "completion/length_mean": float(lengths.mean()),
        "completion/length_max": int(lengths.max()),
        "completion/truncated_frac": float((~roll.finished_B).float().mean()),
    }


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
    return value


class MetricsLogger:
    """Appends one JSON line per logged step to ``metrics.jsonl`` and copies it to the trackers.

    ``report_to``: tracker names (see ``gspo.trainer.trackers``); ``run_config``: what trackers record
    as the run's configuration; ``enabled=False`` (processes other than the main one) writes nothing.
    """

    def __init__(
        self,
        output_dir: Path,
        *,
        report_to: list[str] | tuple[str, ...] = (),
        run_config: dict | None = None,
        enabled: bool = True,
        resume_step: int | None = None,
    ):
        self.enabled = enabled
        self.path = Path(output_dir) / "metrics.jsonl"
        self._trackers: list = []
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and self._step_of(line) <= resume_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept))
        self._trackers = open_trackers(
            list(report_to), Path(output_dir), config=run_config or {}, resume=resume_step is not None
        )

    @staticmethod
    def _step_of(line: str) -> int:
        try:
            return int(json.loads(line).get("step", -1))
        except ValueError:
            return 1 << 62  # a torn last line from a crash: drop it

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": step, **{k: _jsonable(v) for k, v in metrics.items()}}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._trackers:
            scalars = numeric_scalars(record)
            for tracker in self._trackers:
                tracker.log(step, scalars)

    def close(self) -> None:
        trackers, self._trackers = self._trackers, []
        for tracker in trackers:
            tracker.close()


def progress_postfix(metrics: dict[str, Any]) -> dict[str, str]:
    out = {}
    for label, key in PROGRESS_KEYS:
        if key in metrics and metrics[key] is not None:
            value = _jsonable(metrics[key])
            out[label] = f"{value:.3g}" if isinstance(value, float) else str(value)
    return out


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Parse a ``metrics.jsonl``; a torn last line is ignored."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows
