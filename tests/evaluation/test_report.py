"""Tests of gspo.evaluation.report: Markdown table, JSON document, comparison."""

from __future__ import annotations

import json

from gspo.evaluation import (
    EvalResult,
    comparison_table,
    markdown_table,
    report_json,
    report_markdown,
    results_from_json,
    write_report,
)


def _result(task="addition", n=4, samples=1, accuracy=0.5, pass_k=None, seconds=1.25):
    return EvalResult(
        task=task,
        n=n,
        samples=samples,
        accuracy=accuracy,
        pass_at_k=pass_k or {},
        scores=[[1.0] * samples for _ in range(n)],
        completions=[["7"] * samples for _ in range(n)],
        ids=[f"r{i}" for i in range(n)],
        seconds=seconds,
        generation_seconds=seconds - 0.25,
        scoring_seconds=0.25,
        prompt_tokens=10 * n,
        completion_tokens=3 * n * samples,
        finished_fraction=1.0,
        settings={"seed": 0},
    )


def test_markdown_table_single_sample():
    assert markdown_table([_result()]).splitlines() == [
        "| task | n | accuracy | pass@1 | pass@k | seconds |",
        "|---|---:|---:|---:|---:|---:|",
        "| addition | 4 | 0.500 | - | - | 1.2 |",
    ]


def test_markdown_table_names_k_when_uniform_and_per_cell_when_mixed():
    r8 = _result(task="gsm8k", samples=8, accuracy=0.25, pass_k={1: 0.3, 8: 0.75})
    lines = markdown_table([_result(), r8]).splitlines()
    assert lines[0] == "| task | n | accuracy | pass@1 | pass@8 | seconds |"
    assert lines[3] == "| gsm8k | 4 | 0.250 | 0.300 | 0.750 | 1.2 |"
    r4 = _result(task="math", samples=4, pass_k={1: 0.5, 4: 0.9})
    lines = markdown_table([r8, r4]).splitlines()
    assert lines[0].endswith("| pass@k | seconds |")
    assert "| 0.750 (k=8) |" in lines[2] and "| 0.900 (k=4) |" in lines[3]


def test_comparison_table_deltas():
    a = [_result(accuracy=0.25, samples=4, pass_k={1: 0.3, 4: 0.5}), _result(task="only_a")]
    b = [_result(accuracy=0.75, samples=4, pass_k={1: 0.6, 4: 0.8})]
    lines = comparison_table(a, b, name_a="base", name_b="tuned").splitlines()
    assert lines[0] == (
        "| task | n | accuracy (base) | accuracy (tuned) | Δ accuracy | pass@4 (base) | pass@4 (tuned) | Δ pass@4 |"
    )
    assert lines[2] == "| addition | 4 | 0.250 | 0.750 | +0.500 | 0.500 | 0.800 | +0.300 |"
    assert len(lines) == 3  # tasks missing from one side are left out


def test_report_json_and_round_trip():
    results = [_result(), _result(task="gsm8k", samples=2, pass_k={1: 0.5, 2: 0.75})]
    doc = report_json(results, model="m", settings={"seed": 3}, compare=[_result()], compare_model="m2")
    doc = json.loads(json.dumps(doc))  # JSON-serialisable
    assert doc["model"] == "m" and doc["settings"] == {"seed": 3}
    g = doc["tasks"]["gsm8k"]
    assert (g["n"], g["samples"], g["accuracy"], g["pass@1"], g["pass@2"]) == (4, 2, 0.5, 0.5, 0.75)
    assert g["rows"][0] == {"id": "r0", "scores": [1.0, 1.0], "completions": ["7", "7"]}
    assert doc["compare"]["model"] == "m2" and list(doc["compare"]["tasks"]) == ["addition"]
    assert results_from_json(doc) == results


def test_write_report(tmp_path):
    results, other = [_result()], [_result(accuracy=1.0)]
    json_path, md_path = write_report(tmp_path / "out", results, model="m", compare=other, compare_model="m2")
    assert json.loads(json_path.read_text())["compare"]["tasks"]["addition"]["accuracy"] == 1.0
    md = md_path.read_text()
    assert md == report_markdown(results, model="m", compare=other, compare_model="m2")
    assert md.startswith("# Evaluation of `m`") and "| addition | 4 | 0.500 | 1.000 | +0.500 |" in md
