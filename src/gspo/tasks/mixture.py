"""Dataset mixtures: train on several tasks at once, each row scored by its own task.

A *dataset spec* names tasks with weights: ``"gsm8k:0.5,math:0.3,mbpp:0.2"``. Each comma-separated
part is ``name[@path][:weight]``: a registered task name (:data:`gspo.tasks.TASK_REGISTRY`), an optional
data path for that task (``gsm8k@/data/gsm8k:0.7``), and a positive weight (default 1). Weights are
normalised to sum to 1. :func:`parse_dataset_spec` raises ``ValueError`` naming the bad part (an empty
part, an unknown task, a weight that is not a positive finite number, a task named twice).

:class:`MixtureTask` loads every component's split, tags each row with ``"task": <name>``, and draws
rows with the weights: for ``limit=N`` rows, task *i* gets ``round(w_i * N)`` of them (largest
remainders; a task with fewer rows than its share is cycled through again in a new order), and the result
is shuffled; everything is seeded (``seed=``), so the same spec, split and seed give the same rows.
Without ``limit``, N is the largest size that needs no repeats (``min_i len_i / w_i``). ``score`` and
``score_batch`` dispatch on the row's ``task``, so every row is scored (and rewarded) by its own task;
``score_batch`` batches rows per task (code tasks run their sandbox jobs in parallel).
``max_new_tokens`` is the largest of the components'.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from gspo.tasks.base import DataError, Rows, Task


@dataclass(frozen=True)
class DatasetSpecEntry:
    """One part of a dataset spec: task name, normalised weight, optional data path."""

    name: str
    weight: float
    path: str | None = None


def parse_dataset_spec(spec: str, *, known_tasks: Sequence[str] | None = None) -> list[DatasetSpecEntry]:
    """Parse ``"name[@path][:weight],..."`` into entries with weights normalised to sum to 1.

    ``known_tasks`` (default: the task registry) are the valid names.
    """
    if known_tasks is None:
        from gspo.tasks import TASK_REGISTRY

        known_tasks = list(TASK_REGISTRY)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"dataset spec must be a non-empty string like 'gsm8k:0.5,mbpp:0.5', got {spec!r}")
    raw: list[tuple[str, float, str | None]] = []
    for part in spec.split(","):
        part_text = part.strip()
        if not part_text:
            raise ValueError(f"dataset spec {spec!r}: empty part (stray comma?)")
        body, weight_text = part_text, None
        if ":" in part_text:
            body, _, weight_text = part_text.rpartition(":")
            body, weight_text = body.strip(), weight_text.strip()
        name, _, path = body.partition("@")
        name = name.strip()
        path = path.strip() or None  # type: ignore[assignment]
        if "@" in body and path is None:
            raise ValueError(f"dataset spec {spec!r}: part {part_text!r} has an empty path after '@'")
        if not name:
            raise ValueError(f"dataset spec {spec!r}: part {part_text!r} has no task name")
        if name not in known_tasks:
            raise ValueError(
                f"dataset spec {spec!r}: unknown task {name!r} in part {part_text!r}; valid tasks: {sorted(known_tasks)}"
            )
        weight = 1.0
        if weight_text is not None:
            try:
                weight = float(weight_text)
            except ValueError:
                raise ValueError(
                    f"dataset spec {spec!r}: weight {weight_text!r} of part {part_text!r} is not a number"
                ) from None
            if not math.isfinite(weight) or weight <= 0:
                raise ValueError(
                    f"dataset spec {spec!r}: weight {weight_text!r} of part {part_text!r} must be a positive finite number"
                )
        if any(name == other for other, _, _ in raw):
            raise ValueError(f"dataset spec {spec!r}: task {name!r} is named twice (part {part_text!r})")
        raw.append((name, weight, path))
    total = sum(w for _, w, _ in raw)
    return [DatasetSpecEntry(name, weight / total, path) for name, weight, path in raw]


def allocate(weights: Sequence[float], total: int) -> list[int]:
    """Split ``total`` into integer counts proportional to ``weights`` (largest remainders; sums to total)."""
    exact = [w * total for w in weights]
    counts = [int(math.floor(x)) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def sample_mixture(
    rows_by_task: dict[str, list[dict[str, Any]]],
    weights: dict[str, float],
    *,
    total: int | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Draw ``total`` rows from the tasks with the weights, tag each with ``task``, and shuffle (seeded)."""
    names = [n for n in rows_by_task if weights.get(n, 0) > 0]
    for name in names:
        if not rows_by_task[name]:
            raise DataError(f"mixture: task {name!r} has no rows")
    if total is None:
        total = int(min(len(rows_by_task[n]) / weights[n] for n in names)) if names else 0
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for name, count in zip(names, allocate([weights[n] for n in names], total)):
        pool = rows_by_task[name]
        drawn: list[dict[str, Any]] = []
        while len(drawn) < count:  # cycle through the task's rows, each pass in a new order
            order = list(range(len(pool)))
            rng.shuffle(order)
            drawn += [pool[i] for i in order[: count - len(drawn)]]
        out += [dict(row, task=name) for row in drawn]
    rng.shuffle(out)
    return out


class MixtureTask(Task):
    """A weighted mixture of registered tasks; each row carries ``task`` and is scored by that task."""

    name: ClassVar[str] = "mixture"
    splits: ClassVar[tuple[str, ...]] = ("train", "validation", "test")

    def __init__(
        self,
        spec: str | Sequence[DatasetSpecEntry] = "",
        *,
        seed: int = 0,
        task_options: dict[str, dict[str, Any]] | None = None,
        tasks: dict[str, Task] | None = None,
        split_overrides: dict[str, str] | None = None,
    ) -> None:
        """``spec``: a dataset spec string or parsed entries. ``tasks``: ready task objects by name
        (else they are built with :func:`gspo.tasks.get_task` and ``task_options[name]``).
        ``split_overrides``: the split to load for some components whatever split is asked for, e.g.
        ``{"humaneval": "test"}`` (HumanEval has no train split)."""
        from gspo.tasks import get_task

        if isinstance(spec, str):
            known = None if tasks is None else sorted(set(tasks) | set(_registry_names()))
            self.entries = parse_dataset_spec(spec, known_tasks=known)
        else:
            self.entries = list(spec)
            if not self.entries:
                raise ValueError("mixture: no tasks given")
        self.seed = seed
        self.split_overrides = dict(split_overrides or {})
        options = task_options or {}
        self.tasks: dict[str, Task] = {}
        for entry in self.entries:
            if tasks is not None and entry.name in tasks:
                self.tasks[entry.name] = tasks[entry.name]
            else:
                self.tasks[entry.name] = get_task(entry.name, **options.get(entry.name, {}))
        self.max_new_tokens = max(t.max_new_tokens for t in self.tasks.values())  # type: ignore[misc]

    @property
    def weights(self) -> dict[str, float]:
        return {e.name: e.weight for e in self.entries}

    def load(self, split: str, *, path: str | None = None, limit: int | None = None, chat: bool = False) -> Rows:
        """``limit`` mixed rows of ``split`` (see the module docstring). ``path`` must be None: give
        per-task paths in the spec (``name@path:weight``)."""
        self.check_split(split)
        if path is not None:
            raise ValueError(
                "task 'mixture': give data paths per task in the spec ('gsm8k@/data/gsm8k:0.5'), not path="
            )
        rows_by_task = {}
        for entry in self.entries:
            task = self.tasks[entry.name]
            task_split = self.split_overrides.get(entry.name, split)
            if task_split not in task.splits:
                raise ValueError(
                    f"task 'mixture': component {entry.name!r} has no split {task_split!r} (it has {list(task.splits)}); "
                    "pick another split with split_overrides"
                )
            rows_by_task[entry.name] = task.load(task_split, path=entry.path, chat=chat)
        total = None if limit is None else max(0, int(limit))
        return sample_mixture(rows_by_task, self.weights, total=total, seed=self.seed)

    def _task_of(self, row: dict[str, Any]) -> Task:
        name = row.get("task")
        if name not in self.tasks:
            raise ValueError(f"task 'mixture': row has task {name!r}, not one of {sorted(self.tasks)}")
        return self.tasks[name]

    def score(self, completion: str, row: dict[str, Any]) -> float:
        """The score of the row's own task."""
        return float(self._task_of(row).score(completion, row))

    def score_batch(self, completions: list[str], rows: list[dict[str, Any]]) -> list[float]:
        """Scores in input order; rows are grouped by task so each task scores its rows in one batch."""
        groups: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            self._task_of(row)
            groups.setdefault(row["task"], []).append(i)
        out = [0.0] * len(rows)
        for name, indices in groups.items():
            values = self.tasks[name].score_batch([completions[i] for i in indices], [rows[i] for i in indices])
            for i, value in zip(indices, values):
                out[i] = float(value)
        return out


def _registry_names() -> list[str]:
    from gspo.tasks import TASK_REGISTRY

    return list(TASK_REGISTRY)


__all__ = ["DatasetSpecEntry", "MixtureTask", "allocate", "parse_dataset_spec", "sample_mixture"]
