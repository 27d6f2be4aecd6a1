"""The procedural addition task: fixed disjoint splits, carry filters, row format and exact scoring."""

import hashlib

import pytest

from gspo.tasks import get_task
from gspo.tasks.arithmetic import (
    AdditionTask,
    correct_answer,
    needs_carry,
    no_carry_answer,
    split_pairs,
)


def _digest(pairs):
    return hashlib.sha256(";".join(f"{a}+{b}" for a, b in pairs).encode()).hexdigest()[:16]


def test_carry_helpers():
    assert needs_carry(47, 38) and not needs_carry(42, 31) and needs_carry(15, 95)
    assert correct_answer(47, 38) == "85" and no_carry_answer(47, 38) == "75"
    assert no_carry_answer(67, 58) == "115" and correct_answer(67, 58) == "125"
    assert no_carry_answer(42, 31) == "73" == correct_answer(42, 31)


def test_split_is_a_fixed_partition_of_all_pairs():
    splits = split_pairs()
    train, test = set(splits["train"]), set(splits["test"])
    assert len(train) == 7300 and len(test) == 800
    assert not train & test
    assert train | test == {(a, b) for a in range(10, 100) for b in range(10, 100)}
    assert sum(needs_carry(*p) for p in test) == 600
    # The split is pinned: the shipped embedded model was pretrained on exactly this train split.
    # Pinned (pairs and order): the shipped embedded model was pretrained on exactly the other pairs.
    assert _digest(splits["test"]) == "5b9c177279b563ff"


def test_load_is_deterministic_and_defaults_to_carry_test_and_mixed_train():
    task = AdditionTask()
    test = task.load("test")
    assert test == AdditionTask().load("test")
    assert len(test) == 600 and all(row["carry"] for row in test)
    train = task.load("train")
    assert len(train) == 7300 and {row["carry"] for row in train} == {True, False}
    assert not {row["id"] for row in train} & {row["id"] for row in test}
    assert len({row["id"] for row in train}) == len(train)


@pytest.mark.parametrize(
    "options, split, count",
    [
        ({"test_carry": "any"}, "test", 800),
        ({"test_carry": "none"}, "test", 200),
        ({"train_carry": "only"}, "train", 3645 - 600),
        ({"train_carry": "none"}, "train", 8100 - 3645 - 200),
    ],
)
def test_carry_filters(options, split, count):
    rows = AdditionTask(**options).load(split)
    assert len(rows) == count
    mode = options.get("test_carry", options.get("train_carry"))
    if mode == "only":
        assert all(r["carry"] for r in rows)
    if mode == "none":
        assert not any(r["carry"] for r in rows)


def test_rows_format_limit_and_chat():
    task = get_task("addition")
    assert isinstance(task, AdditionTask) and task.max_new_tokens == 4
    row = task.load("test", limit=3)[0]
    a, b = row["a"], row["b"]
    assert row["prompt"] == f"{a}+{b}=" and row["answer"] == str(a + b) and row["id"] == f"addition-{a}+{b}"
    assert len(task.load("test", limit=3)) == 3 and task.load("test", limit=0) == []
    chat_row = task.load("test", limit=1, chat=True)[0]
    assert chat_row["prompt"] == [{"role": "user", "content": f"{a}+{b}="}]
    with pytest.raises(ValueError, match="procedural"):
        task.load("test", path="x.jsonl")
    with pytest.raises(ValueError, match="split"):
        task.load("validation")
    with pytest.raises(ValueError, match="train_carry"):
        AdditionTask(train_carry="some")


def test_score_is_exact_match_after_strip():
    task = AdditionTask()
    row = {"prompt": "47+38=", "answer": "85"}
    assert task.score("85", row) == 1.0
    assert task.score(" 85\n", row) == 1.0
    for wrong in ("75", "085", "85.", "8 5", "85<eos>", "", "858", "eighty-five"):
        assert task.score(wrong, row) == 0.0, wrong
    assert task.score(None, row) == 0.0  # garbage never raises
    assert task.reward(["47+38=", "1+1="], ["85", "3"], answer=["85", "2"]) == [1.0, 0.0]
