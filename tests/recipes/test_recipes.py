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


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny"), chat=True)


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
