"""``gspo compare``: matched runs over seeds, the report's fields and figures, the collapse criterion,
reuse of finished runs, and argument errors. A tiny random model saved to tmp_path, the addition task."""

from __future__ import annotations

import json
import time

import pytest

from gspo.config import ConfigError, GSPOConfig
from gspo.experiments.compare import collapse_stats, parse_algos, parse_seeds, run_comparison
from tests.helpers_tiny import tiny_model_and_tokenizer

PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model, tok = tiny_model_and_tokenizer(chat=False, seed=5)
    path = tmp_path_factory.mktemp("model")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _base(model_dir, out, **overrides):
    values = dict(
        model=model_dir,
        task="addition",
        max_steps=3,
        prompts_per_step=4,
        group_size=4,
        max_new_tokens=4,
        num_minibatches=2,
        learning_rate=5e-2,
        eval_limit=8,
        progress=False,
        num_threads=1,
        # The task's exact-match reward is 0 for a random model; a dense toy reward gives the runs signal.
        rewards=["task", "tests.trainer.conftest:count_a_reward"],
        output_dir=str(out),
        eval_every=0,
    )
    values.update(overrides)
    return GSPOConfig(**values)


@pytest.fixture(scope="module")
def report(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    return run_comparison(_base(model_dir, out), ["gspo", "grpo"], [0, 1], out), out


def test_report_has_every_field_and_the_figures(report):
    rep, out = report
    assert json.loads((out / "report.json").read_text())["algorithms_order"] == ["gspo", "grpo"]
    for name in ("reward_curves.png", "eval_accuracy.png", "clip_fraction.png"):
        assert (out / name).read_bytes()[:4] == PNG, name
    assert rep["settings"]["eval_every"] == 1  # set so that held-out curves exist
    assert rep["settings"]["completions_per_run"] == 3 * 4 * 4
    for algo, clip in (("gspo", [3e-4, 4e-4]), ("grpo", [0.2, 0.27])):
        a = rep["algorithms"][algo]
        assert a["clip_range"] == clip  # each algorithm's own paper clip range
        assert a["seeds"] == [0, 1]
        for key in (
            "eval_before",
            "eval_after",
            "eval_auc",
            "best_eval",
            "final_reward",
            "mean_reward",
            "clip_frac",
            "wall_seconds",
            "train_seconds",
        ):
            assert a[key]["n"] == 2 and a[key]["mean"] is not None and a[key]["std"] >= 0, (algo, key)
        assert 0 <= a["eval_after"]["mean"] <= 1
        assert a["collapses"] in (0, 1, 2) and a["wall_seconds_total"] > 0
        assert a["reward_curve"]["steps"] == [1, 2, 3] and len(a["reward_curve"]["min"]) == 3
        assert a["eval_curve"]["steps"] == [0, 1, 2, 3]  # before, every step, after
        assert a["clip_frac_curve"]["steps"] == [1, 2, 3]
    assert rep["algorithms"]["gspo"]["clip_frac"]["mean"] > 0
    assert rep["total_wall_seconds"] > 0 and "clip_frac_gspo_over_grpo" in rep["headline"]
    md = (out / "report.md").read_text()
    assert "| gspo | 0.0003 / 0.0004 |" in md and "| grpo | 0.2 / 0.27 |" in md
    assert "collapse" in md and "![eval_accuracy](eval_accuracy.png)" in md


def test_runs_are_matched_and_have_their_own_folders(report):
    rep, out = report
    runs = {r["name"]: r for r in rep["runs"]}
    assert list(runs) == ["gspo-seed0", "grpo-seed0", "gspo-seed1", "grpo-seed1"]  # seed-major
    for name, r in runs.items():
        assert r["run_dir"] == f"runs/{name}"
        assert (out / r["run_dir"] / "metrics.jsonl").is_file() and (out / r["run_dir"] / "final").is_dir()
        assert json.loads((out / r["run_dir"] / "config.json").read_text())["algorithm"] == r["algorithm"]
    for seed in (0, 1):
        g, r = runs[f"gspo-seed{seed}"], runs[f"grpo-seed{seed}"]
        # same start weights, prompts and sampling generator: the first rollout is identical
        assert g["eval_before"] == r["eval_before"]
        assert g["reward_curve"]["values"][0] == r["reward_curve"]["values"][0]
    assert runs["gspo-seed0"]["reward_curve"]["values"][0] != runs["gspo-seed1"]["reward_curve"]["values"][0]


def test_finished_runs_are_reused(report):
    rep, out = report
    base = GSPOConfig(**rep["settings"]["base_config"])
    start = time.perf_counter()
    again = run_comparison(base, ["gspo", "grpo"], [0, 1], out, reuse=True, plots=False)
    assert all(r["reused"] for r in again["runs"]) and time.perf_counter() - start < 20
    assert again["algorithms"]["gspo"]["eval_after"] == rep["algorithms"]["gspo"]["eval_after"]


def test_cli_with_sft_baseline(model_dir, tmp_path, capsys):
    from gspo.cli.main import main

    out = tmp_path / "cli"
    code = main(
        [
            "compare",
            "--algos",
            "gspo,sft",
            "--seeds",
            "1",
            "--model",
            model_dir,
            "--max-steps",
            "2",
            "--prompts-per-step",
            "4",
            "--group-size",
            "2",
            "--max-new-tokens",
            "4",
            "--eval-limit",
            "4",
            "--num-minibatches",
            "2",
            "--progress",
            "false",
            "--num-threads",
            "1",
            "--output-dir",
            str(out),
            "--no-plots",
        ]
    )
    assert code == 0
    assert "report:" in capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text())
    sft = rep["algorithms"]["sft"]
    assert sft["eval_curve"]["steps"] == [0, 1, 2] and "clip_frac" not in sft
    run = next(r for r in rep["runs"] if r["algorithm"] == "sft")
    assert run["examples_seen"] == 2 * 4 and run["reference_column"] == "answer"
    assert rep["settings"]["sft_config"]["batch_size"] == 4 and rep["settings"]["sft_config"]["max_steps"] == 2


def test_the_seeds_baselines_in_one_comparison(model_dir, tmp_path):
    """gspo, grpo, ppo, dpo and sft: matched runs, every one in report.md / report.json."""
    out = tmp_path / "five"
    algos = ["gspo", "grpo", "ppo", "dpo", "sft"]
    rep = run_comparison(_base(model_dir, out, max_steps=2), algos, [0], out, plots=False)
    assert rep["algorithms_order"] == algos and [r["algorithm"] for r in rep["runs"]] == algos
    runs = {r["algorithm"]: r for r in rep["runs"]}
    for algo in ("gspo", "grpo", "ppo", "dpo"):  # the same first rollout: same weights, prompts and sampler seed
        assert runs[algo]["reward_curve"]["values"][0] == runs["gspo"]["reward_curve"]["values"][0], algo
        assert runs[algo]["completions"] == runs["gspo"]["completions"] and runs[algo]["eval_after"] is not None
    assert runs["ppo"]["clip_range"] == [0.2, 0.2] and runs["ppo"]["clip_frac_mean"] is not None
    assert runs["dpo"]["clip_range"] == [None, None] and runs["dpo"]["clip_frac_mean"] is None  # DPO clips nothing
    assert (out / "runs" / "ppo-seed0" / "final" / "critic" / "critic.safetensors").is_file()
    md = (out / "report.md").read_text()
    for algo in algos:
        assert f"| {algo} |" in md, algo
    assert "| ppo | 0.2 / 0.2 |" in md and "| dpo | — |" in md


def test_collapse_criterion():
    rising = [0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.9, 0.9]
    assert not collapse_stats(rising, window=3)["collapsed"]
    recovered = [0.2, 0.8, 0.9, 0.9, 0.1, 0.1, 0.1, 0.8, 0.9, 0.9, 0.9]
    assert not collapse_stats(recovered, window=3)["collapsed"]  # fell, but recovered by the end
    fell = [0.2, 0.6, 0.9, 0.9, 0.9, 0.5, 0.3, 0.2, 0.2]
    stats = collapse_stats(fell, window=3)
    assert stats["collapsed"] and stats["peak"] == pytest.approx(0.9) and stats["final"] == pytest.approx(0.7 / 3)
    assert not collapse_stats(fell, window=3, drop=0.8)["collapsed"]
    assert collapse_stats([], window=3)["collapsed"] is False


def test_argument_parsing_and_errors(capsys):
    assert parse_algos("GSPO, grpo,sft") == ["gspo", "grpo", "sft"]
    assert parse_seeds("3", base_seed=10) == [10, 11, 12] and parse_seeds("4,2") == [4, 2]
    for bad in ("gspo,trpo", "gspo,gspo", ""):
        with pytest.raises(ConfigError, match="algos"):
            parse_algos(bad)
    for bad in ("0", "1,1", "x"):
        with pytest.raises(ConfigError, match="seeds"):
            parse_seeds(bad)
    from gspo.cli.main import main

    assert main(["compare", "--algos", "gspo,trpo", "--model", "/nonexistent"]) == 2
    assert "algos" in capsys.readouterr().err
    assert main(["compare", "--group-size", "1", "--model", "/nonexistent"]) == 2
    assert "group_size" in capsys.readouterr().err
