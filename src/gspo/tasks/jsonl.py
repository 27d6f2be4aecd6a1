"""``JSONLTask``: any JSONL file as a task.

``JSONLTask`` turns any JSONL file whose rows have a ``prompt`` (a string, or a chat message list)
plus the columns its reward needs into a task. ``reward=`` picks the scorer: a registered reward
name (``"math"``, ``"choice"``, ``"code"``, ...; see :mod:`gspo.rewards.registry`) or a dotted path
``"package.module:function"`` to any TRL-style ``f(prompts, completions, **columns)``. Every row is
passed to the reward with all its columns. A string prompt is wrapped into a user message when
``chat=True``; a message-list prompt is kept as it is when ``chat=True`` and rejected when
``chat=False``. Scores are the reward's values as they are (None counts as 0): a custom reward
outside [0, 1] is passed through unchanged, so keep custom rewards in [0, 1] where accuracy matters.
The file helpers it uses live in :mod:`gspo.tasks.io`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from gspo.tasks.base import DataError, RowContext, Task
from gspo.tasks.io import make_prompt, read_jsonl, resolve_split_file

# ----------------------------------------------------------------------------------------------
# JSONLTask


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_message_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
        )
    )


def _checked_prompt(record: dict[str, Any], at: RowContext) -> Any:
    """The record's prompt, as a chat message list when ``at.chat``; DataError for a bad one."""
    where = at.where
    if "prompt" not in record:
        raise DataError(f"{where}: missing column 'prompt' (row has {sorted(record)})")
    prompt = record["prompt"]
    texts = (
        [prompt]
        if isinstance(prompt, str)
        else [m.get("content") for m in prompt if isinstance(m, dict)]
        if isinstance(prompt, list)
        else []
    )
    if not all(_is_utf8(t) for t in texts if isinstance(t, str)):
        raise DataError(
            f"{where}: column 'prompt' is not valid Unicode text (it holds a lone surrogate such as \\ud800)"
        )
    if isinstance(prompt, str):
        if not prompt.strip():
            raise DataError(f"{where}: column 'prompt' is empty")
        return make_prompt(prompt, at.chat)
    if not _is_message_list(prompt):
        raise DataError(f"{where}: column 'prompt' must be a string or a list of {{role, content}} messages")
    if not at.chat:
        raise DataError(f"{where}: column 'prompt' is a chat message list; load it with chat=True")
    return prompt


class JSONLTask(Task):
    """Any JSONL file with a ``prompt`` column as a task, scored by a named or dotted-path reward.

    ``JSONLTask(reward="math")`` (the default) expects an ``answer`` column; ``"choice"`` expects
    ``answer`` (a letter, index or choice text) and optionally ``choices``; ``"module:function"``
    calls any TRL-style reward. ``columns=`` lists columns every row must have (checked at load).
    ``path=`` is required: a ``.jsonl`` file, or a directory holding ``<split>.jsonl``.
    """

    name: ClassVar[str] = "jsonl"
    splits: ClassVar[tuple[str, ...]] = ("train", "validation", "test")
    max_new_tokens: ClassVar[int] = 512

    def __init__(
        self,
        reward: str | Callable[..., list] = "math",
        *,
        columns: Sequence[str] = (),
        max_new_tokens: int | None = None,
        path: str | None = None,
    ) -> None:
        from gspo.rewards.registry import resolve_reward

        self.reward_spec = reward
        self.reward_fn = resolve_reward(reward)
        self.required_columns = tuple(columns)
        self.default_path = path
        if max_new_tokens is not None:
            self.max_new_tokens = int(max_new_tokens)  # type: ignore[misc]

    def records(self, split: str, path: str | None, limit: int | None) -> list[tuple[str, dict[str, Any]]]:
        """Rows of ``path`` (or ``<path>/<split>.jsonl``); each keeps all its columns."""
        path = path or self.default_path
        if path is None:
            raise ValueError("task 'jsonl' needs path= (a .jsonl file or a directory holding <split>.jsonl)")
        file = resolve_split_file(path, split, self.name)
        self._stem = file.stem
        return read_jsonl(file, {c: object for c in self.required_columns})

    def make_row(self, record: dict[str, Any], at: RowContext) -> dict[str, Any]:
        row = dict(record)
        row["prompt"] = _checked_prompt(record, at)
        row.setdefault("id", f"{self._stem}-{at.index}")
        return row

    def score(self, completion: str, row: dict[str, Any]) -> float:
        """The reward of one completion: the configured reward called on a batch of one."""
        return self.score_batch([completion], [row])[0]

    def score_batch(self, completions: list[str], rows: list[dict[str, Any]]) -> list[float]:
        """Call the reward once on the whole batch (columns gathered from the rows); None counts as 0."""
        if not completions:
            return []
        keys = set().union(*(row.keys() for row in rows)) - {"prompt"}
        columns = {k: [row.get(k) for row in rows] for k in keys}
        prompts = [row.get("prompt") for row in rows]
        try:
            values = self.reward_fn(prompts, list(completions), **columns)
        except (TypeError, KeyError) as exc:
            raise ValueError(f"task 'jsonl': reward {self.reward_spec!r} failed on the rows' columns ({exc})") from exc
        if len(values) != len(completions):
            raise ValueError(
                f"task 'jsonl': reward {self.reward_spec!r} returned {len(values)} values for {len(completions)} completions"
            )
        return [0.0 if v is None else float(v) for v in values]


__all__ = ["JSONLTask"]
