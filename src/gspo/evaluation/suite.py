"""Evaluation suites: named sets of tasks, each with a category, and their per-category means.

``gspo eval --suite NAME`` evaluates every task of a suite and reports one row per task, the mean
accuracy of each category and an overall mean. Suites live in a YAML file; the package ships
``gspo/assets/eval_suites.yaml`` (suite ``core``) and ``--suite-file`` reads another one::

    core:                               # the suite's name
      description: one line about it    # optional
      tasks:
        - name: gsm8k                   # the row's label, unique in the suite (also the task, by default)
          category: math                # one of CATEGORIES
          limit: 40                     # first N rows of the split (optional; --limit caps it further)
        - name: basic_arithmetic
          task: reasoning_gym           # the registered task, when the label differs
          category: reasoning
          split: test                   # default: test
          max_new_tokens: 32            # default: the task's own
          data_path: null               # default: the task's own source
          options: {dataset: basic_arithmetic, max_terms: 3}   # the task's options

:func:`load_suites` checks everything that can be checked without a model or data: the file's
shape, unknown keys, the category, limits, that each task is registered, accepts its options and
has the split. Every error is a :class:`SuiteError` naming the file, the suite and the task.

:func:`suite_scores` turns per-task accuracies into category means and the overall mean. A category's
accuracy is the unweighted mean of its tasks' accuracies; ``overall`` is the unweighted mean of all
task accuracies (every task counts once, whatever its number of rows).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The categories a suite task may belong to.
CATEGORIES = ("math", "code", "reasoning")
#: The suites file shipped with the package.
SUITES_FILE = Path(__file__).resolve().parents[1] / "assets" / "eval_suites.yaml"
SUITE_KEYS = ("description", "tasks")
TASK_KEYS = ("name", "task", "category", "limit", "split", "max_new_tokens", "data_path", "options")


class SuiteError(ValueError):
    """A bad suite file or suite; the message names the file, the suite and the task at fault."""


@dataclass(frozen=True)
class SuiteTask:
    """One task of a suite: what to load, how to evaluate it, and its category."""

    name: str
    task: str
    category: str
    limit: int | None = None
    split: str = "test"
    max_new_tokens: int | None = None
    data_path: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def capped_limit(self, cap: int | None) -> int | None:
        """The row limit once ``--limit cap`` applies (the smaller of the two; None is no limit)."""
        limits = [x for x in (self.limit, cap) if x is not None]
        return min(limits) if limits else None


@dataclass(frozen=True)
class Suite:
    """A named list of tasks."""

    name: str
    tasks: tuple[SuiteTask, ...]
    description: str = ""
    source: str = ""

    @property
    def category_of(self) -> dict[str, str]:
        """Task label -> category."""
        return {t.name: t.category for t in self.tasks}


@dataclass(frozen=True)
class SuiteScores:
    """Per-task accuracies and what they average to."""

    tasks: dict[str, float]
    categories: dict[str, float]
    overall: float

    def to_dict(self) -> dict[str, Any]:
        return {"categories": dict(self.categories), "overall": self.overall}


def suite_scores(accuracies: Mapping[str, float], category_of: Mapping[str, str]) -> SuiteScores:
    """Category means (in :data:`CATEGORIES` order, then others) and the overall mean of the tasks."""
    missing = [t for t in accuracies if t not in category_of]
    if missing:
        raise ValueError(f"tasks without a category: {missing}")
    if not accuracies:
        raise ValueError("no task results to average")
    present = {category_of[t] for t in accuracies}
    order = [c for c in CATEGORIES if c in present] + sorted(present - set(CATEGORIES))
    categories = {
        c: math.fsum(a for t, a in accuracies.items() if category_of[t] == c)
        / sum(1 for t in accuracies if category_of[t] == c)
        for c in order
    }
    overall = math.fsum(accuracies.values()) / len(accuracies)
    return SuiteScores(tasks=dict(accuracies), categories=categories, overall=overall)


# ---------------------------------------------------------------------------------- loading
def _fail(source: str, where: str, message: str) -> SuiteError:
    return SuiteError(f"{source}: {where}: {message}")


def _optional_int(value: Any, source: str, where: str, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(source, where, f"{key!r} must be an integer >= 1, got {value!r}")
    return value


def _optional_str(value: Any, source: str, where: str, key: str, default: str | None) -> str | None:
    if value is None:
        return default
    if not isinstance(value, str) or not value.strip():
        raise _fail(source, where, f"{key!r} must be a non-empty string, got {value!r}")
    return value


def parse_task(data: Any, *, source: str, suite: str, index: int) -> SuiteTask:
    """One task entry of a suite, with its types and keys checked (not yet against the registry)."""
    where = f"suite {suite!r}, task {index + 1}"
    if not isinstance(data, dict):
        raise _fail(source, where, f"must be a mapping with keys {list(TASK_KEYS)}, got {data!r}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(source, where, f"needs a 'name' (a non-empty string), got {name!r}")
    where = f"suite {suite!r}, task {name!r}"
    unknown = sorted(str(k) for k in data if k not in TASK_KEYS)
    if unknown:
        raise _fail(source, where, f"unknown key(s) {unknown}; valid keys: {list(TASK_KEYS)}")
    category = data.get("category")
    if category not in CATEGORIES:
        raise _fail(source, where, f"'category' must be one of {list(CATEGORIES)}, got {category!r}")
    options = data.get("options") or {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise _fail(source, where, f"'options' must be a mapping of option names to values, got {options!r}")
    return SuiteTask(
        name=name,
        task=_optional_str(data.get("task"), source, where, "task", name) or name,
        category=category,
        limit=_optional_int(data.get("limit"), source, where, "limit"),
        split=_optional_str(data.get("split"), source, where, "split", "test") or "test",
        max_new_tokens=_optional_int(data.get("max_new_tokens"), source, where, "max_new_tokens"),
        data_path=_optional_str(data.get("data_path"), source, where, "data_path", None),
        options=dict(options),
    )


def parse_suite(name: str, data: Any, *, source: str) -> Suite:
    """One suite of a suites file, its tasks parsed (label uniqueness included)."""
    where = f"suite {name!r}"
    if not isinstance(data, dict):
        raise _fail(source, where, f"must be a mapping with keys {list(SUITE_KEYS)}, got {data!r}")
    unknown = sorted(str(k) for k in data if k not in SUITE_KEYS)
    if unknown:
        raise _fail(source, where, f"unknown key(s) {unknown}; valid keys: {list(SUITE_KEYS)}")
    entries = data.get("tasks")
    if not isinstance(entries, list) or not entries:
        raise _fail(source, where, f"'tasks' must be a non-empty list, got {entries!r}")
    tasks = tuple(parse_task(e, source=source, suite=name, index=i) for i, e in enumerate(entries))
    seen: set[str] = set()
    for task in tasks:
        if task.name in seen:
            raise _fail(source, where, f"task name {task.name!r} appears twice; give each row its own 'name'")
        seen.add(task.name)
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise _fail(source, where, f"'description' must be a string, got {description!r}")
    return Suite(name=name, tasks=tasks, description=" ".join(description.split()), source=source)


def load_suites(path: str | Path | None = None) -> dict[str, Suite]:
    """Every suite of a suites file (default: the shipped one), parsed and checked (see the module docstring)."""
    import yaml

    path = Path(path) if path is not None else SUITES_FILE
    source = str(path)
    if not path.is_file():
        raise SuiteError(f"{source}: suites file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise SuiteError(f"{source}: not a readable YAML file ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise SuiteError(f"{source}: must map suite names to suites, got {type(data).__name__}")
    suites = {}
    for name, body in data.items():
        if not isinstance(name, str):
            raise SuiteError(f"{source}: suite names must be strings, got {name!r}")
        suites[name] = parse_suite(name, body, source=source)
    for suite in suites.values():
        build_tasks(suite)
    return suites


def get_suite(name: str, path: str | Path | None = None) -> Suite:
    """The suite ``name`` of a suites file; an unknown name lists the file's suites."""
    suites = load_suites(path)
    if name not in suites:
        raise SuiteError(f"{path or SUITES_FILE}: no suite {name!r}; suites: {sorted(suites)}")
    return suites[name]


def build_tasks(suite: Suite) -> list[Any]:
    """The task object of every suite task, built with its options and checked to have its split."""
    from gspo.tasks import TASK_REGISTRY, get_task

    out = []
    for entry in suite.tasks:
        where = f"{suite.source}: suite {suite.name!r}, task {entry.name!r}"
        if entry.task not in TASK_REGISTRY:
            raise SuiteError(f"{where}: unknown task {entry.task!r}; valid tasks: {sorted(TASK_REGISTRY)}")
        try:
            task = get_task(entry.task, **entry.options)
        except (ValueError, TypeError) as exc:
            raise SuiteError(f"{where}: {exc}") from None
        if entry.split not in task.splits:
            raise SuiteError(f"{where}: task {entry.task!r} has no split {entry.split!r} (it has {list(task.splits)})")
        out.append(task)
    return out


def category_table(scores: SuiteScores, category_of: Mapping[str, str]) -> str:
    """``| category | tasks | accuracy |``, one row per category, then the overall mean."""
    lines = ["| category | tasks | accuracy |", "|---|---|---:|"]
    for category, value in scores.categories.items():
        names = [t for t in scores.tasks if category_of[t] == category]
        lines.append(f"| {category} | {', '.join(names)} | {value:.3f} |")
    lines.append(f"| **overall** | mean of {len(scores.tasks)} tasks | **{scores.overall:.3f}** |")
    return "\n".join(lines)


def category_comparison_table(a: SuiteScores, b: SuiteScores, *, name_a: str = "A", name_b: str = "B") -> str:
    """Categories and the overall mean side by side, with B - A."""
    lines = [f"| category | accuracy ({name_a}) | accuracy ({name_b}) | Δ accuracy |", "|---|---:|---:|---:|"]
    for category in a.categories:
        if category in b.categories:
            x, y = a.categories[category], b.categories[category]
            lines.append(f"| {category} | {x:.3f} | {y:.3f} | {y - x:+.3f} |")
    lines.append(f"| **overall** | {a.overall:.3f} | {b.overall:.3f} | **{b.overall - a.overall:+.3f}** |")
    return "\n".join(lines)


@dataclass(frozen=True)
class SuiteReport:
    """What a suite adds to an evaluation report: the categories and means of one or two models."""

    suite: str
    category_of: dict[str, str]
    scores: SuiteScores
    compare: SuiteScores | None = None

    @classmethod
    def from_results(
        cls, suite: str, category_of: Mapping[str, str], results: Sequence[Any], compare: Sequence[Any] | None = None
    ) -> SuiteReport:
        """From evaluation results (anything with ``task`` and ``accuracy``) of one or two models."""

        def scores(rs: Sequence[Any]) -> SuiteScores:
            return suite_scores({r.task: r.accuracy for r in rs}, category_of)

        return cls(suite, dict(category_of), scores(results), None if compare is None else scores(compare))

    def json_fields(self) -> dict[str, Any]:
        """``suite``, ``categories``, ``overall`` and, with a comparison, ``difference`` (B - A)."""
        doc: dict[str, Any] = {"suite": self.suite, **self.scores.to_dict()}
        if self.compare is not None:
            doc["difference"] = {
                "categories": {
                    c: self.compare.categories[c] - v
                    for c, v in self.scores.categories.items()
                    if c in self.compare.categories
                },
                "overall": self.compare.overall - self.scores.overall,
            }
        return doc


__all__ = [
    "CATEGORIES",
    "SUITES_FILE",
    "Suite",
    "SuiteError",
    "SuiteReport",
    "SuiteScores",
    "SuiteTask",
    "build_tasks",
    "category_comparison_table",
    "category_table",
    "get_suite",
    "load_suites",
    "parse_suite",
    "suite_scores",
]
