"""``gspo eval``: accuracy and unbiased pass@k per task, with the training sampler and the task's scorer.

- :func:`evaluate_task` -> :class:`EvalResult` (per-row scores and completions, timing, tokens);
- :func:`pass_at_k`: the unbiased estimator of Chen et al. (2021);
- :mod:`gspo.evaluation.report`: Markdown / JSON reports and a two-model comparison;
- :mod:`gspo.evaluation.suite`: suites of tasks with categories (``gspo eval --suite core``), category
  means and the overall mean.
"""

from gspo.evaluation.evaluate import EvalResult, evaluate_task, pass_at_k
from gspo.evaluation.report import (
    comparison_table,
    markdown_table,
    report_json,
    report_markdown,
    results_from_json,
    write_report,
)
from gspo.evaluation.suite import (
    Suite,
    SuiteError,
    SuiteReport,
    SuiteScores,
    SuiteTask,
    get_suite,
    load_suites,
    suite_scores,
)

__all__ = [
    "EvalResult",
    "Suite",
    "SuiteError",
    "SuiteReport",
    "SuiteScores",
    "SuiteTask",
    "comparison_table",
    "evaluate_task",
    "get_suite",
    "load_suites",
    "markdown_table",
    "pass_at_k",
    "report_json",
    "report_markdown",
    "results_from_json",
    "suite_scores",
    "write_report",
]
