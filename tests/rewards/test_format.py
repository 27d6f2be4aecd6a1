"""Format rewards and their weighted combination (gspo.rewards.format)."""

from __future__ import annotations

import math

import pytest

from gspo.rewards.format import (
    as_text,
    boxed_contents,
    combine_rewards,
    format_answer_line_reward,
    format_boxed_reward,
    format_code_block_reward,
    format_final_answer_reward,
    format_hash_reward,
)

P = ["prompt"] * 4


def test_boxed():
    completions = ["so \\boxed{\\frac{1}{2}}", "\\boxed{}", "\\boxed{unclosed", None]
    assert format_boxed_reward(P, completions) == [1.0, 0.0, 0.0, 0.0]
    assert boxed_contents("\\boxed{a{b}c} \\boxed{d}") == ["a{b}c", "d"]


def test_hash_and_answer_line():
    completions = ["work\n#### 42", "#### ", "Answer: B", "the answer is 4"]
    assert format_hash_reward(P, completions) == [1.0, 0.0, 0.0, 0.0]
    assert format_answer_line_reward(P, completions) == [0.0, 0.0, 1.0, 0.0]
    assert format_final_answer_reward(P, completions) == [1.0, 0.0, 1.0, 0.0]


def test_code_block():
    completions = [
        "```python\ndef f():\n    return 1\n```",
        "```\ndef f(): pass\n```",
        "```python\ndef f():",  # never closed
        [{"role": "assistant", "content": "```py\nx = 1\n```"}],
    ]
    assert format_code_block_reward(P, completions) == [1.0, 0.0, 0.0, 1.0]


def test_as_text():
    assert as_text("x") == "x"
    assert as_text([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]) == "a\nb"
    assert as_text([{"role": "user", "content": "q"}]) == ""
    assert as_text(None) == "" and as_text(3) == "" and as_text([1, 2]) == ""


def test_combine_rewards_weights():
    def always_one(prompts, completions, **_):
        return [1.0] * len(completions)

    def none_for_first(prompts, completions, **_):
        return [None] + [0.5] * (len(completions) - 1)

    combined = combine_rewards([(always_one, 1.0), (format_boxed_reward, 0.25), (none_for_first, 2.0)])
    values = combined(P[:2], ["\\boxed{1}", "no box"], answer=["1", "2"])
    assert values == [pytest.approx(1.25), pytest.approx(2.0)]
    assert "format_boxed_reward" in combined.__name__

    only_none = combine_rewards([(lambda p, c, **_: [None] * len(c), 1.0)])
    assert only_none(P[:1], ["x"]) == [None]


@pytest.mark.parametrize(
    "parts",
    [
        [],
        [(format_boxed_reward,)],
        [("not callable", 1.0)],
        [(format_boxed_reward, math.nan)],
        [(format_boxed_reward, "1")],
    ],
)
def test_combine_rewards_rejects_bad_parts(parts):
    with pytest.raises(ValueError):
        combine_rewards(parts)


def test_combine_rewards_checks_lengths():
    combined = combine_rewards([(lambda p, c, **_: [1.0], 1.0)])
    with pytest.raises(ValueError, match="returned 1 values for 2"):
        combined(P[:2], ["a", "b"])
