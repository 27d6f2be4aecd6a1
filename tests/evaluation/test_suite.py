"""Evaluation suites: the file format and its validation, category means and the overall mean."""

from __future__ import annotations

import pytest

from gspo.evaluation.report import report_json, report_markdown
from gspo.evaluation.suite import (
    CATEGORIES,
    SuiteError,
    SuiteReport,
    build_tasks,
    category_comparison_table,
    get_suite,
    load_suites,
    suite_scores,
)
from gspo.tasks import TASK_REGISTRY


@pytest.fixture(autouse=True)
def parity_task(monkeypatch):
    monkeypatch.setitem(TASK_REGISTRY, "parity", "tests.helpers_tiny:ParityTask")


def _write(tmp_path, text: str):
    path = tmp_path / "suites.yaml"
    path.write_text(text)
    return path


GOOD = """
mine:
  description: two tasks
  tasks:
    - {name: parity, category: reasoning, limit: 4, options: {rows: 6}}
    - {name: sums, task: addition, category: math, split: test, max_new_tokens: 3}
other:
  tasks:
    - {name: parity, category: code}
"""


def test_a_suites_file_parses_with_defaults_and_options(tmp_path):
    suites = load_suites(_write(tmp_path, GOOD))
    assert sorted(suites) == ["mine", "other"]
    mine = suites["mine"]
    assert mine.description == "two tasks"
    parity, sums = mine.tasks
    assert (parity.task, parity.split, parity.limit, dict(parity.options)) == ("parity", "test", 4, {"rows": 6})
    assert (sums.task, sums.max_new_tokens, sums.limit, sums.data_path) == ("addition", 3, None, None)
    assert mine.category_of == {"parity": "reasoning", "sums": "math"}
    assert build_tasks(mine)[0].num_rows == 6


def test_limit_caps():
    from gspo.evaluation.suite import SuiteTask

    task = SuiteTask(name="t", task="t", category="math", limit=40)
    assert task.capped_limit(None) == 40 and task.capped_limit(5) == 5 and task.capped_limit(100) == 40
    assert SuiteTask(name="t", task="t", category="math").capped_limit(7) == 7


@pytest.mark.parametrize(
    "text,named",
    [
        ("- 1\n", "must map suite names to suites"),
        ("s: {tasks: []}\n", "'tasks' must be a non-empty list"),
        ("s: {tasks: [{name: parity, category: math}], colour: red}\n", "unknown key(s) ['colour']"),
        ("s: {tasks: [{category: math}]}\n", "task 1: needs a 'name'"),
        ("s: {tasks: [{name: parity, category: maths}]}\n", "task 'parity': 'category' must be one of"),
        ("s: {tasks: [{name: parity}]}\n", "'category' must be one of"),
        ("s: {tasks: [{name: parity, category: math, limit: 0}]}\n", "'limit' must be an integer >= 1"),
        ("s: {tasks: [{name: parity, category: math, limit: many}]}\n", "'limit' must be an integer >= 1"),
        ("s: {tasks: [{name: parity, category: math, shots: 5}]}\n", "unknown key(s) ['shots']"),
        ("s: {tasks: [{name: parity, category: math}, {name: parity, category: code}]}\n", "appears twice"),
        ("s: {tasks: [{name: nope, category: math}]}\n", "task 'nope': unknown task 'nope'"),
        ("s: {tasks: [{name: parity, category: math, options: {row: 3}}]}\n", "unknown option(s) ['row']"),
        ("s: {tasks: [{name: parity, category: math, split: dev}]}\n", "has no split 'dev'"),
        ("s: {tasks: [{name: parity, category: math, options: [1]}]}\n", "'options' must be a mapping"),
        (
            "s: {tasks: [{name: rg, task: reasoning_gym, category: reasoning, options: {dataset: basic_arithmetc}}]}\n",
            "unknown dataset 'basic_arithmetc'",
        ),
        ("s: {tasks: [{name: parity, category: math}\n", "not a readable YAML file"),
    ],
)
def test_bad_suite_files_name_the_file_suite_task_and_problem(tmp_path, text, named):
    path = _write(tmp_path, text)
    with pytest.raises(SuiteError) as info:
        load_suites(path)
    assert named in str(info.value) and str(path) in str(info.value)


def test_unknown_suite_and_missing_file(tmp_path):
    with pytest.raises(SuiteError, match=r"no suite 'nope'; suites: \['mine', 'other'\]"):
        get_suite("nope", _write(tmp_path, GOOD))
    with pytest.raises(SuiteError, match="not found"):
        load_suites(tmp_path / "missing.yaml")


def test_category_means_and_overall_from_the_per_task_results():
    accuracies = {"gsm8k": 0.1, "math500": 0.3, "humaneval": 0.5, "arc": 0.2, "hellaswag": 0.4, "rg": 0.9}
    category_of = {
        "gsm8k": "math",
        "math500": "math",
        "humaneval": "code",
        "arc": "reasoning",
        "hellaswag": "reasoning",
        "rg": "reasoning",
    }
    scores = suite_scores(accuracies, category_of)
    assert list(scores.categories) == list(CATEGORIES)
    assert scores.categories["math"] == pytest.approx(0.2)
    assert scores.categories["code"] == pytest.approx(0.5)
    assert scores.categories["reasoning"] == pytest.approx(0.5)
    assert scores.overall == pytest.approx(sum(accuracies.values()) / 6)  # every task counts once
    assert scores.to_dict() == {"categories": scores.categories, "overall": scores.overall}
    with pytest.raises(ValueError, match="without a category"):
        suite_scores({"x": 1.0}, {})


class _Result:
    """Just what the suite report reads from an EvalResult."""

    def __init__(self, task, accuracy):
        self.task, self.accuracy = task, accuracy


def test_suite_report_json_fields_and_differences():
    category_of = {"a": "math", "b": "math", "c": "code"}
    before = [_Result("a", 0.0), _Result("b", 0.5), _Result("c", 0.25)]
    after = [_Result("a", 0.5), _Result("b", 0.5), _Result("c", 0.0)]
    report = SuiteReport.from_results("s", category_of, before, after)
    fields = report.json_fields()
    assert fields["suite"] == "s"
    assert fields["categories"] == {"math": 0.25, "code": 0.25}
    assert fields["overall"] == pytest.approx(0.25)
    assert fields["difference"]["categories"] == {"math": 0.25, "code": -0.25}
    assert fields["difference"]["overall"] == pytest.approx(1 / 3 - 0.25)
    table = category_comparison_table(report.scores, report.compare)
    assert "| math | 0.250 | 0.500 | +0.250 |" in table and "| code | 0.250 | 0.000 | -0.250 |" in table
    assert "| **overall** | 0.250 | 0.333 | **+0.083** |" in table


def test_report_json_and_markdown_carry_the_suite(eval_model_and_tok):
    from gspo.evaluation import evaluate_task
    from tests.helpers_tiny import ParityTask

    model, tok = eval_model_and_tok
    task = ParityTask(rows=4)
    results = []
    for label in ("p1", "p2"):
        r = evaluate_task(model, tok, task, task.load("test"), max_new_tokens=2)
        r.task = label
        results.append(r)
    report = SuiteReport.from_results("s", {"p1": "math", "p2": "reasoning"}, results, results)
    doc = report_json(results, model="m", compare=results, compare_model="m", suite=report)
    assert doc["suite"] == "s" and doc["tasks"]["p1"]["category"] == "math"
    assert doc["categories"] == {"math": results[0].accuracy, "reasoning": results[1].accuracy}
    assert doc["overall"] == pytest.approx((results[0].accuracy + results[1].accuracy) / 2)
    assert doc["compare"]["categories"] == doc["categories"] and doc["difference"]["overall"] == 0
    text = report_markdown(results, model="m", compare=results, compare_model="m", suite=report)
    assert "| category | tasks | accuracy |" in text and "| math | p1 |" in text
    assert "| category | accuracy (A) | accuracy (B) | Δ accuracy |" in text


def test_the_shipped_core_suite():
    core = get_suite("core")
    by_task = {t.task: t for t in core.tasks}
    assert set(by_task) == {
        "gsm8k",
        "math500",
        "humaneval",
        "mbpp",
        "arc_easy",
        "arc_challenge",
        "hellaswag",
        "reasoning_gym",
    }
    assert {t.category for t in core.tasks} == set(CATEGORIES)
    assert by_task["gsm8k"].category == by_task["math500"].category == "math"
    assert by_task["humaneval"].category == by_task["mbpp"].category == "code"
    assert all(t.limit is not None and t.limit <= 100 for t in core.tasks)
    assert by_task["hellaswag"].split == "validation"


def test_every_core_task_loads_its_rows_offline():
    core = get_suite("core")
    for entry, task in zip(core.tasks, build_tasks(core)):
        rows = task.load(entry.split, path=entry.data_path, limit=2)
        assert len(rows) == 2, entry.name
