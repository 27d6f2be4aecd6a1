"""The built-in ``addition`` task: two-digit additions like ``"47+38="`` -> ``"85"``, scored exactly.

It is procedural (no data files) and deterministic. All 8100 ordered pairs ``(a, b)`` with
``10 <= a, b <= 99`` are split once, by a fixed hash of the pair, into

- a **held-out test split** of 800 pairs: 600 *carry* pairs and 200 pairs without a carry. It is
  never used to pretrain the embedded model (``gspo.models.embedded``) nor to train with RL;
- a **train split** of the other 7300 pairs.

A pair *needs a carry* when its units digits sum to 10 or more (``47+38``: 7+8=15). This is the
carry the embedded model was pretrained to forget: its noisy teacher wrote ``sum - 10`` (``75`` for
``47+38``) most of the time on carry pairs, so before RL it answers carry problems wrong greedily.

By default the ``test`` split keeps only carry pairs (``test_carry="only"``), so the default
evaluation set is the 600 held-out carry pairs, on which the pretrained embedded model scores about
0 greedily. The ``train`` split keeps every pair (``train_carry="any"``): RL on carry pairs alone
also flips the carry answers, but then tends to learn "add ten" everywhere and breaks the pairs
without a carry; the no-carry prompts in the mix anchor it to the real rule. Each split's filter is
``"only"`` (carry pairs), ``"any"`` (all pairs) or ``"none"`` (pairs without a carry; the held-out
ones are useful to check that RL did not break what the model already knew).

Rows look like ``{"prompt": "47+38=", "answer": "85", "id": "addition-47+38", "a": 47, "b": 38,
"carry": True}``; with ``chat=True`` the prompt is ``[{"role": "user", "content": "47+38="}]``.
A completion scores 1.0 iff, stripped of surrounding whitespace, it equals the answer exactly.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any, ClassVar

from gspo.tasks.base import RowContext, Task

#: Smallest and largest operand (two-digit numbers).
OPERAND_MIN, OPERAND_MAX = 10, 99
#: Held-out test pairs: this many carry pairs and this many pairs without a carry.
TEST_CARRY_PAIRS, TEST_NO_CARRY_PAIRS = 600, 200
CARRY_MODES = ("only", "any", "none")


def needs_carry(a: int, b: int) -> bool:
    """True when the units digits of ``a`` and ``b`` sum to 10 or more."""
    return (a % 10) + (b % 10) >= 10


def correct_answer(a: int, b: int) -> str:
    """The sum, as decimal digits."""
    return str(a + b)


def no_carry_answer(a: int, b: int) -> str:
    """The answer of a student who forgets to carry the one from the units: ``sum - 10`` on carry pairs.

    For pairs without a carry it is the correct answer. ``47+38`` -> ``"75"``, ``67+58`` -> ``"115"``.
    """
    return str(a + b - 10) if needs_carry(a, b) else str(a + b)


def format_prompt(a: int, b: int) -> str:
    """The prompt text of one pair, e.g. ``"47+38="``."""
    return f"{a}+{b}="


def _pair_key(pair: tuple[int, int]) -> str:
    """A fixed pseudo-random order of pairs that does not depend on Python's RNG or hash seed."""
    return hashlib.sha256(f"addition:{pair[0]}+{pair[1]}".encode()).hexdigest()


@lru_cache(maxsize=1)
def split_pairs() -> dict[str, tuple[tuple[int, int], ...]]:
    """The fixed split of all pairs: ``{"train": (...), "test": (...)}``, each in a fixed shuffled order."""
    pairs = sorted(
        ((a, b) for a in range(OPERAND_MIN, OPERAND_MAX + 1) for b in range(OPERAND_MIN, OPERAND_MAX + 1)),
        key=_pair_key,
    )
    carry = [p for p in pairs if needs_carry(*p)]
    no_carry = [p for p in pairs if not needs_carry(*p)]
    test = set(carry[:TEST_CARRY_PAIRS]) | set(no_carry[:TEST_NO_CARRY_PAIRS])
    return {
        "train": tuple(p for p in pairs if p not in test),
        "test": tuple(p for p in pairs if p in test),
    }


def make_row(a: int, b: int, *, chat: bool = False) -> dict[str, Any]:
    """The task row of one pair."""
    text = format_prompt(a, b)
    prompt: Any = [{"role": "user", "content": text}] if chat else text
    return {
        "prompt": prompt,
        "answer": correct_answer(a, b),
        "id": f"addition-{a}+{b}",
        "a": a,
        "b": b,
        "carry": needs_carry(a, b),
    }


class AdditionTask(Task):
    """Two-digit addition with an exact-match reward; the built-in task of ``gspo train``.

    ``train_carry`` and ``test_carry`` filter the pairs of each split: ``"only"`` (pairs needing a
    carry), ``"any"`` (all pairs) or ``"none"`` (pairs without a carry). The defaults train on all
    7300 train pairs and evaluate on the 600 held-out carry pairs.
    """

    name: ClassVar[str] = "addition"
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    #: the longest completion is three digits then EOS ("99+99=" -> "198").
    max_new_tokens: ClassVar[int] = 4
    procedural: ClassVar[bool] = True

    def __init__(self, train_carry: str = "any", test_carry: str = "only") -> None:
        for option, value in (("train_carry", train_carry), ("test_carry", test_carry)):
            if value not in CARRY_MODES:
                raise ValueError(f"task 'addition': {option} must be one of {list(CARRY_MODES)}, got {value!r}")
        self.carry = {"train": train_carry, "test": test_carry}

    def pairs(self, split: str) -> list[tuple[int, int]]:
        """The operand pairs of ``split`` after its carry filter, in the split's fixed order."""
        self.check_split(split)
        pairs = split_pairs()[split]
        mode = self.carry[split]
        if mode == "only":
            return [p for p in pairs if needs_carry(*p)]
        if mode == "none":
            return [p for p in pairs if not needs_carry(*p)]
        return list(pairs)

    def default_records(self, split: str, limit: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        """The operand pairs of ``split`` (the task is procedural: ``path`` is refused)."""
        pairs = self.pairs(split)
        if limit is not None:
            pairs = pairs[: max(0, int(limit))]
        return [(f"{a}+{b}", {"a": a, "b": b}) for a, b in pairs]

    def make_row(self, record: dict[str, Any], at: RowContext) -> dict[str, Any]:
        return make_row(record["a"], record["b"], chat=at.chat)

    def score(self, completion: str, row: dict[str, Any]) -> float:
        """1.0 iff the stripped completion equals the answer exactly, else 0.0."""
        if not isinstance(completion, str):
            return 0.0
        return 1.0 if completion.strip() == str(row["answer"]) else 0.0
