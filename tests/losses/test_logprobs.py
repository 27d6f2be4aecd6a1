"""Chunked completion log-probs equal the plain full-logits computation, values and gradients."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from gspo.losses import chunked_token_logprobs


def _tiny_lm(vocab=300, seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(cfg).float()


@pytest.fixture(params=["saved-probs", "recompute"])
def backward_mode(request, monkeypatch):
    """Both backward paths: probabilities kept from forward (small inputs) or logits recomputed."""
    import gspo.losses.logprobs as lp

    if request.param == "recompute":
        monkeypatch.setattr(lp, "SAVE_PROBS_BYTES", 0)
    return request.param


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_chunked_logprobs_match_log_softmax_on_a_tiny_causal_lm(temperature, chunk_size, backward_mode):
    model = _tiny_lm()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 300, (3, 11), generator=g)
    prompt_len = 4
    targets = ids[:, prompt_len:]

    # plain: full logits, log_softmax, gather over completion positions
    out = model(ids)
    logits = out.logits[:, prompt_len - 1 : -1].float() / temperature
    ref = torch.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1)
    ref_grads = torch.autograd.grad(ref.sum() * 0.5 + (ref[:, 0] * 2).sum(), list(model.parameters()))

    # chunked: final hidden states of completion positions only, and the output layer
    hidden = model.model(ids).last_hidden_state[:, prompt_len - 1 : -1]
    logp, entropy = chunked_token_logprobs(
        hidden, model.lm_head.weight, targets, temperature=temperature, chunk_size=chunk_size, with_entropy=True
    )
    grads = torch.autograd.grad(logp.sum() * 0.5 + (logp[:, 0] * 2).sum(), list(model.parameters()))

    torch.testing.assert_close(logp, ref, rtol=1e-5, atol=1e-5)
    for g_chunk, g_ref in zip(grads, ref_grads):
        torch.testing.assert_close(g_chunk, g_ref, rtol=1e-4, atol=1e-6)
    p = torch.softmax(logits, -1)
    torch.testing.assert_close(entropy, -(p * torch.log(p)).sum(-1), rtol=1e-4, atol=1e-5)


def test_gradcheck_float64_with_bias_and_temperature(backward_mode):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    weight = torch.randn(9, 4, dtype=torch.float64, generator=g, requires_grad=True)
    bias = torch.randn(9, dtype=torch.float64, generator=g, requires_grad=True)
    targets = torch.randint(0, 9, (5,), generator=g)

    def chunked(h, w, b):
        return chunked_token_logprobs(h, w, targets, bias=b, temperature=0.6, chunk_size=2)[0]

    def plain(h, w, b):
        return torch.log_softmax((h @ w.t() + b) / 0.6, -1).gather(-1, targets[:, None]).squeeze(-1)

    torch.testing.assert_close(chunked(hidden, weight, bias), plain(hidden, weight, bias), rtol=1e-12, atol=1e-12)
    gc = torch.autograd.grad(chunked(hidden, weight, bias).sum(), (hidden, weight, bias))
    gp = torch.autograd.grad(plain(hidden, weight, bias).sum(), (hidden, weight, bias))
    for a, b in zip(gc, gp):
        assert a.dtype == torch.float64
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(chunked, (hidden, weight, bias))


def test_bfloat16_hidden_states_are_scored_in_float32():
    hidden = torch.randn(2, 3, 8).bfloat16().requires_grad_(True)
    weight = torch.randn(20, 8).bfloat16().requires_grad_(True)
    targets = torch.randint(0, 20, (2, 3))
    logp, _ = chunked_token_logprobs(hidden, weight, targets)
    assert logp.dtype == torch.float32
    logp.sum().backward()
    assert hidden.grad.dtype == torch.bfloat16 and weight.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("kwargs, field", [(dict(temperature=0.0), "temperature"), (dict(chunk_size=0), "chunk_size")])
def test_bad_arguments_name_the_argument(kwargs, field):
    with pytest.raises(ValueError, match=field):
        chunked_token_logprobs(torch.zeros(2, 4), torch.zeros(5, 4), torch.zeros(2, dtype=torch.long), **kwargs)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="hidden, targets"):
        chunked_token_logprobs(torch.zeros(2, 4), torch.zeros(5, 4), torch.zeros(3, dtype=torch.long))
