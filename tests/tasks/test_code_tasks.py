"""HumanEval and MBPP: reference solutions pass in the sandbox, broken ones fail."""

from __future__ import annotations

import json

import pytest

from gspo.tasks.code import HumanEvalTask, MBPPTask


@pytest.fixture(scope="module")
def humaneval_rows():
    return HumanEvalTask().load("test")


def _failures(rows, scores, expected):
    return [r["id"] for r, s in zip(rows, scores) if s != expected]


@pytest.mark.slow
def test_humaneval_canonical_solutions_pass(humaneval_rows):
    assert len(humaneval_rows) == 164
    task = HumanEvalTask()
    scores = task.score_batch([r["canonical_solution"] for r in humaneval_rows], humaneval_rows)
    assert _failures(humaneval_rows, scores, 1.0) == []


@pytest.mark.slow
def test_humaneval_broken_solutions_fail(humaneval_rows):
    task = HumanEvalTask()
    scores = task.score_batch(["    return None\n"] * len(humaneval_rows), humaneval_rows)
    assert _failures(humaneval_rows, scores, 0.0) == []
    sample = humaneval_rows[::4]

    def truncated(code: str) -> str:
        lines = code.rstrip("\n").split("\n")
        return "\n".join(lines[: len(lines) // 2]) + "\n"

    scores = task.score_batch([truncated(r["canonical_solution"]) for r in sample], sample)
    assert _failures(sample, scores, 0.0) == []


def test_humaneval_completion_forms(humaneval_rows):
    task = HumanEvalTask()
    row = humaneval_rows[0]
    restated = f"Sure!\n```python\n{row['code_prefix']}{row['canonical_solution']}```\nThis works because..."
    body_in_fence = f"```python\n{row['canonical_solution']}```"
    scores = task.score_batch(
        [restated, body_in_fence, "```python\ndef has_close_elements(numbers, threshold):\n    return True\n```", None],
        [row] * 4,
    )
    assert scores == [1.0, 1.0, 0.0, 0.0]
    chat = HumanEvalTask().load("test", chat=True, limit=1)[0]
    assert chat["prompt"][0]["content"].startswith("Complete the following Python function.")
    assert "```python\nfrom typing import List" in chat["prompt"][0]["content"]
    assert HumanEvalTask().load("test", limit=1)[0]["prompt"] == row["code_prefix"]


@pytest.mark.slow
def test_mbpp_reference_solutions_pass():
    task = MBPPTask()
    rows = task.load("test")
    assert len(rows) == 500
    scores = task.score_batch([r["canonical_solution"] for r in rows], rows)
    failing = _failures(rows, scores, 1.0)
    # mbpp-123 (amicable numbers below 9999, a quadratic reference solution) needs ~5-13 s of CPU
    # here and may exceed the sandbox's default 10 s wall-clock limit.
    assert set(failing) <= {"mbpp-123"}, failing
    assert sum(scores) >= 499


def test_mbpp_prompt_and_wrong_code():
    task = MBPPTask()
    row = task.load("test", limit=1)[0]
    assert row["id"] == "mbpp-11" and row["entry_point"] == "remove_Occ"
    assert "Your code should pass these tests:\nassert remove_Occ(" in row["prompt"]
    wrong = "```python\ndef remove_Occ(s, ch):\n    return s\n```"
    right = f"```python\n{row['canonical_solution']}\n```"
    assert task.score_batch([wrong, right], [row, row]) == [0.0, 1.0]


def test_mbpp_from_path_with_setup_code(tmp_path):
    record = {
        "task_id": 1,
        "text": "Return K squared.",
        "code": "def sq():\n    return K * K",
        "test_list": ["assert sq() == 49"],
        "test_setup_code": "K = 7",
    }
    sanitized = {
        "task_id": 2,
        "prompt": "Return pi.",
        "code": "def pi():\n    return math.pi",
        "test_list": ["assert pi() == math.pi"],
        "test_imports": ["import math"],
    }
    (tmp_path / "train.jsonl").write_text(json.dumps(record) + "\n" + json.dumps(sanitized) + "\n")
    rows = MBPPTask().load("train", path=str(tmp_path))
    assert [r["id"] for r in rows] == ["mbpp-1", "mbpp-2"]
    solutions = ["def sq():\n    return K * K", "import math\ndef pi():\n    return math.pi"]
    assert MBPPTask().score_batch(solutions, rows) == [1.0, 1.0]
    with pytest.raises(FileNotFoundError, match="path="):
        MBPPTask().load("train")
