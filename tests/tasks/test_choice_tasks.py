"""HellaSwag and ARC: loading and letter/text scoring on the shipped rows."""

from __future__ import annotations

import json

import pytest

from gspo.rewards.choice import LETTERS
from gspo.tasks.choice import ARCChallengeTask, ARCEasyTask, HellaSwagTask


def _check_rows(task, rows):
    wrong = []
    for row in rows:
        for i, text in enumerate(row["choices"]):
            expected = 1.0 if i == row["label"] else 0.0
            forms = [LETTERS[i], f"Answer: ({LETTERS[i]})", f"The answer is {LETTERS[i]}."]
            # a choice's text identifies it unless it is itself a letter or repeats another choice
            if len(text) > 1 and sum(c.lower() == text.lower() for c in row["choices"]) == 1:
                forms.append(text)
            wrong += [(row["id"], f) for f in forms if task.score(f, row) != expected]
    return wrong


@pytest.mark.parametrize(
    "task_cls, split, count",
    [
        (ARCEasyTask, "validation", 570),
        (ARCEasyTask, "test", 2376),
        (ARCChallengeTask, "validation", 299),
        (ARCChallengeTask, "test", 1172),
    ],
)
def test_arc_gold_scores_one_others_zero(task_cls, split, count):
    task = task_cls()
    rows = task.load(split)
    assert len(rows) == count
    assert _check_rows(task, rows) == []


def test_hellaswag_gold_scores_one_others_zero():
    task = HellaSwagTask()
    rows = task.load("validation", limit=1000)
    assert len(rows) == 1000
    assert _check_rows(task, rows) == []
    assert rows[0]["prompt"].startswith(
        "Roof shingle removal: A man is sitting on a roof. He\nChoose the best continuation:\nA. "
    )
    assert rows[0]["answer"] == "D"


def test_prompt_format_and_chat():
    row = ARCEasyTask().load("test", limit=1, chat=True)[0]
    content = row["prompt"][0]["content"]
    assert content.splitlines() == [
        row["question"],
        *[f"{LETTERS[i]}. {c}" for i, c in enumerate(row["choices"])],
        "Answer with the letter of the correct choice.",
    ]
    assert not row["question"].startswith("Question:") and not row["question"].endswith("Answer:")
    assert row["prompt"][0]["role"] == "user"
    with pytest.raises(FileNotFoundError, match="path="):
        ARCEasyTask().load("train")
    with pytest.raises(ValueError, match="split"):
        HellaSwagTask().load("test")


def test_load_hf_and_canonical_formats(tmp_path):
    records = [
        {
            "id": "arc1",
            "question": "Which is a gas?",
            "choices": {"text": ["ice", "steam", "rock"], "label": ["1", "2", "3"]},
            "answerKey": "2",
        },
        {
            "ind": 4,
            "activity_label": "Cooking",
            "ctx": "He cracks an egg and",
            "endings": ["eats the pan.", "pours it in a bowl."],
            "label": "1",
        },
        {"question": "2+2?", "choices": ["3", "4"], "answer": "4"},
        {"question": "Sky colour?", "choices": ["blue", "green"], "answer": 0},
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    rows = ARCEasyTask().load("train", path=str(tmp_path))
    assert [r["answer"] for r in rows] == ["B", "B", "B", "A"]
    assert rows[1]["question"] == "Cooking: He cracks an egg and"
    assert [ARCEasyTask().score("B", r) for r in rows] == [1.0, 1.0, 1.0, 0.0]
    assert ARCEasyTask().score("steam", rows[0]) == 1.0
