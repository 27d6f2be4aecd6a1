"""JSONLTask: any JSONL file as a task, with a named or dotted-path reward."""

from __future__ import annotations

import json
import textwrap

import pytest

from gspo.tasks import get_task
from gspo.tasks.base import DataError
from gspo.tasks.jsonl import JSONLTask


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_math_reward_default(tmp_path):
    file = _write(
        tmp_path / "data.jsonl",
        [{"prompt": "1/2 as a decimal?", "answer": "\\frac{1}{2}"}, {"prompt": "2+2?", "answer": "4"}],
    )
    task = get_task("jsonl")
    rows = task.load("train", path=str(file))
    assert [r["id"] for r in rows] == ["data-0", "data-1"]
    assert task.score_batch(["\\boxed{0.5}", "#### 5"], rows) == [1.0, 0.0]
    chat = task.load("train", path=str(file), chat=True, limit=1)
    assert chat[0]["prompt"] == [{"role": "user", "content": "1/2 as a decimal?"}]


def test_custom_reward_by_dotted_path(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(
        textwrap.dedent(
            """
            def keyword_reward(prompts, completions, keyword, **_):
                return [1.0 if k in c else 0.0 for c, k in zip(completions, keyword)]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    file = _write(
        tmp_path / "train.jsonl", [{"prompt": "Say cat", "keyword": "cat"}, {"prompt": "Say dog", "keyword": "dog"}]
    )
    task = JSONLTask(reward="my_rewards:keyword_reward", columns=["keyword"])
    rows = task.load("train", path=str(tmp_path))
    assert task.score_batch(["a cat", "a cat"], rows) == [1.0, 0.0]
    assert task.score("the dog", rows[1]) == 1.0
    # TRL-style call: columns as lists
    assert task.reward(["Say cat"], ["cat!"], keyword=["cat"]) == [1.0]
    with pytest.raises(DataError, match="train.jsonl:1: missing column 'needed'"):
        JSONLTask(reward="my_rewards:keyword_reward", columns=["needed"]).load("train", path=str(file))


def test_choice_reward_and_message_prompts(tmp_path):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Pick one: A. yes B. no"}]
    file = _write(tmp_path / "mc.jsonl", [{"prompt": messages, "answer": "B", "choices": ["yes", "no"]}])
    task = JSONLTask(reward="choice")
    rows = task.load("test", path=str(file), chat=True)
    assert rows[0]["prompt"] == messages
    assert task.score_batch(["B", "no", "A"], rows * 3) == [1.0, 1.0, 0.0]
    with pytest.raises(DataError, match="mc.jsonl:1: .*chat=True"):
        task.load("test", path=str(file), chat=False)


def test_bad_reward_specs():
    with pytest.raises(ValueError, match="valid rewards"):
        JSONLTask(reward="nonexistent")
    with pytest.raises(ValueError, match="cannot import module"):
        JSONLTask(reward="no_such_pkg_abc:fn")
    with pytest.raises(ValueError, match="needs path="):
        JSONLTask().load("train")
