"""Statistics over runs, shared by the comparison (:mod:`gspo.experiments.compare`) and its report
(:mod:`gspo.experiments.report`): descriptive statistics, curve bands, the collapse criterion."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: A run "collapsed" when its smoothed reward fell this far below its own peak.
DEFAULT_COLLAPSE_DROP = 0.2


def collapse_stats(rewards: Sequence[float], window: int, drop: float = DEFAULT_COLLAPSE_DROP) -> dict[str, Any]:
    """The collapse criterion (module docstring) on one run's per-step rewards."""
    values = [float(r) for r in rewards if r is not None and math.isfinite(r)]
    if not values:
        return {"window": window, "peak": None, "final": None, "drop": None, "collapsed": False}
    w = max(1, min(window, len(values)))
    smooth = [sum(values[t - w + 1 : t + 1]) / w for t in range(w - 1, len(values))]
    peak, final = max(smooth), smooth[-1]
    return {"window": w, "peak": peak, "final": final, "drop": peak - final, "collapsed": peak - final > drop}


def describe(values: Sequence[float | None]) -> dict[str, Any]:
    """``{n, mean, std (n-1), min, max, values}`` of the non-missing values (None fields when empty)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None, "values": []}
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return {"n": len(vals), "mean": mean, "std": std, "min": min(vals), "max": max(vals), "values": vals}


def band(curves: Sequence[dict[str, list]]) -> dict[str, list]:
    """Mean, std, min and max over runs at every step that all runs logged."""
    if not curves:
        return {"steps": [], "mean": [], "std": [], "min": [], "max": []}
    common = set(curves[0]["steps"]).intersection(*(set(c["steps"]) for c in curves[1:]))
    lookup = [dict(zip(c["steps"], c["values"])) for c in curves]
    out: dict[str, list] = {"steps": sorted(common), "mean": [], "std": [], "min": [], "max": []}
    for step in out["steps"]:
        d = describe([m[step] for m in lookup])
        for key in ("mean", "std", "min", "max"):
            out[key].append(d[key])
    return out


def mean_or_none(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
