"""Fault injection through the Python API: every fault has a defined, logged outcome.

Either training goes on (the fault is contained, counted and logged) or it stops with an exception
that says what went wrong and where -- never a silent wrong update, never an error from deep inside
torch. Tiny random models built in the test; each test takes a second or two.

| fault                                          | defined outcome (asserted here)                         |
|------------------------------------------------|---------------------------------------------------------|
| NaN activations in training forwards           | that optimizer step skipped, warning, params + Adam     |
|                                                | state untouched; later steps train normally             |
| inf gradient with a finite loss                | skipped the same way (with and without clipping)        |
| reward raises, reward_errors="raise"           | RewardError naming the function; checkpoints resumable  |
| reward raises, reward_errors="zero"            | batch scored 0, warning naming it, run completes        |
| reward raises KeyboardInterrupt                | never swallowed, even with "zero"; run resumable        |
| reward returns wrong count / None / non-number | RewardError naming the function (even with "zero")      |
| reward returns NaN / inf / None scores         | treated as missing, counted; zero advantage, no update  |
| tokenizer without a pad token                  | EOS doubles as pad; trains                              |
| no EOS token anywhere                          | ValueError at construction                              |
| empty completions (EOS first)                  | scored as "", trained through the EOS token             |
| completions that never emit EOS                | truncated at max_new_tokens, still scored, trained      |
| prompt longer than max_prompt_tokens           | left-truncated with a warning; trains                   |
| prompt + completion longer than the model's    | (xfail, src bug) should truncate with a warning /       |
| context (absolute-position model)              | ConfigError; today an IndexError from torch.embedding   |
| disk full while writing a checkpoint           | OSError propagates, temp folder removed, older          |
|                                                | checkpoints intact, resume works                        |
| output_dir is a file                           | OSError before any sampling                             |
"""

from __future__ import annotations

import errno
import json
import math

import pytest
import torch

from gspo.config import ConfigError
from gspo.trainer import GSPOTrainer, RewardError
from gspo.trainer.checkpoint import latest_checkpoint, verify_checkpoint
from tests.helpers_tiny import tiny_model, tiny_model_and_tokenizer
from tests.reliability.crashpoints import toy_reward
from tests.trainer.conftest import make_rows as rows
from tests.trainer.conftest import model_params as params
from tests.trainer.conftest import trainer_config as config

pytestmark = pytest.mark.timeout(120)


def count_reward(prompts, completions, **_):
    return toy_reward(completions)


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def metrics_lines(tmp_path):
    return [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------ non-finite
def test_nan_forwards_in_one_step_skip_only_that_step_and_training_goes_on(tmp_path, caplog):
    model, tok = tiny_model_and_tokenizer(chat=False)
    state = {"step": 0, "snapshots": {}, "adam_steps": {}}
    holder = {}

    def reward(prompts, completions, **_):  # called once per step, after sampling, before the update
        state["step"] += 1
        state["snapshots"][state["step"]] = params(model)
        opt = holder["trainer"].optimizer
        state["adam_steps"][state["step"]] = [int(s["step"]) for s in opt.state.values()][:1]
        return toy_reward(completions)

    def poison(_module, _inputs, output):  # NaN hidden states in step 2's training forwards only
        if torch.is_grad_enabled() and state["step"] == 2:
            output.last_hidden_state.mul_(float("nan"))
        return output

    model.model.register_forward_hook(poison)
    cfg = config(tmp_path, max_steps=3)
    holder["trainer"] = trainer = GSPOTrainer(model, tok, [reward], rows(), cfg)
    with caplog.at_level("WARNING", logger="gspo"):
        summary = trainer.train()

    assert summary["steps"] == 3 and summary["skipped_steps"] == 2 and summary["optimizer_steps"] == 4
    assert caplog.text.count("step 2: non-finite loss or gradient; optimizer step skipped") == 2
    snaps = state["snapshots"]
    assert not same(snaps[1], snaps[2]), "step 1 trains"
    assert same(snaps[2], snaps[3]), "step 2 (all NaN) must leave the parameters untouched"
    assert not same(snaps[3], params(model)), "step 3 trains again"
    assert state["adam_steps"][3] == state["adam_steps"][2] == [2], "Adam state must not count skipped steps"
    lines = metrics_lines(tmp_path)
    assert [m["skipped_steps"] for m in lines] == [0, 2, 0]
    assert lines[1]["loss"] is None and all(math.isfinite(m["loss"]) for m in (lines[0], lines[2]))
    assert all(torch.isfinite(v).all() for v in params(model).values())
    verify_checkpoint(tmp_path / "run" / "final")


@pytest.mark.parametrize("max_grad_norm", [1.0, 0.0], ids=["clipped", "no-clipping"])
def test_inf_gradient_with_finite_loss_is_skipped(tmp_path, caplog, max_grad_norm):
    model, tok = tiny_model_and_tokenizer(chat=False)
    handle = model.lm_head.weight.register_hook(lambda g: g * float("inf"))
    trainer = GSPOTrainer(model, tok, [count_reward], rows(), config(tmp_path, max_grad_norm=max_grad_norm))
    before = params(model)
    with caplog.at_level("WARNING", logger="gspo"):
        m = trainer.train_step()
    assert math.isfinite(m["loss"]) and not math.isfinite(m["grad_norm"])
    assert m["skipped_steps"] == 2 and "non-finite loss or gradient" in caplog.text
    assert same(before, params(model)) and not trainer.optimizer.state
    handle.remove()
    m = trainer.train_step()
    assert m["skipped_steps"] == 0 and trainer.skipped_steps == 2 and not same(before, params(model))


# ------------------------------------------------------------------------------------ rewards
def test_reward_that_raises_stops_the_run_naming_it_and_leaves_resumable_checkpoints(tmp_path):
    calls = []

    def flaky_reward(prompts, completions, **_):
        calls.append(1)
        if len(calls) == 3:
            raise ZeroDivisionError("division by zero in user code")
        return toy_reward(completions)

    model, tok = tiny_model_and_tokenizer(chat=False)
    trainer = GSPOTrainer(model, tok, [flaky_reward], rows(), config(tmp_path, max_steps=4, save_steps=1))
    with pytest.raises(
        RewardError, match=r"reward function 'flaky_reward' raised ZeroDivisionError: division by zero in user code"
    ) as err:
        trainer.train()
    assert isinstance(err.value.__cause__, ZeroDivisionError)
    assert not (tmp_path / "run" / "final").exists()
    assert latest_checkpoint(tmp_path / "run") == tmp_path / "run" / "checkpoints" / "step-000002"

    model2, tok2 = tiny_model_and_tokenizer(chat=False)
    summary = GSPOTrainer(
        model2, tok2, [count_reward], rows(), config(tmp_path, max_steps=4, save_steps=1, resume=True)
    ).train()
    assert summary["steps"] == 4


def test_reward_that_raises_with_zero_policy_scores_zero_and_the_run_completes(tmp_path, caplog):
    calls = []

    def flaky_reward(prompts, completions, **_):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("scorer service unavailable")
        return toy_reward(completions)

    model, tok = tiny_model_and_tokenizer(chat=False)
    trainer = GSPOTrainer(
        model, tok, [count_reward, flaky_reward], rows(), config(tmp_path, max_steps=3, reward_errors="zero")
    )
    with caplog.at_level("WARNING", logger="gspo"):
        summary = trainer.train()
    assert summary["steps"] == 3
    assert (
        "reward function 'flaky_reward' raised RuntimeError: scorer service unavailable; scoring this batch 0"
        in caplog.text
    )
    lines = metrics_lines(tmp_path)
    assert [m["reward/failures"] for m in lines] == [0, 1, 0]
    assert lines[1]["reward/flaky_reward"] == 0.0 and lines[0]["reward/flaky_reward"] > 0


def test_keyboard_interrupt_in_a_reward_is_never_swallowed(tmp_path):
    calls = []

    def interrupted(prompts, completions, **_):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return toy_reward(completions)

    model, tok = tiny_model_and_tokenizer(chat=False)
    trainer = GSPOTrainer(
        model, tok, [interrupted], rows(), config(tmp_path, max_steps=4, save_steps=1, reward_errors="zero")
    )
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert latest_checkpoint(tmp_path / "run").name == "step-000002"


BAD_OUTPUTS = {
    "too-few": (lambda p, c: [1.0], r"returned 1 scores for 16 completions"),
    "too-many": (lambda p, c: [1.0] * (len(c) + 1), r"returned 17 scores for 16 completions"),
    "none": (lambda p, c: None, r"returned NoneType, expected a list of 16 floats"),
    "scalar": (lambda p, c: 1.0, r"returned float, expected a list of 16 floats"),
    "non-numeric": (lambda p, c: ["high"] * len(c), r"returned a non-numeric score 'high' at index 0"),
    "nested": (lambda p, c: [[1.0]] * len(c), r"returned a non-numeric score \[1.0\] at index 0"),
}


# A malformed output is a bug in the reward, not a flaky input: an error even with reward_errors="zero"
# (the stronger claim; "raise" is checked for one kind).
@pytest.mark.parametrize("kind, reward_errors", [(k, "zero") for k in BAD_OUTPUTS] + [("too-few", "raise")])
def test_reward_with_malformed_output_is_an_error_naming_it(tmp_path, kind, reward_errors):
    fn, message = BAD_OUTPUTS[kind]

    def bad_reward(prompts, completions, **_):
        return fn(prompts, completions)

    model, tok = tiny_model_and_tokenizer(chat=False)
    trainer = GSPOTrainer(model, tok, [count_reward, bad_reward], rows(), config(tmp_path, reward_errors=reward_errors))
    before = params(model)
    with pytest.raises(RewardError, match=r"reward function 'bad_reward' " + message):
        trainer.train_step()
    assert same(before, params(model)) and trainer.step == 0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), None], ids=["nan", "inf", "-inf", "None"])
def test_non_finite_or_missing_scores_count_as_missing_and_do_not_move_the_policy(tmp_path, value):
    def missing(prompts, completions, **_):
        return [value] * len(completions)

    model, tok = tiny_model_and_tokenizer(chat=False)
    trainer = GSPOTrainer(model, tok, [missing], rows(), config(tmp_path))
    before = params(model)
    m = trainer.train_step()
    assert m["reward/missing"] == 16 and math.isnan(m["reward/mean"])
    assert m["advantage/zero_frac"] == 1.0 and m["skipped_steps"] == 0
    assert same(before, params(model)), "zero advantages must not move the weights"


def test_array_like_and_generator_scores_are_accepted(tmp_path):
    import numpy as np

    outputs = iter(
        [
            lambda c: np.arange(len(c), dtype=np.float32),
            lambda c: torch.arange(len(c)),
            lambda c: (i % 3 for i in range(len(c))),
        ]
    )

    def arrays(prompts, completions, **_):
        return next(outputs)(completions)

    model, tok = tiny_model_and_tokenizer(chat=False)
    trainer = GSPOTrainer(model, tok, [arrays], rows(), config(tmp_path, max_steps=3))
    for _ in range(3):
        m = trainer.train_step()
        assert m["reward/missing"] == 0 and m["reward/mean"] > 0


# ------------------------------------------------------------------------------------ tokenizer / EOS
def test_tokenizer_without_pad_token_uses_eos_as_pad_and_trains(tmp_path):
    model, tok = tiny_model_and_tokenizer(chat=False)
    tok.pad_token = None
    assert tok.pad_token_id is None
    seen = []

    def reward(prompts, completions, **_):
        seen.extend(completions)
        return toy_reward(completions)

    data = [{"prompt": "q" * (1 + i % 5) + ":"} for i in range(16)]  # different lengths: padding is needed
    trainer = GSPOTrainer(model, tok, [reward], data, config(tmp_path))
    assert trainer.pad_id == tok.eos_token_id
    before = params(model)
    m = trainer.train_step()
    assert math.isfinite(m["loss"]) and not same(before, params(model))
    assert len(seen) == 16 and not any("<eos>" in c or "<pad>" in c for c in seen)


def test_no_eos_token_anywhere_is_a_clear_error_at_construction(tmp_path):
    model, tok = tiny_model_and_tokenizer(chat=False)
    tok.eos_token = None
    model.generation_config.eos_token_id = None
    with pytest.raises(ValueError, match="no EOS token"):
        GSPOTrainer(model, tok, [count_reward], rows(), config(tmp_path))


def test_empty_completions_are_scored_and_trained_through_the_eos_token(tmp_path):
    model, tok = tiny_model_and_tokenizer(chat=False)
    model.generation_config.eos_token_id = list(range(len(tok)))  # every token ends the completion
    seen = []

    def reward(prompts, completions, **_):
        seen.extend(completions)
        return [float(i % 2) for i in range(len(completions))]  # variance, so advantages are non-zero

    trainer = GSPOTrainer(model, tok, [reward], rows(), config(tmp_path))
    before = params(model)
    m = trainer.train_step()
    assert seen == [""] * 16
    assert m["completion/length_mean"] == 1.0 and m["completion/truncated_frac"] == 0.0
    assert math.isfinite(m["loss"]) and m["skipped_steps"] == 0
    assert not same(before, params(model)), "the EOS token's log-prob carries the gradient"


def test_completions_that_never_emit_eos_are_truncated_and_still_scored(tmp_path):
    model, tok = tiny_model_and_tokenizer(chat=False)
    eos = tok.eos_token_id

    def ban_eos(_module, _inputs, logits):
        logits = logits.clone()
        logits[..., eos] = -1e4
        return logits

    model.lm_head.register_forward_hook(ban_eos)
    seen = []

    def reward(prompts, completions, **_):
        seen.extend(completions)
        return toy_reward(completions)

    cfg = config(tmp_path, max_new_tokens=5)
    trainer = GSPOTrainer(model, tok, [reward], rows(), cfg)
    before = params(model)
    m = trainer.train_step()
    assert m["completion/truncated_frac"] == 1.0 and m["completion/length_mean"] == 5.0
    assert len(seen) == 16 and all(len(c) <= 5 for c in seen) and sum(map(len, seen)) > 0
    assert math.isfinite(m["loss"]) and not same(before, params(model))


# ------------------------------------------------------------------------------------ long prompts
def test_prompt_longer_than_max_prompt_tokens_is_left_truncated_with_a_warning(tmp_path, caplog):
    model, tok = tiny_model_and_tokenizer(chat=False)
    data = [{"prompt": "x" * 300 + f"q{i}:"} for i in range(16)]
    trainer = GSPOTrainer(model, tok, [count_reward], data, config(tmp_path, max_prompt_tokens=16))
    with caplog.at_level("WARNING"):
        roll = trainer._rollout().sampled
    assert roll.prompt_ids_BP.shape[1] == 16
    assert "4 of 4 prompts were longer than max_prompt_tokens=16 and were truncated from the left" in caplog.text
    assert tok.decode(roll.prompt_ids_BP[0, -3:]).endswith(":")  # the end of the prompt is kept
    m = trainer.train_step()
    assert math.isfinite(m["loss"])


def test_prompt_longer_than_the_model_context_is_truncated_with_a_warning(tmp_path, caplog):
    _, tok = tiny_model_and_tokenizer(chat=False)
    model = tiny_model(
        len(tok),
        arch="gpt2",
        max_positions=32,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    data = [{"prompt": "x" * 60 + f"q{i}:"} for i in range(16)]  # 63-64 tokens, context 32
    trainer = GSPOTrainer(model, tok, [count_reward], data, config(tmp_path, max_new_tokens=8))
    with caplog.at_level("WARNING"):
        m = trainer.train_step()
    assert math.isfinite(m["loss"]) and "truncated" in caplog.text


def test_completion_budget_beyond_the_model_context_is_a_config_error(tmp_path):
    _, tok = tiny_model_and_tokenizer(chat=False)
    model = tiny_model(
        len(tok),
        arch="gpt2",
        max_positions=16,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    with pytest.raises(ConfigError, match="max_new_tokens"):
        trainer = GSPOTrainer(model, tok, [count_reward], rows(), config(tmp_path, max_new_tokens=32))
        trainer.train_step()


# ------------------------------------------------------------------------------------ disk
def test_disk_full_during_a_checkpoint_leaves_older_checkpoints_intact(tmp_path, monkeypatch):
    real_save = torch.save
    saves = []

    def full_disk(obj, f, *args, **kwargs):
        saves.append(str(f))
        if len(saves) == 2:  # the trainer state of step 2's checkpoint
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    model, tok = tiny_model_and_tokenizer(chat=False)
    trainer = GSPOTrainer(model, tok, [count_reward], rows(), config(tmp_path, max_steps=4, save_steps=1))
    with pytest.raises(OSError, match="No space left on device"):
        trainer.train()
    assert ".step-000002.tmp-" in saves[1]
    ckpts = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-000001"], "the failed temp folder must be removed"
    verify_checkpoint(ckpts / "step-000001")

    monkeypatch.setattr(torch, "save", real_save)
    model2, tok2 = tiny_model_and_tokenizer(chat=False)
    summary = GSPOTrainer(
        model2, tok2, [count_reward], rows(), config(tmp_path, max_steps=4, save_steps=1, resume=True)
    ).train()
    assert summary["steps"] == 4


def test_output_dir_that_is_a_file_fails_before_any_work(tmp_path):
    (tmp_path / "run").write_text("not a directory")
    calls = []

    def reward(prompts, completions, **_):
        calls.append(1)
        return toy_reward(completions)

    model, tok = tiny_model_and_tokenizer(chat=False)
    trainer = GSPOTrainer(model, tok, [reward], rows(), config(tmp_path))
    with pytest.raises(OSError, match="run"):
        trainer.train()
    assert calls == []
