"""Experiments built on the trainers: matched comparisons of GSPO, GSPO-token, GRPO and SFT.

- :func:`gspo.experiments.compare.run_comparison`: run every (algorithm, seed) pair with the same data
  order, seeds and sampling budget, then write ``report.json``, ``report.md`` and PNG curves
  (what ``gspo compare`` does);
- :func:`gspo.experiments.compare.collapse_stats`: the collapse criterion used in the report.
"""

from gspo.experiments.compare import COMPARE_ALGORITHMS, collapse_stats, parse_algos, parse_seeds, run_comparison

__all__ = ["COMPARE_ALGORITHMS", "collapse_stats", "parse_algos", "parse_seeds", "run_comparison"]
