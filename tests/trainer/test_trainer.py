"""End-to-end trainer behaviour on tiny models built in the test (offline, CPU, float32)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from gspo.trainer import GSPOTrainer, RewardError
from gspo.trainer.checkpoint import latest_checkpoint, verify_checkpoint
from tests.helpers_tiny import tiny_model_and_tokenizer
from tests.trainer.conftest import count_a_reward, make_rows
from tests.trainer.conftest import model_params as _params
from tests.trainer.conftest import trainer_config as _config


def _assert_same_params(a, b, atol):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=lambda m, k=k: f"{k}: {m}")


def test_train_writes_metrics_checkpoint_and_summary(tmp_path):
    model, tok = tiny_model_and_tokenizer(chat=False)
    before = _params(model)
    cfg = _config(tmp_path, max_steps=3)
    summary = GSPOTrainer(model, tok, [count_a_reward], make_rows(), cfg).train()
    assert summary["steps"] == 3 and summary["optimizer_steps"] == 6
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3]
    for key in (
        "reward/mean",
        "reward/count_a_reward",
        "loss",
        "clip_frac",
        "clip_frac_low",
        "clip_frac_high",
        "ratio_mean",
        "ratio_min",
        "ratio_max",
        "entropy",
        "completion/length_mean",
        "grad_norm",
        "skipped_steps",
        "tokens_per_s",
        "time/sample",
        "time/update",
        "advantage/abs_mean",
    ):
        assert key in lines[0], key
    assert all(math.isfinite(m["loss"]) for m in lines)
    verify_checkpoint(tmp_path / "run" / "final")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 3
    assert any(not torch.equal(before[k], v) for k, v in _params(model).items()), "parameters must change"


def test_first_minibatch_is_on_policy_later_ones_are_not(tmp_path):
    """With 4 minibatches the first update sees ratio 1; later ones see the moved policy (clipping acts)."""
    model, tok = tiny_model_and_tokenizer(chat=False)
    cfg = _config(tmp_path, num_minibatches=4, prompts_per_step=4, group_size=4, max_steps=1, learning_rate=5e-2)
    trainer = GSPOTrainer(model, tok, [count_a_reward], make_rows(), cfg)
    m = trainer.train_step()
    assert m["ratio_max"] > 1 + 4e-4 or m["ratio_min"] < 1 - 3e-4
    assert m["clip_frac"] > 0


@pytest.mark.parametrize("num_epochs", [1, 2])
def test_old_logprobs_of_the_first_minibatch_come_from_its_own_forward(tmp_path, num_epochs):
    """The old-log-prob pass skips epoch 0's first minibatch (π_θ has not moved yet); the update fills
    those rows in from its own forward, and the result equals recomputing every row."""
    model, tok = tiny_model_and_tokenizer(chat=False)
    cfg = _config(
        tmp_path,
        num_minibatches=4,
        prompts_per_step=4,
        group_size=4,
        max_steps=1,
        num_epochs=num_epochs,
        micro_batch_size=3,
        old_logp_source="recompute",
    )
    trainer = GSPOTrainer(model, tok, [count_a_reward], make_rows(), cfg)
    seen = {}
    partial_pass = trainer._logprobs_no_grad

    def recording(model_, roll, rows=None):
        seen["full"] = partial_pass(model_, roll)  # every row, before any update
        seen["rows"] = rows
        seen["partial"] = partial_pass(model_, roll, rows)
        return seen["partial"]

    trainer._logprobs_no_grad = recording
    trainer.train_step()
    assert seen["rows"].numel() == 16 - 4  # the first minibatch's 4 rows were skipped
    # ... and filled in (in place) by the first minibatch's forward
    torch.testing.assert_close(seen["partial"], seen["full"], rtol=0, atol=1e-6)


def test_old_logp_source_auto_uses_the_sampler_only_when_it_gives_the_same_numbers(tmp_path):
    model, tok = tiny_model_and_tokenizer(chat=False)
    assert GSPOTrainer(model, tok, [count_a_reward], make_rows(), _config(tmp_path)).old_logp_from_sampler
    recompute = _config(tmp_path, old_logp_source="recompute")
    assert not GSPOTrainer(model, tok, [count_a_reward], make_rows(), recompute).old_logp_from_sampler
    half, tok_h = tiny_model_and_tokenizer(chat=False)
    half.to(torch.bfloat16)  # the sampler's logits would be bf16, the trainer's float32
    assert not GSPOTrainer(half, tok_h, [count_a_reward], make_rows(), _config(tmp_path)).old_logp_from_sampler
    gpt2, tok_g = tiny_model_and_tokenizer(arch="gpt2", chat=False)  # dropout: train-mode scores differ
    assert not GSPOTrainer(gpt2, tok_g, [count_a_reward], make_rows(), _config(tmp_path)).old_logp_from_sampler


def test_sampler_log_probs_as_old_match_recomputed_ones(tmp_path):
    """What 'auto' relies on: the sampler's log-probs equal the trainer's no-grad pass to float rounding."""
    model, tok = tiny_model_and_tokenizer(chat=False)
    trainer = GSPOTrainer(model, tok, [count_a_reward], make_rows(), _config(tmp_path, max_new_tokens=12))
    batch = trainer._rollout()
    roll = batch.sampled
    recomputed = trainer._logprobs_no_grad(model, batch)
    real = roll.completion_mask_BT.bool()  # positions after EOS are masked out of the loss
    assert real.sum() > 50
    torch.testing.assert_close(roll.logp_BT[real], recomputed[real], rtol=0, atol=1e-5)


def test_group_minibatches_hold_whole_groups(tmp_path):
    model, tok = tiny_model_and_tokenizer(chat=False)
    cfg = _config(tmp_path, prompts_per_step=4, group_size=4, num_minibatches=2, minibatch_grouping="group")
    trainer = GSPOTrainer(model, tok, [count_a_reward], make_rows(), cfg)
    order = trainer._epoch_order(16)
    assert sorted(order.tolist()) == list(range(16))
    for mb in order.view(2, 8):
        groups = (mb // 4).tolist()
        assert all(groups.count(g) == 4 for g in set(groups))  # each group entirely in one minibatch
    assert trainer.train_step()["optimizer_steps"] == 2
    with pytest.raises(Exception, match="minibatch_grouping"):
        _config(tmp_path, prompts_per_step=4, group_size=4, num_minibatches=8, minibatch_grouping="group").validate()


def test_resume_matches_uninterrupted_run(tmp_path):
    steps = dict(max_steps=4, save_steps=2)
    model_a, tok = tiny_model_and_tokenizer(chat=False)
    GSPOTrainer(model_a, tok, [count_a_reward], make_rows(), _config(tmp_path / "a", **steps)).train()

    model_b, tok_b = tiny_model_and_tokenizer(chat=False)
    GSPOTrainer(
        model_b, tok_b, [count_a_reward], make_rows(), _config(tmp_path / "b", max_steps=2, save_steps=2)
    ).train()
    assert latest_checkpoint(tmp_path / "b" / "run") is not None
    model_c, tok_c = tiny_model_and_tokenizer(chat=False, seed=99)  # different init: must be overwritten
    trainer_c = GSPOTrainer(
        model_c, tok_c, [count_a_reward], make_rows(), _config(tmp_path / "b", resume=True, **steps)
    )
    summary = trainer_c.train()
    assert summary["steps"] == 4
    _assert_same_params(_params(model_a), _params(model_c), atol=1e-6)
    steps_logged = [json.loads(x)["step"] for x in (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps_logged == [1, 2, 3, 4]


@pytest.mark.parametrize("aggregation", ["seq-mean", "token-mean"])
@pytest.mark.parametrize("share_prompts", [False, True])
def test_micro_batch_size_does_not_change_the_result(tmp_path, aggregation, share_prompts, monkeypatch):
    """Float64 so that the comparison is tight (in float32 Adam amplifies summation-order noise ~1e-6).

    With prompt sharing, a micro-batch of 8 runs each prompt once for its rows while micro-batches
    of 1 run it per row. Llama's RMSNorm computes in float32 even in a float64 model, so the two
    orders of summation agree to float32 rounding, not to 1e-10; Adam's first steps move a weight by
    about lr * g / (|g| + eps), which turns a rounding difference in a gradient element near eps into
    up to ~5e-6 (5e-4 of one lr 1e-2 step) in that weight.
    """
    import gspo.sampling.scoring as scoring

    monkeypatch.setattr(scoring, "SHARE_MIN_MACS", 0)  # share even on a tiny model, to test it
    results = []
    for mbs in (1, 8):
        model, tok = tiny_model_and_tokenizer(chat=False)
        model.double()
        cfg = _config(
            tmp_path / str(mbs),
            micro_batch_size=mbs,
            num_minibatches=2,
            max_steps=1,
            aggregation=aggregation,
            max_grad_norm=0.0,
            share_prompts=share_prompts,
        )
        GSPOTrainer(model, tok, [count_a_reward], make_rows(), cfg).train()
        results.append(_params(model))
    assert any(
        not torch.equal(results[0][k], v) for k, v in _params(tiny_model_and_tokenizer(chat=False)[0].double()).items()
    )
    _assert_same_params(results[0], results[1], atol=2e-5 if share_prompts else 1e-10)


def test_non_finite_loss_is_skipped_and_parameters_untouched(tmp_path):
    model, tok = tiny_model_and_tokenizer(chat=False)

    def poison(_module, _inputs, output):  # NaN hidden states in training forwards only
        if torch.is_grad_enabled():
            output.last_hidden_state.mul_(float("nan"))
        return output

    model.model.register_forward_hook(poison)
    before = _params(model)
    cfg = _config(tmp_path, max_steps=1)
    trainer = GSPOTrainer(model, tok, [count_a_reward], make_rows(), cfg)
    metrics = trainer.train_step()
    assert metrics["skipped_steps"] == cfg.num_minibatches and trainer.skipped_steps == cfg.num_minibatches
    _assert_same_params(before, _params(model), atol=0)
    assert not trainer.optimizer.state, "optimizer state must not be written"


def test_reward_function_that_raises_stops_the_run_naming_it(tmp_path):
    def broken_reward(prompts, completions, **_):
        raise KeyError("oops")

    model, tok = tiny_model_and_tokenizer(chat=False)
    trainer = GSPOTrainer(model, tok, [count_a_reward, broken_reward], make_rows(), _config(tmp_path))
    with pytest.raises(RewardError, match="broken_reward"):
        trainer.train_step()


def test_reward_function_that_raises_can_score_zero(tmp_path, caplog):
    def broken_reward(prompts, completions, **_):
        raise KeyError("oops")

    model, tok = tiny_model_and_tokenizer(chat=False)
    cfg = _config(tmp_path, reward_errors="zero")
    trainer = GSPOTrainer(model, tok, [count_a_reward, broken_reward], make_rows(), cfg)
    metrics = trainer.train_step()
    assert metrics["reward/failures"] == 1 and metrics["reward/broken_reward"] == 0.0
    assert "broken_reward" in caplog.text


@pytest.mark.parametrize("bad", [lambda p, c, **_: [1.0], lambda p, c, **_: ["x"] * len(c)])
def test_reward_function_with_wrong_output_is_an_error(tmp_path, bad):
    model, tok = tiny_model_and_tokenizer(chat=False)
    trainer = GSPOTrainer(model, tok, [bad], make_rows(), _config(tmp_path, reward_errors="zero"))
    with pytest.raises(RewardError, match="returned"):
        trainer.train_step()


def test_none_rewards_are_missing_not_zero(tmp_path):
    def half_none(prompts, completions, **_):
        return [None if i % 2 else 1.0 for i in range(len(completions))]

    model, tok = tiny_model_and_tokenizer(chat=False)
    trainer = GSPOTrainer(model, tok, [half_none], make_rows(), _config(tmp_path))
    metrics = trainer.train_step()
    assert metrics["reward/missing"] == 8 and metrics["reward/mean"] == 1.0


@pytest.mark.parametrize("algorithm", ["gspo", "gspo-token", "grpo"])
def test_each_algorithm_trains_with_kl(tmp_path, algorithm):
    model, tok = tiny_model_and_tokenizer(chat=False)
    cfg = _config(tmp_path, algorithm=algorithm, kl_coef=0.05, max_steps=1)
    trainer = GSPOTrainer(model, tok, [count_a_reward], make_rows(), cfg)
    m = trainer.train_step()
    assert math.isfinite(m["loss"]) and m["kl"] >= 0


def test_on_policy_config_skips_the_old_logprob_pass(tmp_path, monkeypatch):
    model, tok = tiny_model_and_tokenizer(chat=False)
    cfg = _config(tmp_path, num_minibatches=1, num_epochs=1)
    trainer = GSPOTrainer(model, tok, [count_a_reward], make_rows(), cfg)
    calls = []
    monkeypatch.setattr(trainer, "_logprobs_no_grad", lambda *a, **k: calls.append(1))
    m = trainer.train_step()
    assert not calls and m["ratio_mean"] == pytest.approx(1.0) and m["clip_frac"] == 0.0


def test_bad_train_rows_are_rejected(tmp_path):
    model, tok = tiny_model_and_tokenizer(chat=False)
    with pytest.raises(ValueError, match="prompt"):
        GSPOTrainer(model, tok, [count_a_reward], [{"question": "x"}], _config(tmp_path))
