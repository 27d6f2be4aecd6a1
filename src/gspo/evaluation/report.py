"""Evaluation reports: a per-task Markdown table, a JSON document, and a two-model comparison.

The Markdown table has one row per task::

    | task | n | accuracy | pass@1 | pass@8 | seconds |

(the last pass@ column names k when every task used the same number of samples, else it reads
``pass@k`` and each cell says its k). ``-`` marks pass@k of single-sample evaluations. The JSON
document (``eval.json``) holds the same numbers, the settings, and every row's scores and completions.

A suite evaluation (``suite=``, a :class:`gspo.evaluation.suite.SuiteReport`) adds a category table
after each model's task table (one row per category, then the overall mean), a side-by-side category
table after the comparison, and to ``eval.json``: ``"suite"``, ``"categories": {name: accuracy}``,
``"overall": accuracy``, a ``"category"`` in every task, the comparison model's ``categories`` and
``overall`` under ``"compare"``, and ``"difference"`` (B - A).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gspo.evaluation.evaluate import EvalResult
from gspo.evaluation.suite import SuiteReport, category_comparison_table, category_table

JSON_NAME, MARKDOWN_NAME = "eval.json", "eval.md"


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{x:+.3f}"


def _pass_k_header(results: Sequence[EvalResult]) -> tuple[str, bool]:
    ks = {r.samples for r in results if r.samples > 1}
    return (f"pass@{ks.pop()}", False) if len(ks) == 1 else ("pass@k", True)


def _pass_k_cell(r: EvalResult, per_cell_k: bool) -> str:
    if r.samples <= 1:
        return "-"
    value = _num(r.pass_at_k.get(r.samples))
    return f"{value} (k={r.samples})" if per_cell_k else value


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_table(results: Sequence[EvalResult]) -> str:
    """``| task | n | accuracy | pass@1 | pass@k | seconds |``, one row per result."""
    pk_header, per_cell_k = _pass_k_header(results)
    rows = [
        [r.task, str(r.n), _num(r.accuracy), _num(r.pass_at_k.get(1)), _pass_k_cell(r, per_cell_k), f"{r.seconds:.1f}"]
        for r in results
    ]
    return _table(["task", "n", "accuracy", "pass@1", pk_header, "seconds"], rows)


def comparison_table(
    results_a: Sequence[EvalResult], results_b: Sequence[EvalResult], *, name_a: str = "A", name_b: str = "B"
) -> str:
    """Side by side, per task present in both: accuracy and pass@k of each model and B - A."""
    by_task_b = {r.task: r for r in results_b}
    pairs = [(a, by_task_b[a.task]) for a in results_a if a.task in by_task_b]
    pk_header, _ = _pass_k_header([r for pair in pairs for r in pair])
    header = [
        "task",
        "n",
        f"accuracy ({name_a})",
        f"accuracy ({name_b})",
        "Δ accuracy",
        f"{pk_header} ({name_a})",
        f"{pk_header} ({name_b})",
        f"Δ {pk_header}",
    ]
    rows = []
    for a, b in pairs:
        pa = a.pass_at_k.get(a.samples) if a.samples > 1 else None
        pb = b.pass_at_k.get(b.samples) if b.samples > 1 else None
        rows.append(
            [
                a.task,
                str(a.n) if a.n == b.n else f"{a.n}/{b.n}",
                _num(a.accuracy),
                _num(b.accuracy),
                _signed(b.accuracy - a.accuracy),
                _num(pa),
                _num(pb),
                _signed(pb - pa) if pa is not None and pb is not None else "-",
            ]
        )
    return _table(header, rows)


def report_json(
    results: Sequence[EvalResult],
    *,
    model: str,
    settings: dict[str, Any] | None = None,
    compare: Sequence[EvalResult] | None = None,
    compare_model: str | None = None,
    include_rows: bool = True,
    suite: SuiteReport | None = None,
) -> dict[str, Any]:
    """The ``eval.json`` document: ``{"model", "settings", "tasks": {name: ...}, ["compare": {...}]}``,
    plus the suite's fields (see the module docstring)."""
    doc: dict[str, Any] = {
        "model": model,
        "settings": dict(settings or {}),
        "tasks": _tasks_json(results, include_rows, suite),
    }
    if compare is not None:
        doc["compare"] = {"model": compare_model, "tasks": _tasks_json(compare, include_rows, suite)}
        if suite is not None and suite.compare is not None:
            doc["compare"].update(suite.compare.to_dict())
    if suite is not None:
        doc.update(suite.json_fields())
    return doc


def _tasks_json(results: Sequence[EvalResult], include_rows: bool, suite: SuiteReport | None) -> dict[str, Any]:
    tasks = {r.task: r.to_dict(include_rows=include_rows) for r in results}
    if suite is not None:
        for name, task in tasks.items():
            task["category"] = suite.category_of.get(name)
    return tasks


def results_from_json(doc: dict[str, Any]) -> list[EvalResult]:
    """The results of an ``eval.json`` document (its main model), e.g. to compare two saved runs."""
    return [EvalResult.from_dict(d) for d in doc["tasks"].values()]


def report_markdown(
    results: Sequence[EvalResult],
    *,
    model: str,
    compare: Sequence[EvalResult] | None = None,
    compare_model: str | None = None,
    suite: SuiteReport | None = None,
) -> str:
    """The ``eval.md`` text: a title, the table (and categories), and the comparison when there is one."""
    parts = [f"# Evaluation of `{model}`", "", markdown_table(results)]
    if suite is not None:
        parts += ["", category_table(suite.scores, suite.category_of)]
    if compare is not None:
        parts += ["", f"# Evaluation of `{compare_model}`", "", markdown_table(compare)]
        if suite is not None and suite.compare is not None:
            parts += ["", category_table(suite.compare, suite.category_of)]
        parts += [
            "",
            f"# Comparison: A = `{model}`, B = `{compare_model}`",
            "",
            comparison_table(results, compare, name_a="A", name_b="B"),
        ]
        if suite is not None and suite.compare is not None:
            parts += ["", category_comparison_table(suite.scores, suite.compare, name_a="A", name_b="B")]
    return "\n".join(parts) + "\n"


def write_report(
    output_dir: str | Path,
    results: Sequence[EvalResult],
    *,
    model: str,
    settings: dict[str, Any] | None = None,
    compare: Sequence[EvalResult] | None = None,
    compare_model: str | None = None,
    suite: SuiteReport | None = None,
) -> tuple[Path, Path]:
    """Write ``eval.json`` and ``eval.md`` into ``output_dir`` (created); return their paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / JSON_NAME, out / MARKDOWN_NAME
    doc = report_json(
        results, model=model, settings=settings, compare=compare, compare_model=compare_model, suite=suite
    )
    json_path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(
        report_markdown(results, model=model, compare=compare, compare_model=compare_model, suite=suite),
        encoding="utf-8",
    )
    return json_path, md_path


__all__ = [
    "JSON_NAME",
    "MARKDOWN_NAME",
    "comparison_table",
    "markdown_table",
    "report_json",
    "report_markdown",
    "results_from_json",
    "write_report",
]
