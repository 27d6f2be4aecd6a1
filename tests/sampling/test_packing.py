"""The packed scoring forward (gspo.sampling.packing) equals the padded one: log-probs, entropies and
parameter gradients, on every packable architecture, with and without shared prompts."""

import pytest
import torch

import gspo.sampling.packing as packing
import gspo.sampling.scoring as scoring
from gspo.sampling.packing import PACKABLE_MODEL_TYPES, pack_layout, packed_hidden
from gspo.sampling.scoring import completion_logprobs
from tests.helpers_tiny import tiny_model_and_tokenizer


def _batch(seed: int = 3):
    """7 rows of 2 interleaved prompts (one left-padded), completions of lengths 5, 3 and 1 (right-padded)."""
    g = torch.Generator().manual_seed(seed)
    prompts = torch.randint(3, 50, (2, 6), generator=g)
    p_mask = torch.ones(2, 6, dtype=torch.long)
    p_mask[1, :3] = 0
    order = torch.tensor([0, 1, 0, 0, 1, 1, 0])
    c_ids = torch.randint(3, 50, (7, 5), generator=g)
    c_mask = torch.ones(7, 5, dtype=torch.long)
    c_mask[2, 3:] = 0
    c_mask[5, 1:] = 0
    return prompts[order], p_mask[order], c_ids, c_mask


def _logp_and_grads(model, batch, **kw):
    p_ids, p_mask, c_ids, c_mask = batch
    logp, ent = completion_logprobs(model, p_ids, p_mask, c_ids, c_mask, temperature=0.8, with_entropy=True, **kw)
    w = torch.randn(c_ids.shape, generator=torch.Generator().manual_seed(1))
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad((logp * w * c_mask).sum(), params, allow_unused=True)
    return logp, ent, grads


def _backbone_calls(model):
    backbone = getattr(model, model.base_model_prefix)
    calls: list[tuple] = []
    handles = [
        model.register_forward_pre_hook(lambda *a: calls.append("model")),
        backbone.register_forward_pre_hook(lambda m, args, kw: calls.append(kw["input_ids"].shape), with_kwargs=True),
    ]
    return calls, handles


@pytest.mark.parametrize("share", [True, False])
@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2", "mistral", "qwen3"])
def test_packed_equals_padded(arch, share, monkeypatch):
    monkeypatch.setattr(scoring, "SHARE_MIN_MACS", 0)  # tiny models skip too little to pack by default
    model, _ = tiny_model_and_tokenizer(arch=arch, chat=False)
    model.eval()
    batch = _batch()
    calls, handles = _backbone_calls(model)
    try:
        packed, ent_k, grads_k = _logp_and_grads(model, batch, share_prompts=share)
    finally:
        for h in handles:
            h.remove()
    completion_tokens = 5 * 5 + 3 + 1
    real_tokens = (6 + 3 if share else 4 * 6 + 3 * 3) + completion_tokens
    assert calls == [torch.Size([1, real_tokens])]  # one backbone call, real tokens only, no model forward
    plain, ent_p, grads_p = _logp_and_grads(model, batch, share_prompts=False, pack=False)
    real = batch[3].bool()
    torch.testing.assert_close(packed[real], plain[real], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent_k[real], ent_p[real], rtol=1e-4, atol=1e-5)
    assert torch.isfinite(packed).all()  # padding columns too (the loss masks them)
    for a, b in zip(grads_k, grads_p):
        if a is None or b is None:
            assert a is None or not a.any()
            continue
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_every_packable_family_is_tested():
    assert PACKABLE_MODEL_TYPES == {"llama", "qwen2", "gpt2", "mistral", "qwen3"}


def test_layout_by_hand():
    """Two rows of one prompt of 2 tokens, completions of 2 and 1 tokens: positions, mask, gather."""
    prompt_mask_UP = torch.tensor([[0, 1, 1]])
    completion_mask_BT = torch.tensor([[1, 1], [1, 0]])
    positions, allowed, gather = pack_layout(prompt_mask_UP, completion_mask_BT, torch.tensor([0, 0]))
    # packed: p0 p1 | a0 a1 | b0
    assert positions.tolist() == [0, 1, 2, 3, 2]
    assert allowed.long().tolist() == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 0, 0, 1],
    ]
    assert gather.tolist() == [[1, 2], [1, 1]]  # a0 from p1, a1 from a0; b0 from p1, b's padding -> p1


def test_falls_back_when_packing_does_not_apply(monkeypatch):
    """Too long, unknown family, eager attention, a short sliding window, right-padded prompts, left-padded
    completions or too little to skip: None."""
    model, _ = tiny_model_and_tokenizer(arch="llama", chat=False)
    backbone = model.model
    p_ids, p_mask, c_ids, c_mask = _batch()
    assert packed_hidden(backbone, p_ids, p_mask, c_ids, c_mask, share=True) is not None
    assert packed_hidden(backbone, p_ids, p_mask, c_ids, c_mask, share=True, min_saved_tokens=10**6) is None
    assert packed_hidden(backbone, p_ids, p_mask.flip(1), c_ids, c_mask, share=True) is None
    assert packed_hidden(backbone, p_ids, p_mask, c_ids, c_mask.flip(1), share=True) is None
    monkeypatch.setattr(packing, "PACK_MAX_TOKENS", 10)
    assert packed_hidden(backbone, p_ids, p_mask, c_ids, c_mask, share=True) is None
    monkeypatch.undo()
    monkeypatch.setattr(backbone.config, "model_type", "bloom")
    assert packed_hidden(backbone, p_ids, p_mask, c_ids, c_mask, share=True) is None
    monkeypatch.undo()
    monkeypatch.setattr(backbone.config, "sliding_window", 4, raising=False)
    assert packed_hidden(backbone, p_ids, p_mask, c_ids, c_mask, share=True) is None
    monkeypatch.undo()
    monkeypatch.setattr(backbone.config, "_attn_implementation", "eager")  # would keep [heads, N, N] scores
    assert packed_hidden(backbone, p_ids, p_mask, c_ids, c_mask, share=True) is None


def test_shared_prompts_not_packed_once_under_dropout(monkeypatch):
    """GPT-2 in training mode has dropout: rows keep their own prompt copies (no shared dropout masks)."""
    monkeypatch.setattr(scoring, "SHARE_MIN_MACS", 0)
    model, _ = tiny_model_and_tokenizer(arch="gpt2", chat=False)
    model.train()
    calls, handles = _backbone_calls(model)
    p_ids, p_mask, c_ids, c_mask = _batch()
    try:
        completion_logprobs(model, p_ids, p_mask, c_ids, c_mask)
    finally:
        for h in handles:
            h.remove()
    assert calls == [torch.Size([1, 4 * 6 + 3 * 3 + 5 * 5 + 3 + 1])]
