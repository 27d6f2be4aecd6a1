"""The task contract: a dataset, its prompt format, and the scorer that is also its reward.

A task turns source data into *rows*: plain dicts with a ``prompt`` (a string, or a chat message
list ``[{"role": ..., "content": ...}]`` when ``chat=True``) plus whatever columns its scorer needs
(``answer``, ``tests``, ``choices`` ...) and an ``id``. Rows are what the trainer consumes and what
reward functions receive as ``**columns`` (TRL's convention: one list per column, aligned with the
completions).

Like nanochat's ``tasks/``, a task's reward *is* its evaluation: ``reward`` calls ``score`` on every
completion, so a model is trained on exactly the metric it is later judged by.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Sequence


class DataError(ValueError):
    """Malformed input data; the message names the file (and line) at fault."""


class Task(abc.ABC):
    """Base class of every task. Subclasses set ``name`` and implement ``load`` and ``score``."""

    name: ClassVar[str]
    #: The splits ``load`` accepts, e.g. ("train", "test").
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    #: Default number of new tokens a completion needs for this task.
    max_new_tokens: ClassVar[int] = 256

    @abc.abstractmethod
    def load(
        self,
        split: str,
        *,
        path: str | None = None,
        limit: int | None = None,
        chat: bool = False,
    ) -> list[dict[str, Any]]:
        """Return rows for ``split``. ``path`` overrides the default source; ``limit`` keeps the first N."""

    @abc.abstractmethod
    def score(self, completion: str, row: dict[str, Any]) -> float:
        """Score one completion for one row, in [0, 1]. Never raises on garbage completions."""

    def reward(self, prompts: Sequence[Any], completions: Sequence[str], **columns: Sequence[Any]) -> list[float | None]:
        """TRL-compatible reward function: ``f(prompts, completions, **columns) -> list[float]``."""
        rows = [{k: v[i] for k, v in columns.items()} for i in range(len(completions))]
        for row, prompt in zip(rows, prompts):
            row.setdefault("prompt", prompt)
        return self.score_batch(list(completions), rows)

    def score_batch(self, completions: list[str], rows: list[dict[str, Any]]) -> list[float]:
        """Score many completions; tasks with expensive scorers (code) override this to run in parallel."""
        return [float(self.score(c, r)) for c, r in zip(completions, rows)]

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"task {self.name!r}: split must be one of {list(self.splits)}, got {split!r}")
