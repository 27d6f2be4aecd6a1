"""``gspo eval --environment``: one greedy episode per row, the table and eval.json, errors before loading."""

import json

from tests.helpers_cli import run_gspo


def test_eval_on_the_guessing_game_and_the_python_tool_with_a_task(tiny_dir, tmp_path):
    out = tmp_path / "guess"
    result = run_gspo(
        "eval", "--environment", "guess", "--environment-options", '{"low": 1, "high": 5}', "--model", tiny_dir,
        "--compare", tiny_dir, "--limit", "4", "--max-new-tokens", "30", "--max-turn-tokens", "3", "--output", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| model (guess) | solved | tool_call_frac | turns_mean |" in result.stdout
    saved = json.loads((out / "eval.json").read_text())
    assert saved["settings"]["environment"] == "guess"
    ra, rb = saved["results"]
    assert len(ra["episodes"]) == 4 and ra["metrics"] == rb["metrics"]  # the same model twice, greedy
    assert all(1 <= len(e["replies"]) <= 4 for e in ra["episodes"])

    out = tmp_path / "python"
    result = run_gspo(
        "eval", "--environment", "python", "--task", "addition", "--model", tiny_dir, "--limit", "3",
        "--max-new-tokens", "40", "--max-turn-tokens", "8", "--max-turns", "2", "--output", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (r,) = json.loads((out / "eval.json").read_text())["results"]
    assert len(r["episodes"]) == 3 and 0 <= r["metrics"]["solved"] <= 1


def test_a_bad_environment_answers_before_any_model_loads(tmp_path):
    result = run_gspo("eval", "--environment", "guess", "--environment-options", '{"hue": 1}', "--model", "nowhere")
    assert result.returncode != 0 and "environment_options" in result.stderr and "nowhere" not in result.stderr
