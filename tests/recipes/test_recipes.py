"""Every shipped recipe loads and validates, and its settings train 2 steps with a tiny model in
place of SmolLM2 (same task, options, splits, data source, algorithm and optimiser settings)."""

import pytest

from gspo.cli.main import main
from gspo.config import load_config
from tests.helpers_cli import ROOT, save_tiny_model

RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


def test_recipes_are_listed_in_their_readme():
    readme = (ROOT / "recipes" / "README.md").read_text()
    assert RECIPES and all(f"recipes/{r.name}" in readme for r in RECIPES)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates(recipe, capsys):
    assert main(["train", "--config", str(recipe), "--print-config", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "seed: 3" in out and "model: smollm2" in out


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_settings_train_two_steps(recipe, tiny_dir, tmp_path, monkeypatch):
    import json

    from gspo.trainer.build import build_trainer

    monkeypatch.chdir(ROOT)  # recipes name data paths relative to the repository
    overrides = {
        "model": str(tiny_dir),
        "max_steps": 2,
        "prompts_per_step": 2,
        "eval_limit": 4,
        "num_threads": 1,
        "output_dir": str(tmp_path / "run"),
        "progress": False,
    }
    config = load_config(str(recipe), overrides)
    summary = build_trainer(config).train()
    assert summary["steps"] == 2
    assert summary["eval_before"] is not None and summary["eval_after"] is not None
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["task"] == config.task


def test_summarize_reports_mean_and_std_over_seeds(tmp_path, capsys):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("summarize", ROOT / "recipes" / "summarize.py")
    summarize = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summarize)
    for seed, (before, after) in enumerate([(0.1, 0.3), (0.1, 0.5)]):
        run = tmp_path / "runs" / f"seed{seed}"
        run.mkdir(parents=True)
        summary = {"eval_before": before, "eval_after": after, "steps": 2, "train_seconds": 120.0}
        (run / "summary.json").write_text(json.dumps(summary))
        rows = [{"step": 0, "eval/accuracy": before}, {"step": 1, "reward/mean": 0.2, "entropy": 1.0},
                {"step": 2, "reward/mean": 0.4, "entropy": 0.5, "eval/accuracy": after}]  # fmt: skip
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert summarize.main([str(tmp_path / "runs"), "--out", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "| seed0 | 0.100 | 0.300 | +0.200 | 2 | 2.0 min |" in out
    assert "| mean ± std (2 seeds) | 0.100 ± 0.000 | 0.400 ± 0.141 | +0.300 ± 0.141 |" in out
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
