"""Speed must not change what is computed: the trainer with every fast path on equals a straightforward one.

Fast paths (see benchmarks/README.md, "Recommended changes"): the sampler's preallocated KV cache,
prefill-once-per-prompt (``repeats``) and finished-row compaction; prompt sharing in scoring; the
output layer keeping its softmax for backward; the packed scoring forward; the old-log-prob pass skipping the first minibatch.
The reference turns all of them off: the model's own growing cache, every prompt row prefilled,
full batches to the end, one full padded forward per row, recomputed logits in backward, every old
log-prob recomputed.
"""

from __future__ import annotations

import pytest
import torch

import gspo.losses.logprobs as logprobs_module
import gspo.sampling.generate as generate_module
import gspo.trainer.rollout as rollout_module
from gspo.trainer import GSPOTrainer
from tests.helpers_tiny import tiny_model_and_tokenizer
from tests.trainer.conftest import count_a_reward, make_rows, trainer_config


def _run(tmp_path, straightforward: bool, monkeypatch, arch: str, pack: bool = True):
    model, tok = tiny_model_and_tokenizer(arch=arch, chat=False)
    cfg = trainer_config(
        tmp_path,
        num_epochs=2,
        max_steps=3,
        seed=5,
        share_prompts=not straightforward,
        pack_sequences=pack and not straightforward,
        old_logp_source="recompute" if straightforward else "auto",
    )
    with monkeypatch.context() as m:
        if straightforward:
            m.setattr(generate_module, "preallocated_cache", lambda model, capacity: None)
            m.setattr(logprobs_module, "SAVE_PROBS_BYTES", 0)
            real_sample = generate_module.sample

            def plain_sample(model_, ids_bP, mask_bP, *, repeats=1, **kw):
                return real_sample(
                    model_,
                    ids_bP.repeat_interleave(repeats, 0),
                    mask_bP.repeat_interleave(repeats, 0),
                    compact=False,
                    **kw,
                )

            m.setattr(rollout_module, "sample", plain_sample)  # the trainer samples in rollout.py
        trainer = GSPOTrainer(model, tok, [count_a_reward], make_rows(), cfg)
        if straightforward:
            m.setattr(trainer, "reuse_first_minibatch", False)  # recompute π_old for every row
        history = [trainer.train_step() for _ in range(cfg.max_steps)]
    return history, {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("pack", [True, False], ids=["packed", "kv-shared"])
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_fast_trainer_equals_straightforward_trainer(tmp_path, monkeypatch, arch, pack):
    import gspo.sampling.scoring as scoring

    monkeypatch.setattr(scoring, "SHARE_MIN_MACS", 0)  # share (and pack) even on a tiny model, to test it
    fast, fast_params = _run(tmp_path / "fast", False, monkeypatch, arch, pack)
    plain, plain_params = _run(tmp_path / "plain", True, monkeypatch, arch)
    for f, p in zip(fast, plain):
        assert f["reward/mean"] == p["reward/mean"]  # the same completions were sampled
        assert f["completion/length_mean"] == p["completion/length_mean"]
        for key in ("loss", "ratio_mean", "clip_frac", "entropy"):
            assert f[key] == pytest.approx(p[key], rel=1e-4, abs=1e-5), key
    assert fast[-1]["optimizer_steps"] == 3 * 2 * 2
    # 12 Adam steps of lr 1e-2 (each moves a weight by up to 1e-2) amplify float32 rounding: measured 2.7e-5
    for name in fast_params:
        torch.testing.assert_close(fast_params[name], plain_params[name], rtol=0, atol=1e-4, msg=name)
