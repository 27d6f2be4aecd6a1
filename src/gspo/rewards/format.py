"""Format rewards: does a completion put its answer where the task asked? Plus weighted combinations.

These rewards check *form*, not correctness: a ``\\boxed{...}`` answer, a ``#### N`` line, an
``Answer: X`` line, a fenced ```` ```python ```` block. They are meant as small shaping terms added to a
correctness reward with :func:`combine_rewards`, e.g.::

    reward = combine_rewards([(math_reward, 1.0), (format_boxed_reward, 0.1)])

Every reward here follows TRL's convention ``f(prompts, completions, **columns) -> list[float]`` and
never raises on garbage completions (non-strings score 0). Completions may be plain strings or chat
message lists (``[{"role": "assistant", "content": ...}]``, as TRL passes them for conversational
data); :func:`as_text` turns either into the text that is checked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

RewardFunction = Callable[..., list]

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE_RE = re.compile(r"[{}]")
_HASH_RE = re.compile(r"^[ \t]*####[ \t]*\S", re.MULTILINE)
_ANSWER_LINE_RE = re.compile(
    r"^[ \t]*(?:\*\*)?(?:final answer|answer)(?:\*\*)?[ \t]*:[ \t]*\S", re.IGNORECASE | re.MULTILINE
)
_PY_BLOCK_RE = re.compile(r"```[ \t]*(?:python|py|python3)[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def as_text(completion: Any) -> str:
    """The text of a completion: the string itself, or the contents of a chat message list joined.

    Returns ``""`` for anything else (None, numbers, malformed messages), so callers never raise.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        content = completion.get("content")
        return content if isinstance(content, str) else ""
    if isinstance(completion, (list, tuple)):
        parts = []
        for message in completion:
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                if message.get("role", "assistant") == "assistant":
                    parts.append(message["content"])
        return "\n".join(parts)
    return ""


def boxed_contents(text: str) -> list[str]:
    """The contents of every ``\\boxed{...}`` / ``\\fbox{...}`` in ``text`` whose braces close, in order.

    Nested braces are matched (``\\boxed{\\frac{1}{2}}`` -> ``\\frac{1}{2}``); an unclosed box (a
    truncated completion) is skipped. One linear pass, so huge or adversarial strings stay cheap.
    """
    starts = [m.end() for m in _BOXED_RE.finditer(text)]
    if not starts:
        return []
    closing: dict[int, int] = {}
    stack: list[int] = []
    for brace in _BRACE_RE.finditer(text, starts[0] - 1):
        i = brace.start()
        if text[i] == "{":
            stack.append(i)
        elif stack:
            closing[stack.pop()] = i
    out = []
    for start in starts:  # start is just past the opening brace
        end = closing.get(start - 1)
        if end is not None:
            out.append(text[start:end])
    return out


def has_boxed(text: str) -> bool:
    """True when ``text`` holds a non-empty ``\\boxed{...}`` (or ``\\fbox{...}``) whose braces close."""
    return any(c.strip() for c in boxed_contents(text))


def has_hash_answer(text: str) -> bool:
    """True when a line starts with ``####`` followed by an answer (GSM8K's format)."""
    return _HASH_RE.search(text) is not None


def has_answer_line(text: str) -> bool:
    """True when a line reads ``Answer: X`` (or ``Final answer: X``), case-insensitive."""
    return _ANSWER_LINE_RE.search(text) is not None


def has_python_block(text: str) -> bool:
    """True when ``text`` holds a closed, non-empty ```` ```python ```` fenced block."""
    return any(block.strip() for block in _PY_BLOCK_RE.findall(text))


def _format_reward(check: Callable[[str], bool], completions: Sequence[Any]) -> list[float]:
    out = []
    for completion in completions:
        try:
            out.append(1.0 if check(as_text(completion)) else 0.0)
        except Exception:  # never raise on garbage
            out.append(0.0)
    return out


def format_boxed_reward(prompts: Sequence[Any], completions: Sequence[Any], **_: Any) -> list[float]:
    """1.0 when the completion puts an answer in ``\\boxed{...}``, else 0.0."""
    return _format_reward(has_boxed, completions)


def format_hash_reward(prompts: Sequence[Any], completions: Sequence[Any], **_: Any) -> list[float]:
    """1.0 when the completion has a ``#### N`` answer line, else 0.0."""
    return _format_reward(has_hash_answer, completions)


def format_answer_line_reward(prompts: Sequence[Any], completions: Sequence[Any], **_: Any) -> list[float]:
    """1.0 when the completion has an ``Answer: X`` line, else 0.0."""
    return _format_reward(has_answer_line, completions)


def format_final_answer_reward(prompts: Sequence[Any], completions: Sequence[Any], **_: Any) -> list[float]:
    """1.0 when the completion states its answer in any of the three forms above, else 0.0."""
    return _format_reward(lambda t: has_boxed(t) or has_hash_answer(t) or has_answer_line(t), completions)


def format_code_block_reward(prompts: Sequence[Any], completions: Sequence[Any], **_: Any) -> list[float]:
    """1.0 when the completion holds its code in a closed ```` ```python ```` block, else 0.0."""
    return _format_reward(has_python_block, completions)


def combine_rewards(parts: Sequence[tuple[RewardFunction, float]], *, name: str | None = None) -> RewardFunction:
    """One reward function that returns ``sum(w * f(...))`` over ``parts = [(f, w), ...]``.

    Each ``f`` gets the same ``(prompts, completions, **columns)``. A ``None`` from a part (TRL's
    "not applicable") counts as 0 for that part; the result is None only where every part said None.
    Weights must be finite numbers; a part's result must have one entry per completion.
    """
    parts = list(parts)
    if not parts:
        raise ValueError("combine_rewards needs at least one (function, weight) pair")
    for i, part in enumerate(parts):
        if not (isinstance(part, (tuple, list)) and len(part) == 2):
            raise ValueError(f"combine_rewards: part {i} must be a (function, weight) pair, got {part!r}")
        fn, weight = part
        if not callable(fn):
            raise ValueError(f"combine_rewards: part {i}: {fn!r} is not callable")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ValueError(f"combine_rewards: part {i}: weight must be a finite number, got {weight!r}")

    def combined(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float | None]:
        total: list[float | None] = [None] * len(completions)
        for fn, weight in parts:
            values = fn(prompts, completions, **columns)
            if len(values) != len(completions):
                raise ValueError(
                    f"reward {getattr(fn, '__name__', fn)!r} returned {len(values)} values for {len(completions)} completions"
                )
            for i, value in enumerate(values):
                if value is None:
                    continue
                total[i] = (total[i] or 0.0) + float(weight) * float(value)
        return total

    combined.__name__ = name or "+".join(f"{w:g}*{getattr(f, '__name__', 'reward')}" for f, w in parts)
    combined.__qualname__ = combined.__name__
    return combined


__all__ = [
    "RewardFunction",
    "as_text",
    "boxed_contents",
    "combine_rewards",
    "format_answer_line_reward",
    "format_boxed_reward",
    "format_code_block_reward",
    "format_final_answer_reward",
    "format_hash_reward",
    "has_answer_line",
    "has_boxed",
    "has_hash_answer",
    "has_python_block",
]
