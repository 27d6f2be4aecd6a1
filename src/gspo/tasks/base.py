"""The task contract: a dataset, its prompt format, and the scorer that is also its reward.

A task turns source data into *rows*: plain dicts with a ``prompt`` (a string, or a chat message
list ``[{"role": ..., "content": ...}]`` when ``chat=True``) plus whatever columns its scorer needs
(``answer``, ``tests``, ``choices`` ...) and an ``id``. Rows are what the trainer consumes and what
reward functions receive as ``**columns`` (TRL's convention: one list per column, aligned with the
completions).

``Task.load`` is a template: it checks the split, reads the records from ``path=`` (a JSONL file or
a folder of ``<split>.jsonl``, checked against ``columns``) or from the task's default source
(``default_records``; a ``procedural`` task generates them and refuses a path), turns each record
into a row (``make_row``) and stops at ``limit``. A task supplies its records and its row format.

Like nanochat's ``tasks/``, a task's reward *is* its evaluation: ``reward`` calls ``score`` on every
completion, so a model is trained on exactly the metric it is later judged by.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from gspo.tasks.io import DataError, apply_limit, read_jsonl, resolve_split_file

Record = tuple[str, dict[str, Any]]  # ("file:line" or another origin, the raw record)
Rows = list[dict[str, Any]]

__all__ = ["DataError", "Record", "RowContext", "Rows", "Task"]


@dataclass(frozen=True)
class RowContext:
    """Where a record comes from, for ``make_row``: its origin (for errors), split, index, prompt style."""

    where: str
    split: str
    index: int
    chat: bool


class Task(abc.ABC):
    """Base class of every task. Subclasses set ``name`` and implement ``make_row`` and ``score``
    (and ``default_records`` when they have a default source), or override ``load`` altogether."""

    name: ClassVar[str]
    #: The splits ``load`` accepts, e.g. ("train", "test").
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    #: Default number of new tokens a completion needs for this task.
    max_new_tokens: ClassVar[int] = 256
    #: Columns (name -> type) every record of a ``path=`` file must have.
    columns: ClassVar[dict[str, Any]] = {}
    #: The task generates its data: ``path=`` is refused.
    procedural: ClassVar[bool] = False

    def load(self, split: str, *, path: str | None = None, limit: int | None = None, chat: bool = False) -> Rows:
        """Return rows for ``split``. ``path`` overrides the default source; ``limit`` keeps the first N."""
        if self.procedural and path is not None:
            raise ValueError(f"task {self.name!r} is procedural and takes no data path")
        self.check_split(split)
        rows = []
        for index, (where, record) in enumerate(self.records(split, path, limit)):
            rows.append(self.make_row(record, RowContext(where, split, index, chat)))
            if limit is not None and len(rows) >= limit:
                break
        return apply_limit(rows, limit)

    def records(self, split: str, path: str | None, limit: int | None) -> Iterable[Record]:
        """The raw records of ``split``: from ``path`` when given, else ``default_records``."""
        if path is not None:
            return read_jsonl(resolve_split_file(path, split, self.name), self.columns)
        return self.default_records(split, limit)

    def default_records(self, split: str, limit: int | None) -> Iterable[Record]:
        """The records of the task's own source (reading may stop after ``limit``)."""
        raise FileNotFoundError(f"task {self.name!r}: no default data source; pass path= to a JSONL file")

    def make_row(self, record: dict[str, Any], at: RowContext) -> dict[str, Any]:
        """One row from one record (raise ``DataError`` naming ``at.where`` for a bad record)."""
        raise NotImplementedError(f"task {self.name!r} implements neither make_row nor load")

    @abc.abstractmethod
    def score(self, completion: str, row: dict[str, Any]) -> float:
        """Score one completion for one row, in [0, 1]. Never raises on garbage completions."""

    def reward(
        self, prompts: Sequence[Any], completions: Sequence[str], **columns: Sequence[Any]
    ) -> list[float | None]:
        """TRL-compatible reward function: ``f(prompts, completions, **columns) -> list[float]``."""
        rows = [{k: v[i] for k, v in columns.items()} for i in range(len(completions))]
        for row, prompt in zip(rows, prompts):
            row.setdefault("prompt", prompt)
        return list(self.score_batch(list(completions), rows))

    def score_batch(self, completions: list[str], rows: list[dict[str, Any]]) -> list[float]:
        """Score many completions; tasks with expensive scorers (code) override this to run in parallel."""
        return [float(self.score(c, r)) for c, r in zip(completions, rows)]

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"task {self.name!r}: split must be one of {list(self.splits)}, got {split!r}")
