"""Online DPO in the trainer (``--algorithm dpo``): best/worst pairs per group, the reference, the update
(micro-batch invariance, no step without pairs), its metrics (tiny models built in the test)."""

from __future__ import annotations

import math

import pytest
import torch

from gspo.losses import dpo_loss
from gspo.trainer import GSPOTrainer
from gspo.trainer.pairs import best_worst_pairs
from tests.helpers_tiny import tiny_model_and_tokenizer
from tests.trainer.conftest import count_a_reward, make_rows, model_params
from tests.trainer.conftest import trainer_config as _config

NAN = float("nan")


def _dpo(tmp_path, model=None, reward=count_a_reward, **overrides) -> GSPOTrainer:
    model, tok = model or tiny_model_and_tokenizer(chat=False)
    return GSPOTrainer(model, tok, [reward], make_rows(), _config(tmp_path, algorithm="dpo", **overrides))


def test_best_and_worst_of_each_group_by_hand():
    rewards = torch.tensor([0.0, 1.0, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0, NAN, 3.0, NAN, 1.0, NAN, NAN, 5.0, NAN])
    has, chosen, rejected = best_worst_pairs(rewards, 4)
    assert has.tolist() == [True, False, True, False]  # equal rewards, or one scored response: no pair
    assert chosen[has].tolist() == [1, 9]  # the first of equal bests; a missing reward is never chosen
    assert rejected[has].tolist() == [0, 11]


def test_a_dpo_step_pairs_groups_and_logs_margins(tmp_path):
    trainer = _dpo(tmp_path, num_minibatches=1)
    assert trainer.ref_model is not None  # the frozen starting policy is DPO's reference
    before = model_params(trainer.model)
    m = trainer.train_step()
    assert 1 <= m["pairs"] <= 4 and m["pairs/empty_minibatches"] == 0
    # one minibatch: the policy is still the reference when it runs, so every margin is exactly 0
    assert m["reward_margin"] == 0.0 and m["reward_accuracy"] == 0.0
    assert m["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert m["optimizer_steps"] == 1 and "clip_frac" not in m  # nothing is clipped
    assert any(not torch.equal(v, before[k]) for k, v in model_params(trainer.model).items())
    m = trainer.train_step()
    assert m["reward_accuracy"] > 0 and m["reward_margin"] > 0  # after one step the chosen ones gained


def test_the_loss_is_dpo_against_the_reference_log_probs(tmp_path, monkeypatch):
    """The trainer hands dpo_loss summed completion log-probs of the best and worst response of a group."""
    seen = []

    def spy(c, r, c_ref, r_ref, *, beta):
        seen.append((c.detach(), r.detach(), c_ref, r_ref, beta))
        return dpo_loss(c, r, c_ref, r_ref, beta=beta)

    trainer = _dpo(tmp_path, num_minibatches=1, algorithm_options={"beta": 0.5})
    monkeypatch.setattr(trainer.pairs, "loss_fn", spy)
    trainer.train_step()
    c, r, c_ref, r_ref, beta = seen[0]
    assert beta == 0.5
    torch.testing.assert_close(c, c_ref)  # the policy is still the reference
    torch.testing.assert_close(r, r_ref)
    assert (c < 0).all() and (r < 0).all()  # sums of log-probs


def test_the_reference_scores_only_the_paired_rows(tmp_path, monkeypatch):
    trainer = _dpo(tmp_path, num_minibatches=1)
    scored = []
    real = trainer._logprobs_no_grad

    def spy(model, batch, rows=None):
        scored.append(None if rows is None else rows.tolist())
        return real(model, batch, rows)

    monkeypatch.setattr(trainer, "_logprobs_no_grad", spy)
    m = trainer.train_step()
    assert scored and len(scored[0]) == 2 * m["pairs"]  # chosen and rejected of each pair, nothing else
    assert m["reward_margin"] == 0.0 and m["loss"] == pytest.approx(math.log(2), abs=1e-6)


def test_no_pairs_no_optimizer_step(tmp_path):
    trainer = _dpo(tmp_path, reward=lambda prompts, completions, **_: [1.0] * len(completions))
    before = model_params(trainer.model)
    m = trainer.train_step()
    assert m["pairs"] == 0 and m["pairs/empty_minibatches"] == 2 and m["optimizer_steps"] == 0
    assert all(torch.equal(v, before[k]) for k, v in model_params(trainer.model).items())


def test_micro_batch_size_does_not_change_the_dpo_update(tmp_path):
    results = []
    for mbs in (1, 2, 8):  # 1 and 2 rows: one pair per micro-batch; 8: four pairs
        model, tok = tiny_model_and_tokenizer(chat=False)
        trainer = _dpo(tmp_path / str(mbs), model=(model.double(), tok), micro_batch_size=mbs, max_grad_norm=0.0)
        trainer.train()
        results.append(model_params(trainer.model))
    for other in results[1:]:
        for k in results[0]:
            torch.testing.assert_close(results[0][k], other[k], rtol=0, atol=1e-10)


def test_lora_dpo_uses_the_adapter_disabled_model_as_reference(tmp_path):
    from gspo.models.lora import apply_lora

    model, tok = tiny_model_and_tokenizer(chat=False)
    model = apply_lora(model, r=4, alpha=8, dropout=0.0, target_modules="all-linear")
    trainer = _dpo(tmp_path, model=(model, tok), lora_r=4, lora_alpha=8, learning_rate=5e-2)
    assert trainer.ref_model is None  # no second copy
    trainer.train_step()
    m = trainer.train_step()
    assert m["reward_margin"] != 0.0  # the adapters moved away from the base, which stayed the reference


def test_a_kl_term_on_top_of_dpo_is_refused():
    from gspo.config import ConfigError, GSPOConfig

    with pytest.raises(ConfigError, match="kl_coef: must be 0 for 'dpo'"):
        GSPOConfig(algorithm="dpo", kl_coef=0.1).validate()
