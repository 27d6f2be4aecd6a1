"""Tests of ``gspo eval`` through ``gspo.cli.main.main`` on tiny models saved to disk."""

from __future__ import annotations

import json

import pytest

from gspo.cli.main import main
from gspo.tasks import TASK_REGISTRY


@pytest.fixture(autouse=True)
def parity_task(monkeypatch):
    monkeypatch.setitem(TASK_REGISTRY, "parity", "tests.helpers_tiny:ParityTask")


def _eval(*argv):
    return main(["eval", "--device", "cpu", *argv])


def test_eval_writes_json_and_markdown_and_prints_the_table(saved_tiny_models, tmp_path, capsys):
    out = tmp_path / "out"
    code = _eval("--model", saved_tiny_models["chat"], "--task", "parity", "--limit", "5", "--output", str(out))
    assert code == 0
    printed = capsys.readouterr().out
    assert "| task | n | accuracy | pass@1 | pass@k | seconds |" in printed
    doc = json.loads((out / "eval.json").read_text())
    task = doc["tasks"]["parity"]
    assert task["n"] == 5 and task["samples"] == 1 and task["settings"]["greedy"] is True
    assert doc["settings"]["chat"] == "auto" and doc["model"] == saved_tiny_models["chat"]
    assert (out / "eval.md").read_text().startswith("# Evaluation of")


def test_eval_samples_and_compare_same_model_gives_zero_delta(saved_tiny_models, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = _eval(
        "--model",
        saved_tiny_models["plain"],
        "--compare",
        saved_tiny_models["plain"],
        "--task",
        "parity",
        "--limit",
        "4",
        "--samples",
        "3",
        "--temperature",
        "1.0",
        "--max-new-tokens",
        "3",
        "--batch-size",
        "5",
        "--seed",
        "7",
        "--output",
        str(out),
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| task | n | accuracy | pass@1 | pass@3 | seconds |" in printed
    assert "Δ accuracy" in printed and "+0.000" in printed
    doc = json.loads((out / "eval.json").read_text())
    a, b = doc["tasks"]["parity"], doc["compare"]["tasks"]["parity"]
    assert a["rows"] == b["rows"] and set(a) >= {"pass@1", "pass@3"}
    assert all(len(c) <= 3 for r in a["rows"] for c in r["completions"])


def test_eval_data_path_and_chat_no(saved_tiny_models, tmp_path):
    data = tmp_path / "prompts.txt"
    data.write_text("1+1=\n2+2=\n3+3=\n")
    out = tmp_path / "out"
    code = _eval(
        "--model",
        saved_tiny_models["chat"],
        "--task",
        "parity",
        "--data-path",
        str(data),
        "--chat",
        "no",
        "--output",
        str(out),
    )
    assert code == 0
    rows = json.loads((out / "eval.json").read_text())["tasks"]["parity"]["rows"]
    assert len(rows) == 3


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--task", "no_such_task"], "unknown task"),
        (["--task", "parity,parity", "--data-path", "x"], "one task"),
        (["--task", "parity", "--samples", "2", "--temperature", "0"], "greedy"),
        (["--task", "parity", "--batch-size", "0"], "--batch-size"),
    ],
)
def test_eval_argument_errors_are_clear(saved_tiny_models, tmp_path, capsys, argv, message):
    code = _eval("--model", saved_tiny_models["plain"], "--output", str(tmp_path), *argv)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_eval_missing_model_and_chat_without_template(saved_tiny_models, tmp_path, capsys):
    assert _eval("--model", str(tmp_path / "missing"), "--task", "parity", "--output", str(tmp_path)) == 2
    assert "cannot load model" in capsys.readouterr().err
    code = _eval("--model", saved_tiny_models["plain"], "--task", "parity", "--chat", "yes", "--output", str(tmp_path))
    assert code == 2
    assert "no chat template" in capsys.readouterr().err


def test_eval_embedded_model_on_addition(tmp_path, capsys):
    embedded = pytest.importorskip("gspo.models.embedded")
    if not (embedded.embedded_model_path() / "config.json").exists():
        pytest.skip("the embedded model's files are not built yet")
    out = tmp_path / "emb"
    assert _eval("--model", "embedded", "--task", "addition", "--limit", "8", "--output", str(out)) == 0
    doc = json.loads((out / "eval.json").read_text())
    assert doc["tasks"]["addition"]["n"] == 8
    assert "| addition | 8 |" in capsys.readouterr().out
