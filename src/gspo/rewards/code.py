"""Code rewards: pull the program out of a completion and run it against unit tests in the sandbox.

:func:`extract_code` takes the code of a completion: a fenced ```` ```python ```` block (the one that
defines the entry point if there are several, else the last one that defines anything, else the last
one; an unclosed fence at the end of a truncated completion counts), or the raw text when there is no
fence. :func:`assemble_solution` adds the task's ``code_prefix`` (HumanEval's function signature and
docstring): a completion that restates the whole function (``def <entry_point>(`` at the start of a
line) is appended after the prefix, whose docstring-only stub it then overrides; otherwise the
completion is taken as the body that continues the prefix.

:func:`code_reward` is a TRL-style reward over a ``tests`` column (a test program, or a list of
``assert`` lines) and optional ``code_prefix`` / ``entry_point`` columns; it runs every completion in
:mod:`gspo.rewards.sandbox` (one isolated process each, in parallel) and scores 1.0 iff the tests
completed without an exception.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from gspo.rewards.format import as_text

_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_LANGS = {"", "python", "py", "python3", "py3"}


def _defines(code: str, name: str | None) -> bool:
    if name:
        return re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None
    return re.search(r"^(?:async\s+)?def\s+\w+\s*\(", code, re.MULTILINE) is not None


def extract_code(completion: Any, entry_point: str | None = None) -> str:
    """The program in a completion (see the module docstring); ``""`` for non-text."""
    text = as_text(completion)
    blocks = [body for lang, body in _FENCE_RE.findall(text) if lang.lower() in _CODE_LANGS]
    if not blocks:
        return text
    if entry_point:
        for block in reversed(blocks):
            if _defines(block, entry_point):
                return block
    for block in reversed(blocks):
        if _defines(block, None):
            return block
    return blocks[-1]


def assemble_solution(completion: Any, code_prefix: str | None = None, entry_point: str | None = None) -> str:
    """The program to run: ``code_prefix`` completed (or overridden) by the completion's code."""
    code = extract_code(completion, entry_point)
    if not code_prefix:
        return code
    if _defines(code, entry_point) and (entry_point or not code.startswith((" ", "\t"))):
        return code_prefix.rstrip("\n") + "\n\n\n" + code
    if code and not code_prefix.endswith("\n") and not code.startswith("\n"):
        return code_prefix + "\n" + code
    return code_prefix + code


def build_test_program(tests: Any, setup: str | None = None) -> str:
    """A test program from a string, or from a list of ``assert`` lines, after optional setup code."""
    if isinstance(tests, (list, tuple)):
        body = "\n".join(str(t) for t in tests)
    else:
        body = str(tests or "")
    return f"{setup}\n{body}\n" if setup else f"{body}\n"


def run_code_jobs(jobs: list[tuple[str, str]], *, limits: Any = None, max_workers: int | None = None) -> list[float]:
    """Run ``(solution, tests)`` jobs in the sandbox; 1.0 for each that passed, else 0.0."""
    from gspo.rewards.sandbox import SandboxLimits, run_tests_many

    if not jobs:
        return []
    results = run_tests_many(jobs, limits=limits or SandboxLimits(), max_workers=max_workers)
    return [1.0 if r.passed else 0.0 for r in results]


def code_reward(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    tests: Sequence[Any],
    code_prefix: Sequence[str | None] | None = None,
    entry_point: Sequence[str | None] | None = None,
    test_setup_code: Sequence[str | None] | None = None,
    **_: Any,
) -> list[float]:
    """TRL reward: 1.0 when the completion's program passes its row's ``tests`` in the sandbox."""
    n = len(completions)
    if len(tests) != n:
        raise ValueError(f"code_reward: {n} completions but {len(tests)} test entries")
    prefixes = list(code_prefix) if code_prefix is not None else [None] * n
    entries = list(entry_point) if entry_point is not None else [None] * n
    setups = list(test_setup_code) if test_setup_code is not None else [None] * n
    jobs = [
        (assemble_solution(c, p, e), build_test_program(t, s))
        for c, p, e, t, s in zip(completions, prefixes, entries, tests, setups)
    ]
    return run_code_jobs(jobs)


__all__ = ["assemble_solution", "code_reward", "extract_code", "run_code_jobs", "build_test_program"]
