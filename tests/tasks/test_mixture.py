"""Dataset specs and task mixtures (gspo.tasks.mixture)."""

from __future__ import annotations

import collections
import json
from typing import Any

import pytest

from gspo.tasks.base import Task
from gspo.tasks.mixture import DatasetSpecEntry, MixtureTask, allocate, parse_dataset_spec


def test_parse_spec():
    entries = parse_dataset_spec("gsm8k:0.5,humaneval:0.5")
    assert entries == [DatasetSpecEntry("gsm8k", 0.5), DatasetSpecEntry("humaneval", 0.5)]
    entries = parse_dataset_spec(" gsm8k:3 , math500 ")  # default weight 1, normalised
    assert [(e.name, e.weight) for e in entries] == [("gsm8k", 0.75), ("math500", 0.25)]
    entries = parse_dataset_spec("gsm8k@/data/gsm8k:2,arc_easy@rel/dir")
    assert entries[0].path == "/data/gsm8k" and entries[1].path == "rel/dir"
    assert entries[0].weight == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("gsm8k:abc,humaneval:0.5", "weight 'abc' of part 'gsm8k:abc' is not a number"),
        ("gsm8k:-1", "weight '-1' of part 'gsm8k:-1' must be a positive"),
        ("gsm8k:0", "weight '0' of part 'gsm8k:0' must be a positive"),
        ("gsm8k:inf", "must be a positive finite"),
        ("gsm8k:0.5,nosuchtask:0.5", "unknown task 'nosuchtask' in part 'nosuchtask:0.5'"),
        ("gsm8k:0.5,,mbpp:0.5", "empty part"),
        ("gsm8k,gsm8k:2", "named twice"),
        (":0.5", "has no task name"),
        ("gsm8k@:1", "empty path"),
        ("", "non-empty"),
    ],
)
def test_parse_spec_errors_name_the_bad_part(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_dataset_spec(spec)


def test_allocate():
    assert allocate([0.5, 0.5], 3) in ([2, 1], [1, 2])
    assert allocate([0.7, 0.2, 0.1], 10) == [7, 2, 1]
    assert sum(allocate([1 / 3] * 3, 100)) == 100


class EchoTask(Task):
    """A stub task: the completion must equal the row's word."""

    name = "echo"
    splits = ("train", "test")
    max_new_tokens = 7

    def __init__(self, n: int = 10, word: str = "x") -> None:
        self.n, self.word = n, word

    def load(self, split, *, path=None, limit=None, chat=False) -> list[dict[str, Any]]:
        return [{"prompt": f"say {self.word}", "word": self.word, "id": f"{self.word}-{i}"} for i in range(self.n)]

    def score(self, completion: str, row: dict[str, Any]) -> float:
        return 1.0 if completion == row["word"] else 0.0


def test_mixture_sampling_is_weighted_tagged_and_seeded():
    tasks = {"cats": EchoTask(50, "cat"), "dogs": EchoTask(5, "dog")}
    mix = MixtureTask("cats:0.8,dogs:0.2", tasks=tasks, seed=1)
    rows = mix.load("train", limit=100)
    counts = collections.Counter(r["task"] for r in rows)
    assert counts == {"cats": 80, "dogs": 20}  # dogs has 5 rows: cycled 4 times
    assert collections.Counter(r["id"] for r in rows if r["task"] == "dogs") == {f"dog-{i}": 4 for i in range(5)}
    assert rows == MixtureTask("cats:0.8,dogs:0.2", tasks=tasks, seed=1).load("train", limit=100)
    assert rows != MixtureTask("cats:0.8,dogs:0.2", tasks=tasks, seed=2).load("train", limit=100)
    # without a limit: the largest mixture with no repeats (dogs' 5 rows are 20% of 25)
    assert collections.Counter(r["task"] for r in mix.load("train")) == {"cats": 20, "dogs": 5}
    assert mix.max_new_tokens == 7


def test_mixture_score_dispatches_on_task():
    tasks = {"cats": EchoTask(3, "cat"), "dogs": EchoTask(3, "dog")}
    mix = MixtureTask("cats,dogs", tasks=tasks)
    rows = mix.load("train", limit=6)
    completions = [r["word"] for r in rows]
    assert mix.score_batch(completions, rows) == [1.0] * 6
    assert mix.score_batch(["cat"] * 6, rows) == [1.0 if r["task"] == "cats" else 0.0 for r in rows]
    columns = {k: [r[k] for r in rows] for k in ("task", "word", "id")}
    assert mix.reward([r["prompt"] for r in rows], completions, **columns) == [1.0] * 6
    with pytest.raises(ValueError, match="row has task 'birds'"):
        mix.score("x", {"task": "birds"})


def test_mixture_of_real_tasks(tmp_path):
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": "1+1?", "answer": "so 2\n#### 2"}) + "\n")
    mix = MixtureTask(f"gsm8k@{tmp_path}:0.5,arc_easy:0.5", seed=0)
    rows = mix.load("test", limit=4)
    assert collections.Counter(r["task"] for r in rows) == {"gsm8k": 2, "arc_easy": 2}
    completions = ["#### 2" if r["task"] == "gsm8k" else r["answer"] for r in rows]
    assert mix.score_batch(completions, rows) == [1.0] * 4
    assert mix.score_batch(["#### 3" if r["task"] == "gsm8k" else "Z" for r in rows], rows) == [0.0] * 4
    with pytest.raises(ValueError, match="has no split 'validation'"):
        MixtureTask("gsm8k:1").load("validation")
    mixed = MixtureTask(f"gsm8k@{tmp_path}:0.5,humaneval:0.5", split_overrides={"humaneval": "test", "gsm8k": "test"})
    rows = mixed.load("train", limit=2)
    assert sorted(r["task"] for r in rows) == ["gsm8k", "humaneval"]
    assert mixed.max_new_tokens == 512
