"""LoRA: only adapters train, the KL reference is the adapter-disabled model, adapters save/load/merge."""

from __future__ import annotations

import torch

from gspo.config import GSPOConfig
from gspo.models.introspect import enable_activation_checkpointing
from gspo.models.loading import load_model_and_tokenizer
from gspo.models.lora import apply_lora, load_adapter_model, merge_adapter, reference_context
from gspo.sampling.scoring import completion_logprobs
from gspo.trainer import GSPOTrainer
from tests.helpers_tiny import tiny_model_and_tokenizer
from tests.trainer.conftest import count_a_reward, make_rows


def _saved_tiny(tmp_path):
    model, tok = tiny_model_and_tokenizer(chat=False)
    folder = tmp_path / "base"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return load_model_and_tokenizer(str(folder))


def _cfg(tmp_path, **kw):
    base = dict(
        model="tiny",
        prompts_per_step=4,
        group_size=4,
        max_new_tokens=6,
        micro_batch_size=8,
        learning_rate=5e-2,
        max_steps=3,
        output_dir=str(tmp_path / "run"),
        eval_limit=0,
        progress=False,
        lora_r=4,
    )
    base.update(kw)
    return GSPOConfig(**base)


def _logp(model, tok):
    g = torch.Generator().manual_seed(0)
    p = torch.randint(3, 60, (2, 5), generator=g)
    c = torch.randint(3, 60, (2, 4), generator=g)
    with torch.no_grad():
        return completion_logprobs(model, p, torch.ones_like(p), c, torch.ones_like(c))[0]


def test_lora_trains_only_adapters_and_kl_uses_the_same_weights(tmp_path):
    model, tok = _saved_tiny(tmp_path)
    base_logp = _logp(model, tok)
    peft_model = apply_lora(model, r=4, alpha=16, dropout=0.0, target_modules="all-linear")
    base_before = {k: v.clone() for k, v in peft_model.state_dict().items() if "lora_" not in k}
    lora_before = {k: v.clone() for k, v in peft_model.state_dict().items() if "lora_" in k}
    trainer = GSPOTrainer(peft_model, tok, [count_a_reward], make_rows(), _cfg(tmp_path, kl_coef=0.1))
    assert trainer.ref_model is None, "LoRA must not copy the model for the KL reference"
    metrics = [trainer.train_step() for _ in range(3)]
    after = peft_model.state_dict()
    for k, v in base_before.items():
        assert torch.equal(v, after[k]), f"base weight {k} changed"
    assert any(not torch.equal(v, after[k]) for k, v in lora_before.items())
    assert metrics[-1]["kl"] > 0.0
    # the reference is the base model: adapter disabled, the trained model scores exactly as before training
    with reference_context(peft_model):
        torch.testing.assert_close(_logp(peft_model, tok), base_logp, rtol=0, atol=0)
    assert not torch.allclose(_logp(peft_model, tok), base_logp)


def test_adapter_save_load_and_merge_give_the_same_logprobs(tmp_path):
    model, tok = _saved_tiny(tmp_path)
    peft_model = apply_lora(model, r=4, alpha=16, dropout=0.0, target_modules="q_proj,v_proj")
    GSPOTrainer(peft_model, tok, [count_a_reward], make_rows(), _cfg(tmp_path)).train()
    trained = _logp(peft_model, tok)
    final = tmp_path / "run" / "final"
    assert (final / "adapter_config.json").is_file() and (final / "manifest.json").is_file()
    loaded, tok2 = load_adapter_model(final)
    torch.testing.assert_close(_logp(loaded, tok2), trained, rtol=1e-5, atol=1e-6)
    merged_dir = merge_adapter(final, tmp_path / "merged")
    merged, tok3 = load_model_and_tokenizer(str(merged_dir))
    torch.testing.assert_close(_logp(merged, tok3), trained, rtol=1e-5, atol=1e-5)


def test_lora_run_resumes_from_an_adapter_checkpoint(tmp_path):
    model, tok = _saved_tiny(tmp_path)
    GSPOTrainer(
        apply_lora(model, r=4, alpha=16, dropout=0.0, target_modules="all-linear"),
        tok,
        [count_a_reward],
        make_rows(),
        _cfg(tmp_path / "a", max_steps=2),
    ).train()
    ref_model, _ = _saved_tiny(tmp_path / "x")
    full = apply_lora(ref_model, r=4, alpha=16, dropout=0.0, target_modules="all-linear")
    GSPOTrainer(full, tok, [count_a_reward], make_rows(), _cfg(tmp_path / "b", max_steps=2, save_steps=1)).train()
    model_c, _ = _saved_tiny(tmp_path / "y")
    resumed = apply_lora(model_c, r=4, alpha=16, dropout=0.0, target_modules="all-linear")
    trainer = GSPOTrainer(resumed, tok, [count_a_reward], make_rows(), _cfg(tmp_path / "b", max_steps=2, resume=True))
    assert trainer.train()["steps"] == 2
    for (_k, v), (_k2, v2) in zip(full.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(v, v2, rtol=0, atol=1e-6)


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        model, _ = tiny_model_and_tokenizer(chat=False)
        model.train()
        if checkpointing:
            assert enable_activation_checkpointing(model)
        g = torch.Generator().manual_seed(0)
        p = torch.randint(3, 60, (2, 5), generator=g)
        c = torch.randint(3, 60, (2, 4), generator=g)
        logp, _ = completion_logprobs(model, p, torch.ones_like(p), c, torch.ones_like(c))
        logp.sum().backward()
        grads.append({k: v.grad.clone() for k, v in model.named_parameters() if v.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-5, atol=1e-7)
