"""The ``gspo`` command: help, config errors before any model loads, and a real train + plot run."""

import json

import pytest

from gspo.cli.main import main
from tests.helpers_cli import TINY_RUN, run_gspo, save_tiny_model


def test_help_lists_subcommands_and_explains_options(capsys):
    assert main([]) == 0
    assert "train" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--group-size" in out and "responses sampled per prompt" in out and "--resume" in out


def test_bad_value_is_reported_before_any_model_loads(capsys):
    assert main(["train", "--group-size", "1", "--model", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "group_size" in err and ">= 2" in err


def test_missing_critic_path_and_bad_pairs_file_are_reported_before_any_model_loads(capsys, tmp_path):
    assert main(["train", "--algorithm", "ppo", "--critic-path", str(tmp_path / "nope"), "--model", "/x"]) == 2
    assert "critic_path: must be an existing model folder" in capsys.readouterr().err
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "1+1=", "chosen": "2", "rejected": "3"}\n{"prompt": "2+2=", "chosen": "4"}\n')
    assert main(["dpo", "--data", str(pairs), "--model", "/nonexistent"]) == 2
    assert f"{pairs}:2: missing column 'rejected'" in capsys.readouterr().err


def test_unknown_task_is_a_clear_error(capsys):
    assert main(["train", "--task", "nope", "--model", "/nonexistent"]) == 2
    assert "unknown task" in capsys.readouterr().err


def test_print_config(capsys):
    assert main(["train", "--print-config", "--max-steps", "3"]) == 0
    assert "max_steps: 3" in capsys.readouterr().out


def test_train_then_plot_through_a_subprocess(tmp_path):
    model_dir = save_tiny_model(tmp_path / "model", chat=False)
    out = tmp_path / "run"
    res = run_gspo("train", "--model", model_dir, *TINY_RUN, "--output-dir", out, "--progress", "false",
                   "--save-steps", "1")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and 0.0 <= summary["eval_before"] <= 1.0 and 0.0 <= summary["eval_after"] <= 1.0
    assert (out / "final" / "manifest.json").is_file() and (out / "checkpoints").is_dir()
    res = run_gspo("train", "--model", model_dir, *TINY_RUN, "--max-steps", "3", "--output-dir", out,
                   "--progress", "false", "--resume", "true")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed from" in res.stderr
    assert json.loads((out / "summary.json").read_text())["steps"] == 3
    res = run_gspo("plot", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    png = out / "training_curves.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


def test_plot_without_metrics_is_a_clear_error(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err
