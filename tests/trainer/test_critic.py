"""PPO's critic in the trainer (``--algorithm ppo``): GAE advantages, the value update, LoRA, critic_path,
micro-batch invariance of the whole update, exact resume with the critic (tiny models built in the test)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from gspo.config import ConfigError
from gspo.losses import whiten
from gspo.trainer import GSPOTrainer
from tests.helpers_cli import save_tiny_model
from tests.helpers_tiny import tiny_model_and_tokenizer
from tests.trainer.conftest import count_a_reward, make_rows, model_params
from tests.trainer.conftest import trainer_config as _config


def _ppo(tmp_path, model=None, **overrides) -> GSPOTrainer:
    if model is None:
        model, tok = tiny_model_and_tokenizer(chat=False)
    else:
        model, tok = model
    overrides.setdefault("learning_rate", 1e-3)
    cfg = _config(tmp_path, algorithm="ppo", **overrides)
    return GSPOTrainer(model, tok, [count_a_reward], make_rows(), cfg)


def _critic_params(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.critic.model.state_dict().items()}


def _assert_same(a, b, atol):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=lambda m, k=k: f"{k}: {m}")


def test_a_ppo_step_trains_the_policy_and_a_separate_critic(tmp_path):
    trainer = _ppo(tmp_path)
    policy_storage = {p.data_ptr() for p in trainer.model.parameters()}
    assert not policy_storage & {p.data_ptr() for p in trainer.critic.model.parameters()}, "a copy, not shared"
    assert trainer.ref_model is None  # no reference without a KL term
    policy_before, critic_before = model_params(trainer.model), _critic_params(trainer)
    assert (critic_before["head.weight"] == 0).all() and (critic_before["head.bias"] == 0).all()
    m = trainer.train_step()
    for key in ("critic/value_loss", "critic/value_clip_frac", "critic/explained_variance", "critic/grad_norm"):
        assert math.isfinite(m[key]), key
    assert m["critic/value_mean"] == 0.0  # the zero head: V = 0 before the first update
    assert m["optimizer_steps"] == 2 and m["skipped_steps"] == 0
    assert any(not torch.equal(v, policy_before[k]) for k, v in model_params(trainer.model).items())
    changed = {k for k, v in _critic_params(trainer).items() if not torch.equal(v, critic_before[k])}
    assert "head.weight" in changed and any(k.startswith("backbone.") for k in changed)


def test_gae_advantages_replace_the_rollouts_and_are_whitened(tmp_path):
    """With V = 0 (the zero head) and γ = λ = 1, GAE gives every real token its row's reward: A_t = R."""
    trainer = _ppo(tmp_path)
    batch = trainer._rollout()
    assert (batch.adv_B == 0).all()  # the 'gae' estimator's placeholder until the critic has run
    trainer.critic.prepare(batch, None)
    mask = batch.loss_mask_BT
    rewards_BT = batch.rewards_B[:, None].expand_as(mask).to(torch.float32)
    torch.testing.assert_close(batch.adv_B, whiten(rewards_BT, mask))
    torch.testing.assert_close(trainer.critic.returns_BT, torch.where(mask, rewards_BT, 0.0))
    real = batch.adv_B[mask]
    assert abs(float(real.mean())) < 1e-5 and abs(float(real.std()) - 1) < 1e-4


def test_reward_kl_coef_puts_the_kl_to_the_reference_in_the_token_rewards(tmp_path):
    trainer = _ppo(tmp_path, reward_kl_coef=0.5)
    assert trainer.ref_model is not None  # the frozen starting policy
    batch = trainer._rollout()
    ref = batch.sampler_logp_BT - 1.0  # KL estimate log μ − log π_ref = 1 on every token
    trainer.critic.prepare(batch, ref)
    lengths = batch.loss_mask_BT.sum(-1).float()
    expected = float((batch.rewards_B - 0.5 * lengths).mean())
    assert trainer.critic.metrics()["critic/token_reward_sum"] == pytest.approx(expected, rel=1e-6)


def test_lora_policy_gets_a_lora_critic(tmp_path):
    from gspo.models.lora import apply_lora

    model, tok = tiny_model_and_tokenizer(chat=False)
    model = apply_lora(model, r=4, alpha=8, dropout=0.0, target_modules="all-linear")
    policy_adapters = {k: v.clone() for k, v in model.state_dict().items() if "lora_" in k}
    trainer = _ppo(tmp_path, model=(model, tok), lora_r=4, lora_alpha=8)
    trainable = [n for n, p in trainer.critic.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    frozen = sum(p.numel() for p in trainer.critic.model.parameters() if not p.requires_grad)
    assert frozen > 4 * sum(p.numel() for n, p in trainer.critic.model.named_parameters() if p.requires_grad)
    critic_before = _critic_params(trainer)
    trainer.train_step()
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in policy_adapters.items())
    changed = {k for k, v in _critic_params(trainer).items() if not torch.equal(v, critic_before[k])}
    assert changed and all("lora_" in k or k.startswith("head.") for k in changed)


def test_critic_path_loads_another_model_and_checks_its_vocabulary(tmp_path):
    folder = save_tiny_model(tmp_path / "critic", chat=False, hidden=48, seed=5)
    trainer = _ppo(tmp_path / "a", critic_path=str(folder))
    assert trainer.critic.model.head.in_features == 48  # the critic's own width, not the policy's 32
    assert math.isfinite(trainer.train_step()["critic/value_loss"])
    small = tmp_path / "small"
    m, t = tiny_model_and_tokenizer(chat=False)
    m.resize_token_embeddings(20)
    m.save_pretrained(small)
    t.save_pretrained(small)
    with pytest.raises(ConfigError, match="critic_path: .*vocabulary has 20 tokens"):
        _ppo(tmp_path / "b", critic_path=str(small))


def test_missing_critic_path_is_refused_before_any_model_loads():
    from gspo.config import GSPOConfig

    for missing in ("/no/such/critic", "~no-such-user-here/critic", "runs/none\x00"):
        with pytest.raises(ConfigError, match="critic_path: must be an existing model folder"):
            GSPOConfig(algorithm="ppo", critic_path=missing).validate()
    with pytest.raises(ConfigError, match="critic_path: applies to algorithms with a critic"):
        GSPOConfig(algorithm="grpo", critic_path="embedded").validate()
    with pytest.raises(ConfigError, match="critic_path: must name the critic's weights when load_in_4bit"):
        GSPOConfig(algorithm="ppo", lora_r=8, load_in_4bit=True).validate()


def test_gradient_checkpointing_applies_to_the_critic(tmp_path):
    trainer = _ppo(tmp_path, gradient_checkpointing=True)
    backbone = trainer.critic.model.backbone
    assert getattr(backbone, "is_activation_checkpointing", None) or backbone.is_gradient_checkpointing
    assert math.isfinite(trainer.train_step()["critic/value_loss"])


@pytest.mark.parametrize("num_epochs", [1, 2])
def test_micro_batch_size_does_not_change_the_ppo_update(tmp_path, num_epochs):
    """Float64, 1 vs 8 rows per micro-batch: policy and critic end equal (the whole PPO update)."""
    results = []
    for mbs in (1, 8):
        model, tok = tiny_model_and_tokenizer(chat=False)
        trainer = _ppo(
            tmp_path / str(mbs),
            model=(model.double(), tok),
            micro_batch_size=mbs,
            max_steps=2,
            num_epochs=num_epochs,
            max_grad_norm=0.0,
        )
        trainer.train()
        results.append((model_params(trainer.model), _critic_params(trainer)))
    assert results[0][1]["head.weight"].dtype == torch.float64
    _assert_same(results[0][0], results[1][0], atol=1e-10)
    _assert_same(results[0][1], results[1][1], atol=1e-10)


def test_resume_with_a_critic_matches_an_uninterrupted_run(tmp_path):
    full = _ppo(tmp_path / "a", max_steps=4, save_steps=2)
    full.train()
    first = _ppo(tmp_path / "b", max_steps=2, save_steps=2)
    first.train()
    final = tmp_path / "b" / "run" / "final"
    assert (final / "critic" / "critic.safetensors").is_file()
    assert "critic/critic.safetensors" in json.loads((final / "manifest.json").read_text())["files"]
    other = tiny_model_and_tokenizer(chat=False, seed=99)  # different init: must be overwritten
    resumed = _ppo(tmp_path / "b", model=other, max_steps=4, save_steps=2, resume=True)
    with torch.no_grad():  # so must the critic's
        resumed.critic.model.head.weight.fill_(3.0)
    assert resumed.train()["steps"] == 4
    _assert_same(model_params(full.model), model_params(resumed.model), atol=1e-6)
    _assert_same(_critic_params(full), _critic_params(resumed), atol=1e-6)
    assert full.critic.optimizer.state_dict()["state"].keys() == resumed.critic.optimizer.state_dict()["state"].keys()


def test_resuming_a_ppo_run_from_a_checkpoint_without_a_critic_is_refused(tmp_path):
    from gspo.trainer.checkpoint import CheckpointError

    model, tok = tiny_model_and_tokenizer(chat=False)
    GSPOTrainer(model, tok, [count_a_reward], make_rows(), _config(tmp_path, algorithm="grpo", max_steps=1)).train()
    with pytest.raises(CheckpointError, match="no critic"):
        _ppo(tmp_path, max_steps=2, resume=True).train()
