"""Multiple-choice answer reading (gspo.rewards.choice)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gspo.rewards.choice import choice_reward, choice_score, extract_choice, gold_index

CHOICES = ["cellular telephone", "television", "refrigerator", "airplane"]


@pytest.mark.parametrize(
    "completion",
    [
        "B",
        "(B)",
        "B.",
        "B) television",
        "B: television",
        "Answer: B",
        "The answer is (B).",
        "**Answer:** B",
        "Final answer: [B]",
        "I think C is wrong. Answer: B",
        "The answer is B, not choice C",
        "\\boxed{B}",
        "\\boxed{\\text{(B)}}",
        "television",
        "Television.",
        "The answer is television.",
        [{"role": "assistant", "content": "Answer: B"}],
    ],
)
def test_reads_gold(completion):
    assert extract_choice(completion, CHOICES) == 1
    assert choice_score(completion, "B", CHOICES) == 1.0


@pytest.mark.parametrize(
    "completion",
    ["", "A man walks into a bar", "answer: b", "E", "Answer: E", "The answer is unclear", None, 3, "tele"],
)
def test_unreadable_is_none(completion):
    assert extract_choice(completion, CHOICES) is None


def test_other_choices_score_zero():
    for letter, text in zip("ACD", [CHOICES[0], CHOICES[2], CHOICES[3]]):
        assert choice_score(letter, "B", CHOICES) == 0.0
        assert choice_score(f"Answer: {letter}", "B", CHOICES) == 0.0
        assert choice_score(text, "B", CHOICES) == 0.0


def test_signed_texts_are_distinct():
    choices = ["+2", "+1", "-1", "-2"]
    assert extract_choice("+1", choices) == 1
    assert extract_choice("-1", choices) == 2


def test_gold_forms():
    assert gold_index("B", CHOICES) == 1
    assert gold_index("(C)", CHOICES) == 2
    assert gold_index(3, CHOICES) == 3
    assert gold_index("television", CHOICES) == 1
    assert gold_index("E", CHOICES) is None
    assert gold_index(4, CHOICES) is None
    assert gold_index(True, CHOICES) is None
    assert gold_index("B") == 1  # choices unknown: letters only


def test_without_choices():
    assert choice_score("Answer: C", "C") == 1.0
    assert choice_score("television", "B") == 0.0


def test_reward_batch():
    out = choice_reward(["p"] * 3, ["B", "C", "television"], answer=["B", "B", "B"], choices=[CHOICES] * 3)
    assert out == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError):
        choice_reward(["p"], ["B", "C"], answer=["B"])


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_garbage_never_raises(text):
    assert choice_score(text, "B", CHOICES) in (0.0, 1.0)
