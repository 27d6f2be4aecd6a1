"""Runs the reward functions of a rollout and combines them, with defined outcomes for failures.

A reward function has TRL's signature ``f(prompts, completions, **columns) -> list[float | None]``;
``columns`` holds every dataset column (one value per completion). Several functions combine as a
weighted sum. ``None`` means "no score for this completion" (TRL's convention): it is left out of the
sum, and a completion that no function scores gets NaN, which ``group_advantages`` treats as missing
(advantage 0).

Failures: a function that raises stops the run with a ``RewardError`` naming it (``on_error="raise"``),
or, with ``on_error="zero"``, scores the whole batch 0 for that function and logs a warning. A wrong
number of scores, or a non-numeric score, is always a ``RewardError`` naming the function: those are
bugs, not flaky inputs. Non-finite scores (nan/inf) are treated as missing and counted.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("gspo")

RewardFn = Callable[..., Sequence[Any]]


class RewardError(RuntimeError):
    """A reward function failed; the message names it."""


def reward_name(fn: RewardFn) -> str:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    owner = getattr(fn, "__self__", None)
    if owner is not None and getattr(owner, "name", None):
        return f"{owner.name}"
    return name


def load_reward(spec: str) -> RewardFn:
    """A reward by registered name or ``module:function`` dotted path (see ``gspo.rewards.registry``)."""
    from gspo.rewards.registry import resolve_reward

    return resolve_reward(spec)


@dataclass
class RewardOutput:
    total: list[float]  # weighted sum per completion; NaN where no function scored it
    per_function: dict[str, list[float]]  # NaN where that function gave None / non-finite
    failures: dict[str, int] = field(default_factory=dict)  # function name -> batches zeroed after raising
    seconds: float = 0.0


class RewardRunner:
    def __init__(self, funcs: Sequence[RewardFn], weights: Sequence[float] | None = None, on_error: str = "raise"):
        if not funcs:
            raise ValueError("rewards: at least one reward function is needed")
        weights = list(weights) if weights else [1.0] * len(funcs)
        if len(weights) != len(funcs):
            raise ValueError(f"reward_weights: {len(weights)} weights for {len(funcs)} reward functions")
        if on_error not in ("raise", "zero"):
            raise ValueError(f"reward_errors: must be 'raise' or 'zero', got {on_error!r}")
        self.funcs = list(funcs)
        self.weights = [float(w) for w in weights]
        self.on_error = on_error
        names = [reward_name(f) for f in self.funcs]
        # disambiguate duplicate names
        self.names = [n if names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(names)]

    def __call__(self, prompts: list[Any], completions: list[str], columns: dict[str, list[Any]]) -> RewardOutput:
        start = time.perf_counter()
        n = len(completions)
        per_function: dict[str, list[float]] = {}
        failures: dict[str, int] = {}
        for fn, name in zip(self.funcs, self.names):
            try:
                scores = fn(prompts, completions, **columns)
            except Exception as exc:  # noqa: BLE001 - the user's code; outcome defined below
                if self.on_error == "raise":
                    raise RewardError(f"reward function {name!r} raised {type(exc).__name__}: {exc}") from exc
                logger.warning("reward function %r raised %s: %s; scoring this batch 0", name, type(exc).__name__, exc)
                failures[name] = failures.get(name, 0) + 1
                scores = [0.0] * n
            per_function[name] = self._check(name, scores, n)
        total = []
        for i in range(n):
            parts = [
                w * per_function[name][i]
                for name, w in zip(self.names, self.weights)
                if not math.isnan(per_function[name][i])
            ]
            total.append(sum(parts) if parts else float("nan"))
        return RewardOutput(total, per_function, failures, time.perf_counter() - start)

    @staticmethod
    def _check(name: str, scores: Any, n: int) -> list[float]:
        try:
            scores = list(scores)
        except TypeError:
            raise RewardError(
                f"reward function {name!r} returned {type(scores).__name__}, expected a list of {n} floats"
            ) from None
        if len(scores) != n:
            raise RewardError(f"reward function {name!r} returned {len(scores)} scores for {n} completions")
        out = []
        for i, s in enumerate(scores):
            if s is None:
                out.append(float("nan"))
                continue
            try:
                value = float(s)
            except (TypeError, ValueError):
                raise RewardError(f"reward function {name!r} returned a non-numeric score {s!r} at index {i}") from None
            out.append(value if math.isfinite(value) else float("nan"))
        return out
