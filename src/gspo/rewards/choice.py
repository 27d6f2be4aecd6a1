"""Multiple-choice answers: read which choice a completion picked and compare it with the gold one.

:func:`extract_choice` reads, in this order (the last occurrence wins within each form):

1. an explicit answer: ``Answer: B``, ``the answer is (B)``, ``Final answer: B.``, ``\\boxed{B}``;
2. a completion that *starts* with a letter: ``B``, ``(B)``, ``B.``, ``B) text``, ``B: text``;
3. the text of a choice (when ``choices`` are known): the answer part, or the whole completion, equal to
   exactly one choice, ignoring case and whitespace (then, if no choice matched, punctuation too).

Letters must be capitals within the number of choices (``A``-``D`` for four; ``A``-``J`` when the
choices are unknown), so the article "a" in prose is never read as choice A. The gold ``answer`` may be
a letter, a 0-based index, or a choice's text. A completion naming several letters in different forms
is read by the first form that matches, never by voting.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

from gspo.rewards.format import as_text, boxed_contents

LETTERS = string.ascii_uppercase
#: Letters accepted when the choices are not known.
DEFAULT_MAX_CHOICES = 10

_ANSWER_RE = re.compile(
    r"(?i:answer|correct\s+(?:choice|option))(?:\*\*)?\s*(?i:is)?\s*(?:\*\*)?\s*[:：=]?\s*(?:\*\*)?\s*"
    r"(?:\\boxed\{\s*)?[\(\[]?([A-Z])[\)\]]?(?![A-Za-z0-9])"
)
_START_RE = re.compile(r"^\s*(?:\*\*)?[\(\[]?([A-Z])(?:[\)\]]|(?=[.:](?:\s|$))|(?=\s*$)|(?=\s*[-–—]\s))")
_ANSWER_PART_RE = re.compile(r"(?i:answer)(?:\*\*)?\s*(?i:is)?\s*[:：]?\s*(?:\*\*)?([^\n]*)")


def normalize_choice_text(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: the form choice texts are compared in."""
    text = text.lower().translate(str.maketrans(string.punctuation, " " * len(string.punctuation)))
    return " ".join(text.split())


def letter_index(letter: str, n_choices: int | None = None) -> int | None:
    """``"B"`` -> 1, or None when it is not a capital letter within ``n_choices``."""
    n = DEFAULT_MAX_CHOICES if n_choices is None else n_choices
    if len(letter) == 1 and letter in LETTERS[:n]:
        return LETTERS.index(letter)
    return None


def _loose(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".").strip()


def _text_index(text: str, choices: Sequence[str]) -> int | None:
    """The index of the single choice whose text equals ``text``, else None.

    Tried twice: ignoring case and whitespace only (so ``"+1"`` and ``"-1"`` differ), then also ignoring
    punctuation; either way exactly one choice must match.
    """
    for normal in (_loose, normalize_choice_text):
        target = normal(text)
        if not target:
            return None
        hits = [i for i, c in enumerate(choices) if isinstance(c, str) and normal(c) == target]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            return None
    return None


def extract_choice(completion: Any, choices: Sequence[str] | None = None, n_choices: int | None = None) -> int | None:
    """The 0-based index of the choice a completion picked, or None (see the module docstring)."""
    try:
        text = as_text(completion)
        if not text.strip():
            return None
        if n_choices is None and choices is not None:
            n_choices = len(choices)
        for match in reversed(list(_ANSWER_RE.finditer(text))):
            index = letter_index(match.group(1), n_choices)
            if index is not None:
                return index
        for boxed in reversed(boxed_contents(text)):
            inner = re.sub(r"\\text\{([^{}]*)\}", r"\1", boxed).strip().strip("()[] ")
            index = letter_index(inner, n_choices)
            if index is None and choices:
                index = _text_index(inner, choices)
            if index is not None:
                return index
        start = _START_RE.match(text)
        if start:
            index = letter_index(start.group(1), n_choices)
            if index is not None:
                return index
        if choices:
            for part in reversed(_ANSWER_PART_RE.findall(text)):
                index = _text_index(part.strip().rstrip("."), choices)
                if index is not None:
                    return index
            return _text_index(text, choices)
        return None
    except Exception:  # never raise on garbage
        return None


def gold_index(answer: Any, choices: Sequence[str] | None = None) -> int | None:
    """The gold answer as a 0-based index: from a letter, an index, or a choice's text."""
    n = len(choices) if choices is not None else None
    if isinstance(answer, bool):
        return None
    if isinstance(answer, int):
        return answer if 0 <= answer < (n if n is not None else DEFAULT_MAX_CHOICES) else None
    if not isinstance(answer, str):
        return None
    stripped = answer.strip().strip("()[]. ")
    index = letter_index(stripped, n)
    if index is not None:
        return index
    if stripped.isdigit() and choices is None:
        return None
    if choices:
        return _text_index(answer, choices)
    return None


def choice_score(completion: Any, answer: Any, choices: Sequence[str] | None = None) -> float:
    """1.0 when the completion picked the gold choice, else 0.0. Never raises."""
    try:
        if choices is not None and not isinstance(choices, (list, tuple)):
            choices = None
        gold = gold_index(answer, choices)
        if gold is None:
            return 0.0
        return 1.0 if extract_choice(completion, choices) == gold else 0.0
    except Exception:
        return 0.0


def choice_reward(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    answer: Sequence[Any],
    choices: Sequence[Sequence[str] | None] | None = None,
    **_: Any,
) -> list[float]:
    """TRL reward: :func:`choice_score` of each completion against the ``answer`` (and ``choices``) columns."""
    if len(answer) != len(completions):
        raise ValueError(f"choice_reward: {len(completions)} completions but {len(answer)} answers")
    all_choices = list(choices) if choices is not None else [None] * len(completions)
    return [choice_score(c, a, ch) for c, a, ch in zip(completions, answer, all_choices)]


__all__ = [
    "DEFAULT_MAX_CHOICES",
    "choice_reward",
    "choice_score",
    "extract_choice",
    "gold_index",
    "letter_index",
    "normalize_choice_text",
]
