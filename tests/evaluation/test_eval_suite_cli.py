"""``gspo eval --suite`` and ``--task-options`` end to end, on tiny models saved to disk (no download)."""

from __future__ import annotations

import json

import pytest

from gspo.cli.main import main
from gspo.tasks import TASK_REGISTRY

SUITES = """
tiny:
  tasks:
    - {name: parity, category: reasoning, limit: 5, options: {rows: 8}}
    - {name: sums, task: addition, category: math, limit: 4, max_new_tokens: 3}
    - name: arithmetic
      task: reasoning_gym
      category: reasoning
      limit: 3
      options: {dataset: basic_arithmetic, max_terms: 2, max_digits: 1, max_new_tokens: 3, test_size: 20}
"""


@pytest.fixture(autouse=True)
def parity_task(monkeypatch):
    monkeypatch.setitem(TASK_REGISTRY, "parity", "tests.helpers_tiny:ParityTask")


@pytest.fixture
def suites_file(tmp_path):
    path = tmp_path / "suites.yaml"
    path.write_text(SUITES)
    return str(path)


def _eval(*argv):
    return main(["eval", "--device", "cpu", *argv])


def _check_means(doc: dict, part: dict) -> None:
    """``part``'s categories and overall are the means of its per-task accuracies."""
    by_category: dict[str, list[float]] = {}
    for name, task in part["tasks"].items():
        by_category.setdefault(doc["tasks"][name]["category"], []).append(task["accuracy"])
    assert part["categories"] == pytest.approx({c: sum(v) / len(v) for c, v in by_category.items()})
    accuracies = [t["accuracy"] for t in part["tasks"].values()]
    assert part["overall"] == pytest.approx(sum(accuracies) / len(accuracies))


def test_suite_prints_rows_categories_and_overall_and_writes_them(saved_tiny_models, suites_file, tmp_path, capsys):
    out = tmp_path / "out"
    code = _eval(
        "--model", saved_tiny_models["chat"], "--suite", "tiny", "--suite-file", suites_file, "--output", str(out)
    )
    assert code == 0
    printed = capsys.readouterr().out
    for row in (
        "| parity | 5 |",
        "| sums | 4 |",
        "| arithmetic | 3 |",
        "| category | tasks | accuracy |",
        "| reasoning | parity, arithmetic |",
        "| math | sums |",
        "| **overall** | mean of 3 tasks |",
    ):
        assert row in printed
    doc = json.loads((out / "eval.json").read_text())
    assert doc["suite"] == "tiny" and set(doc["categories"]) == {"math", "reasoning"}
    assert {n: t["n"] for n, t in doc["tasks"].items()} == {"parity": 5, "sums": 4, "arithmetic": 3}
    assert doc["tasks"]["sums"]["settings"]["max_new_tokens"] == 3
    assert doc["tasks"]["arithmetic"]["settings"]["max_new_tokens"] == 3  # the task option's budget
    assert doc["tasks"]["arithmetic"]["rows"][0]["id"].startswith("basic_arithmetic/test/")
    _check_means(doc, doc)
    assert [t["name"] for t in doc["settings"]["suite_tasks"]] == ["parity", "sums", "arithmetic"]


def test_suite_limit_caps_every_task_and_compare_shows_differences(saved_tiny_models, suites_file, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = _eval(
        "--model",
        saved_tiny_models["chat"],
        "--compare",
        saved_tiny_models["plain"],
        "--suite",
        "tiny",
        "--suite-file",
        suites_file,
        "--limit",
        "2",
        "--output",
        str(out),
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| category | accuracy (A) | accuracy (B) | Δ accuracy |" in printed and "Δ accuracy" in printed
    doc = json.loads((out / "eval.json").read_text())
    assert {t["n"] for t in doc["tasks"].values()} == {2}
    assert {t["n"] for t in doc["compare"]["tasks"].values()} == {2}
    _check_means(doc, doc)
    _check_means(doc, doc["compare"])
    diff = doc["difference"]
    assert diff["overall"] == pytest.approx(doc["compare"]["overall"] - doc["overall"])
    for category, value in doc["categories"].items():
        assert diff["categories"][category] == pytest.approx(doc["compare"]["categories"][category] - value)
    md = (out / "eval.md").read_text()
    assert f"| **overall** | {doc['overall']:.3f} | {doc['compare']['overall']:.3f} |" in md


def test_the_shipped_core_suite_runs_end_to_end_with_a_tiny_model(saved_tiny_models, tmp_path, capsys, monkeypatch):
    # every core task, one row each, two new tokens: the plumbing (data, prompts, scorers incl. the sandbox)
    out = tmp_path / "core"
    code = _eval(
        "--model",
        saved_tiny_models["chat"],
        "--suite",
        "core",
        "--limit",
        "1",
        "--max-new-tokens",
        "2",
        "--output",
        str(out),
    )
    assert code == 0
    doc = json.loads((out / "eval.json").read_text())
    assert len(doc["tasks"]) == 8 and set(doc["categories"]) == {"math", "code", "reasoning"}
    _check_means(doc, doc)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--suite", "nope"], "no suite 'nope'"),
        (["--suite", "core", "--task", "gsm8k"], "--task cannot be combined with --suite"),
        (["--suite", "core", "--split", "train"], "--split cannot be combined with --suite"),
        (["--suite-file", "x.yaml"], "--suite-file needs --suite"),
        (
            ["--task", "reasoning_gym", "--task-options", '{"dataset": "basic_arithmetic", "max_termz": 2}'],
            "unknown option(s) ['max_termz']",
        ),
        (["--task", "reasoning_gym", "--task-options", '{"dataset": "no_such_dataset"}'], "'no_such_dataset'"),
        (["--task", "parity,addition", "--task-options", '{"rows": 3}'], "maps each task name"),
        (["--task", "parity", "--task-options", "[1]"], "task_options: must be a mapping"),
    ],
)
def test_bad_suites_and_options_fail_before_any_model_loads(tmp_path, capsys, monkeypatch, argv, message):
    import gspo.cli.eval as eval_cli

    def no_model(*args, **kwargs):  # pragma: no cover - reaching it is the failure
        raise AssertionError("a model was loaded before the suite / options were checked")

    monkeypatch.setattr(eval_cli, "_load_model", no_model)
    code = _eval("--model", "whatever", "--output", str(tmp_path), *argv)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_bad_suite_file_names_the_task(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("s: {tasks: [{name: parity, category: knowledge}]}\n")
    assert _eval("--model", "whatever", "--suite", "s", "--suite-file", str(path), "--output", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "task 'parity'" in err and "'category' must be one of" in err


def test_task_options_reach_the_task(saved_tiny_models, tmp_path):
    out = tmp_path / "rg"
    code = _eval(
        "--model",
        saved_tiny_models["plain"],
        "--task",
        "reasoning_gym",
        "--task-options",
        '{"dataset": "spell_backward", "max_new_tokens": 2, "test_size": 10}',
        "--limit",
        "3",
        "--output",
        str(out),
    )
    assert code == 0
    doc = json.loads((out / "eval.json").read_text())
    task = doc["tasks"]["reasoning_gym"]
    assert task["n"] == 3 and task["settings"]["max_new_tokens"] == 2
    assert task["rows"][0]["id"].startswith("spell_backward/test/")
    several = tmp_path / "several"
    code = _eval(
        "--model",
        saved_tiny_models["plain"],
        "--task",
        "parity,addition",
        "--task-options",
        '{"parity": {"rows": 2}}',
        "--output",
        str(several),
    )
    assert code == 0
    assert json.loads((several / "eval.json").read_text())["tasks"]["parity"]["n"] == 2
