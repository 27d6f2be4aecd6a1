"""CLI conventions: switches as bare flags, no deprecation warnings from our calls, readable output in
a log file, ``report_to`` trackers, launches that cannot work here refused up front."""

import json

import pytest

from gspo.cli.main import main
from tests.helpers_cli import ROOT, TINY_RUN, run_gspo, save_tiny_model


def _gspo(*args, env_extra=None):
    return run_gspo(*args, env_extra=env_extra, strict=True)


def _train(model_dir, out, *extra, env_extra=None):
    """The tiny 2-step ``gspo train`` into ``out``, warnings as errors; ``extra`` options last."""
    return _gspo("train", "--model", model_dir, *TINY_RUN, "--num-threads", "1", "--output-dir", out, *extra,
                 env_extra=env_extra)  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"), chat=False)


def _clean(res):
    """No warning of ours, no carriage-return bars: the output of a run read from a log file."""
    assert res.returncode == 0, res.stderr[-3000:]
    text = res.stdout + res.stderr
    assert "deprecated" not in text.lower() and "FutureWarning" not in text and "DeprecationWarning" not in text
    assert "\r" not in text  # captured output is not a terminal: plain lines, no tqdm redraws
    return text


# ------------------------------------------------------------------ switches
@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], {"resume": "false", "progress": "true", "chat": "auto"}),
        (["--resume"], {"resume": "true"}),
        (["--resume", "true"], {"resume": "true"}),
        (["--resume=yes"], {"resume": "true"}),
        (["--no-resume"], {"resume": "false"}),
        (["--resume", "--max-steps", "3"], {"resume": "true", "max_steps": "3"}),
        (["--no-progress", "--share-prompts"], {"progress": "false", "share_prompts": "true"}),
        (["--no_share_prompts"], {"share_prompts": "false"}),
        (["--chat"], {"chat": "'yes'"}),
        (["--no-chat"], {"chat": "'no'"}),
        (["--chat", "auto"], {"chat": "auto"}),
    ],
)
def test_switches_work_bare_valued_and_negated(argv, expected, capsys):
    assert main(["train", *argv, "--print-config"]) == 0
    printed = dict(
        line.split(": ", 1)
        for line in capsys.readouterr().out.splitlines()
        if not line.startswith("#") and ": " in line
    )
    for key, value in expected.items():
        assert printed[key] == value, (argv, key)


def test_wrong_switch_value_names_the_field(capsys):
    assert main(["train", "--resume", "maybe", "--model", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "resume" in err and "true or false" in err


def test_sft_switches_too(capsys):
    assert main(["sft", "--no-progress", "--print-config"]) == 0
    assert "progress: false" in capsys.readouterr().out


# ------------------------------------------------------------------ warnings and output
def test_train_resume_and_eval_raise_no_deprecation_warning(model_dir, tmp_path):
    out = tmp_path / "run"
    text = _clean(_train(model_dir, out, "--save-steps", "1"))
    assert "gspo step 1/2" in text and "gspo step 2/2" in text  # plain progress lines
    text = _clean(_train(model_dir, out, "--max-steps", "3", "--resume"))
    assert "resumed from" in text and json.loads((out / "summary.json").read_text())["steps"] == 3
    _clean(_gspo("eval", "--model", out / "final", "--task", "addition", "--limit", "8", "--output", tmp_path / "eval"))


def test_sft_and_compare_raise_no_deprecation_warning(model_dir, tmp_path):
    _clean(
        _gspo(
            "sft",
            "--model",
            model_dir,
            "--task",
            "addition",
            "--max-steps",
            "2",
            "--eval-limit",
            "4",
            "--output-dir",
            tmp_path / "sft",
        )
    )
    _clean(
        _gspo(
            "compare",
            "--algos",
            "gspo,grpo",
            "--seeds",
            "1",
            "--model",
            model_dir,
            *TINY_RUN,
            "--num-threads",
            "1",
            "--num-minibatches",
            "2",
            "--output-dir",
            tmp_path / "cmp",
            "--no-plots",
        )
    )


# ------------------------------------------------------------------ report_to
def test_report_to_tensorboard_writes_event_files(model_dir, tmp_path):
    out = tmp_path / "tb"
    _clean(_train(model_dir, out, "--report-to", "tensorboard"))
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("reward/mean")] == [1, 2]
    assert len((out / "metrics.jsonl").read_text().splitlines()) >= 2  # still the source of truth


def test_report_to_wandb_offline_and_trackio(model_dir, tmp_path):
    out = tmp_path / "trackers"
    env = {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "TRACKIO_DIR": str(tmp_path / "trackio"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
    }
    res = _train(model_dir, out, "--report-to", "wandb,trackio", env_extra=env)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert (out / "wandb_run_id").read_text().strip() in runs[0].name
    assert any((tmp_path / "trackio").rglob("*.db"))


@pytest.mark.parametrize(
    "value, message",
    [
        ("mlflow", "must list trackers among"),
        ("none,wandb", "'none' cannot be combined"),
    ],
)
def test_report_to_bad_names(value, message, capsys):
    assert main(["train", "--report-to", value, "--model", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "report_to" in err and message in err


def test_report_to_missing_package_names_the_install_command(monkeypatch, capsys):
    import gspo.config.trackers as trackers

    monkeypatch.setitem(trackers.TRACKER_PACKAGES, "wandb", ("gspo_no_such_module", "pip install wandb"))
    assert main(["train", "--report-to", "wandb", "--model", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "report_to" in err and "not installed" in err and "pip install wandb" in err


# ------------------------------------------------------------------ launches that cannot work here
needs_no_cuda = pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU-only refusal")


@needs_no_cuda
@pytest.mark.parametrize("config", ["fsdp.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3.yaml"])
def test_gpu_only_launch_is_refused_in_one_sentence(config, capsys):
    path = ROOT / "configs" / "accelerate" / config
    assert main(["train", "--accelerate-config", str(path), "--num-processes", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "only on GPUs" in err and "--num-processes N" in err
    assert "Traceback" not in err


@needs_no_cuda
def test_hand_launched_fsdp_on_cpu_is_refused_before_accelerate_starts(monkeypatch, tmp_path):
    from gspo.config import ConfigError, GSPOConfig
    from gspo.trainer.build import build_trainer

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ConfigError, match="FSDP, which accelerate runs only on GPUs"):
        build_trainer(GSPOConfig(model="/nonexistent", output_dir=str(tmp_path)))
