"""The trainer's general switches (issue 17): dynamic sampling, overlong filtering and punishment, a
bfloat16 sampler copy with rollout-mismatch correction, adaptive clipping; every algorithm trains."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from gspo.algorithms import ALGORITHMS
from gspo.trainer import GSPOTrainer
from gspo.trainer.loop import checkpoint_state
from tests.helpers_tiny import tiny_model_and_tokenizer
from tests.trainer.conftest import count_a_reward, make_rows, model_params, trainer_config


def _trainer(tmp_path, reward=count_a_reward, **overrides):
    model, tok = tiny_model_and_tokenizer(chat=False)
    return GSPOTrainer(model, tok, [reward], make_rows(64), trainer_config(tmp_path, **overrides))


def constant_reward(prompts, completions, **_):
    return [1.0] * len(completions)


# ---------------------------------------------------------------- dynamic sampling


def test_dynamic_sampling_of_constant_groups_stops_at_the_bound_and_says_so(tmp_path, caplog):
    trainer = _trainer(tmp_path, reward=constant_reward, dynamic_sampling=True, dynamic_sampling_max_rounds=2)
    taken = []
    original = trainer.order.take
    trainer.order.take = lambda n: taken.append(n) or original(n)
    with caplog.at_level(logging.WARNING, logger="gspo"):
        m = trainer.train_step()
    assert len(taken) == 3  # one round + the bound of 2 extra rounds, no more
    assert m["dynamic_sampling/rounds"] == 2
    assert m["dynamic_sampling/sampled_groups"] == 12 and m["dynamic_sampling/informative_groups"] == 0
    assert m["dynamic_sampling/filled_groups"] == 4 and m["dynamic_sampling/extra_generations"] == 2 * 4 * 4
    assert "dynamic sampling found 0 informative groups of 12" in caplog.text
    assert math.isfinite(m["loss"]) and m["advantage/zero_frac"] == 1.0


def test_dynamic_sampling_keeps_only_informative_groups(tmp_path):
    def first_token_reward(prompts, completions, **_):
        return [float(c[:1] in "aeiou") for c in completions]

    trainer = _trainer(tmp_path, reward=first_token_reward, dynamic_sampling=True, dynamic_sampling_max_rounds=6)
    batch = trainer._rollout()
    m = batch.metrics
    assert batch.size == 16 and len(batch.rows) == 4
    if m["dynamic_sampling/filled_groups"] == 0:
        assert (batch.rewards_B.view(4, 4).std(1) > 0).all()
    assert m["dynamic_sampling/sampled_groups"] == 4 * (m["dynamic_sampling/rounds"] + 1)
    assert m["dynamic_sampling/informative_groups"] >= 4 - m["dynamic_sampling/filled_groups"]


def test_dynamic_sampling_is_off_for_gspo_and_on_for_dapo(tmp_path):
    assert "dynamic_sampling/rounds" not in _trainer(tmp_path).train_step()
    assert "dynamic_sampling/rounds" in _trainer(tmp_path, algorithm="dapo").train_step()


# ---------------------------------------------------------------- overlong


def test_overlong_filter_masks_truncated_completions(tmp_path):
    trainer = _trainer(tmp_path, overlong_filter=True, max_new_tokens=3)
    batch = trainer._rollout()
    truncated = ~batch.sampled.finished_B
    assert truncated.any(), "the case needs truncated completions"
    assert not batch.loss_mask_BT[truncated].any()
    torch.testing.assert_close(batch.loss_mask_BT[~truncated], batch.sampled.completion_mask_BT[~truncated].bool())
    assert batch.metrics["overlong/filtered_frac"] == pytest.approx(float(truncated.float().mean()))


def test_soft_overlong_punishment_is_added_to_the_reward(tmp_path):
    trainer = _trainer(tmp_path, overlong_buffer_frac=0.5, max_new_tokens=6)  # L_cache = 3
    batch = trainer._rollout()
    lengths = batch.sampled.completion_lengths_B.float()
    penalty = torch.where(lengths <= 3, 0.0, (3 - lengths) / 3)
    raw = torch.tensor(batch.rewards.per_function["count_a_reward"])
    torch.testing.assert_close(batch.rewards_B, raw + penalty)
    assert batch.metrics["overlong/penalty_mean"] == pytest.approx(float(penalty.mean()))


# ---------------------------------------------------------------- rollout mismatch


def test_bfloat16_sampler_mismatch_is_measured_and_tis_weights_follow_the_formula(tmp_path):
    trainer = _trainer(tmp_path, sampler_dtype="bfloat16", mismatch_correction="tis", mismatch_cap=1.0003)
    batch = trainer._rollout()
    perms = [trainer._epoch_order(batch.size)]
    old = trainer._old_logprobs(batch, perms)
    mask = batch.loss_mask_BT
    raw = torch.exp(old.logp_BT - batch.sampler_logp_BT)
    assert batch.metrics["mismatch/ratio_max"] > 1.0 + 1e-4  # bfloat16 sampling is measurably off
    assert batch.metrics["mismatch/ratio_max"] == pytest.approx(float(raw[mask].max()), rel=1e-6)
    torch.testing.assert_close(old.token_weight_BT, torch.where(mask, raw.clamp(max=1.0003), 0.0))
    m = trainer.train_step()
    assert math.isfinite(m["loss"]) and m["mismatch/tis_capped_frac"] > 0


def test_mis_masks_sequences_outside_the_bounds(tmp_path):
    trainer = _trainer(tmp_path, sampler_dtype="bfloat16", mismatch_correction="mis", mismatch_cap=1.0002)
    batch = trainer._rollout()
    before = batch.loss_mask_BT.clone()
    old = trainer._old_logprobs(batch, [trainer._epoch_order(batch.size)])
    lengths = before.sum(-1)
    rho = torch.exp(torch.where(before, old.logp_BT - batch.sampler_logp_BT, 0.0).sum(-1) / lengths)
    keep = (rho >= 1 / 1.0002) & (rho <= 1.0002)
    assert (~keep).any()
    assert torch.equal(batch.loss_mask_BT, before & keep[:, None])
    assert batch.metrics["mismatch/mis_masked_frac"] == pytest.approx(float((~keep).float().mean()))


def test_float32_sampler_correction_is_a_no_op(tmp_path):
    results = []
    for correction in ("none", "tis"):
        trainer = _trainer(tmp_path / correction, old_logp_source="recompute", mismatch_correction=correction)
        m = trainer.train_step()
        results.append((m, model_params(trainer.model)))
    (m_none, p_none), (m_tis, p_tis) = results
    assert m_tis["mismatch/tis_capped_frac"] == 0.0 and abs(m_tis["mismatch/ratio_max"] - 1) < 1e-5
    assert m_tis["loss"] == pytest.approx(m_none["loss"], rel=1e-5, abs=1e-7)
    for k in p_none:
        torch.testing.assert_close(p_tis[k], p_none[k], rtol=0, atol=1e-6)


# ---------------------------------------------------------------- adaptive clipping


def test_adaptive_clip_moves_epsilon_within_bounds_logs_and_checkpoints_it(tmp_path):
    trainer = _trainer(
        tmp_path, algorithm="grpo", adaptive_clip=True, adaptive_clip_target=0.0, adaptive_clip_bounds=[0.5, 1.15]
    )
    first = trainer.train_step()
    assert first["clip/scale"] == 1.0 and first["clip/low"] == 0.2 and first["clip/high"] == 0.27
    if first["clip_frac"] > 0:
        assert trainer.clip_scale == pytest.approx(1.1)
    second = trainer.train_step()
    assert second["clip/high"] == pytest.approx(0.27 * second["clip/scale"])
    assert 0.5 <= trainer.clip_scale <= 1.15
    assert checkpoint_state(trainer)["clip_scale"] == trainer.clip_scale
    assert "clip/scale" not in _trainer(tmp_path / "off").train_step()  # off by default


# ---------------------------------------------------------------- every entry trains


SIGNATURE_METRICS = {
    "sapo": "sapo/gate_mean",
    "gmpo": "gmpo/seq_ratio_mean",
    "dapo": "dynamic_sampling/rounds",
    "ppo": "critic/value_loss",
    "dpo": "reward_margin",
}


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_every_algorithm_takes_a_finite_step(tmp_path, algorithm):
    trainer = _trainer(tmp_path, algorithm=algorithm)
    before = model_params(trainer.model)
    m = trainer.train_step()
    assert math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"]) and m["skipped_steps"] == 0
    assert any(not torch.equal(v, before[k]) for k, v in model_params(trainer.model).items())
    assert SIGNATURE_METRICS.get(algorithm, "clip_frac") in m


def test_log_kl_measures_the_kl_to_the_start_without_changing_training(tmp_path):
    plain = _trainer(tmp_path / "plain", algorithm="grpo", max_steps=2)
    logged = _trainer(tmp_path / "logged", algorithm="grpo", max_steps=2, log_kl=True)
    rows = [(plain.train_step(), logged.train_step()) for _ in range(2)]
    assert all("kl" not in a for a, _ in rows)
    assert rows[0][1]["kl"] >= 0 and rows[1][1]["kl"] > 0  # the policy has moved away from the start
    torch.testing.assert_close(model_params(plain.model), model_params(logged.model), rtol=0, atol=0)


def test_reinforce_pp_with_kl_in_the_reward_trains_on_token_advantages(tmp_path):
    trainer = _trainer(tmp_path, algorithm="reinforce++", reward_kl_coef=0.5, max_steps=2)
    assert trainer.uses_reference
    rows = [trainer.train_step() for _ in range(2)]
    assert all("reward_kl/kl_mean" in r and math.isfinite(r["loss"]) for r in rows)
    assert rows[0]["reward_kl/kl_mean"] == pytest.approx(0.0, abs=1e-5)  # sampler == reference at step 1
    assert abs(rows[1]["reward_kl/kl_mean"]) > 0  # the policy moved: the penalty acts
    assert rows[1]["reward_kl/penalty_mean"] == pytest.approx(
        0.5 * rows[1]["reward_kl/kl_mean"] * rows[1]["completion/length_mean"], rel=0.5
    )


def test_reward_kl_coef_is_refused_without_a_token_reward_estimator(tmp_path):
    from gspo.config import ConfigError

    with pytest.raises(ConfigError, match="reward_kl_coef"):
        trainer_config(tmp_path, algorithm="grpo", reward_kl_coef=0.1).validate()
    trainer_config(tmp_path, algorithm="grpo", advantage="reinforce++", reward_kl_coef=0.1).validate()


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(algorithm="gspo", advantage="reinforce++", reward_kl_coef=0.1), "reward_kl_coef"),  # sequence loss
        (dict(algorithm="gmpo", environment="guess", turn_advantages=True), "turn_advantages"),  # sequence loss
        (dict(algorithm="rloo", environment="guess", turn_advantages=True), "turn_advantages"),  # no per-turn form
    ],
)
def test_per_token_advantages_are_refused_where_the_loss_or_estimator_has_none(tmp_path, overrides, field):
    from gspo.config import ConfigError

    with pytest.raises(ConfigError, match=field):
        trainer_config(tmp_path, **overrides).validate()
