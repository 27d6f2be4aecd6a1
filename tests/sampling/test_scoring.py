"""The trainer's scoring pass equals a plain full-logits forward, on several architectures."""

import pytest
import torch

from gspo.models.introspect import cache_argument
from gspo.sampling.scoring import completion_logprobs
from tests.helpers_tiny import tiny_model_and_tokenizer


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_fast_path_equals_plain_log_softmax(arch, temperature):
    model, _ = tiny_model_and_tokenizer(arch=arch, chat=False)
    g = torch.Generator().manual_seed(0)
    p_ids = torch.randint(3, 50, (3, 5), generator=g)
    p_mask = torch.ones(3, 5, dtype=torch.long)
    p_mask[0, :2] = 0  # left padding
    c_ids = torch.randint(3, 50, (3, 4), generator=g)
    c_mask = torch.ones(3, 4, dtype=torch.long)
    c_mask[1, 2:] = 0
    logp, ent = completion_logprobs(model, p_ids, p_mask, c_ids, c_mask, temperature=temperature, with_entropy=True)

    ids = torch.cat([p_ids, c_ids], 1)
    mask = torch.cat([p_mask, c_mask], 1)
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, 4:-1].float() / temperature
    ref = torch.log_softmax(logits, -1).gather(-1, c_ids[..., None]).squeeze(-1)
    real = c_mask.bool()
    torch.testing.assert_close(logp[real], ref[real], rtol=1e-5, atol=1e-5)
    p = torch.softmax(logits, -1)
    torch.testing.assert_close(ent[real], -(p * p.log()).sum(-1)[real], rtol=1e-4, atol=1e-4)


def _with_pre_5_24_backbone(model):
    """Give the model's backbone a forward that takes the KV cache as ``past_key_values`` (older
    transformers, remote-code models)."""
    backbone = getattr(model, model.base_model_prefix)
    current = backbone.forward
    assert cache_argument(backbone) == "cache"  # the locked transformers uses the new name

    def forward(input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None, **kw):
        kw.setdefault("cache", past_key_values)  # the outer model's own forward still calls it with `cache`
        return current(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=use_cache, **kw
        )  # its output still answers to .past_key_values

    backbone.forward = forward
    backbone.__dict__.pop("_gspo_forward_parameters", None)
    assert cache_argument(backbone) == "past_key_values"
    return model


@pytest.mark.parametrize("cache_name", ["cache", "past_key_values"])
@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_prompt_sharing_equals_one_forward_per_row(arch, cache_name, monkeypatch):
    """Groups of rows with one prompt: prompt computed once, same log-probs and parameter gradients,
    whichever name the model's forward gives its KV cache."""
    import gspo.sampling.scoring as scoring

    monkeypatch.setattr(scoring, "SHARE_MIN_MACS", 0)  # tiny models save too little to share by default
    model, _ = tiny_model_and_tokenizer(arch=arch, chat=False)
    if cache_name == "past_key_values":
        _with_pre_5_24_backbone(model)
    model.eval()  # no dropout (GPT-2 has some): both passes must see the same function
    g = torch.Generator().manual_seed(3)
    prompts = torch.randint(3, 50, (2, 6), generator=g)
    p_mask = torch.ones(2, 6, dtype=torch.long)
    p_mask[1, :3] = 0  # left padding on the second prompt
    order = torch.tensor([0, 1, 0, 0, 1, 1, 0])  # groups interleaved, as in a shuffled minibatch
    p_ids, p_mask = prompts[order], p_mask[order]
    c_ids = torch.randint(3, 50, (7, 5), generator=g)
    c_mask = torch.ones(7, 5, dtype=torch.long)
    c_mask[2, 3:] = 0
    c_mask[5, 1:] = 0

    calls = []
    handle = model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        shared, ent_s = completion_logprobs(
            model, p_ids, p_mask, c_ids, c_mask, temperature=0.8, with_entropy=True, pack=False
        )
    finally:
        handle.remove()
    assert not calls  # the shared path runs the backbone directly (twice: prompts, then completions)
    w = torch.randn(7, 5, generator=g)
    grads_s = torch.autograd.grad(
        (shared * w * c_mask).sum(), [p for p in model.parameters() if p.requires_grad], allow_unused=True
    )
    plain, ent_p = completion_logprobs(
        model, p_ids, p_mask, c_ids, c_mask, temperature=0.8, with_entropy=True, share_prompts=False, pack=False
    )
    grads_p = torch.autograd.grad(
        (plain * w * c_mask).sum(), [p for p in model.parameters() if p.requires_grad], allow_unused=True
    )
    real = c_mask.bool()
    torch.testing.assert_close(shared[real], plain[real], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent_s[real], ent_p[real], rtol=1e-4, atol=1e-5)
    for a, b in zip(grads_s, grads_p):
        if a is None or b is None:
            assert a is None or not a.any()
            continue
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def _shares_one_prompt(model, rows: int) -> bool:
    """Score ``rows`` completions of one prompt; True when the model's own forward did not run (shared path)."""
    p_ids = torch.randint(3, 50, (1, 4)).repeat(rows, 1)
    calls = []
    handle = model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        completion_logprobs(
            model,
            p_ids,
            torch.ones_like(p_ids),
            torch.randint(3, 50, (rows, 2)),
            torch.ones(rows, 2, dtype=torch.long),
            pack=False,  # the KV-cache sharing path (packing: tests/sampling/test_packing.py)
        )
    finally:
        handle.remove()
    return not calls


def test_prompt_sharing_is_off_with_dropout_in_training(monkeypatch):
    import gspo.sampling.scoring as scoring

    monkeypatch.setattr(scoring, "SHARE_MIN_MACS", 0)
    model, _ = tiny_model_and_tokenizer(arch="gpt2", chat=False)  # GPT-2 configs have dropout
    model.train()
    assert not _shares_one_prompt(model, rows=3)


@pytest.mark.parametrize("threshold, shared", [(None, False), (0, True)])
def test_prompt_sharing_only_when_it_saves_enough_work(monkeypatch, threshold, shared):
    """A tiny model saves too few multiply-adds to pay for a second backbone call: no sharing by default."""
    import gspo.sampling.scoring as scoring

    if threshold is not None:
        monkeypatch.setattr(scoring, "SHARE_MIN_MACS", threshold)
    model, _ = tiny_model_and_tokenizer(arch="llama", chat=False)
    model.eval()
    assert _shares_one_prompt(model, rows=4) == shared
