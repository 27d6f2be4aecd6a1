"""Tests of gspo.sampling.generate: EOS/pad handling, early stop, seeding, greedy, left padding, logp."""

from __future__ import annotations

import pytest
import torch

from gspo.sampling import encode_prompts, position_ids_from_mask, sample, special_token_ids
from gspo.sampling.generate import _filter_logits
from tests.helpers_tiny import ForcedEOS

PROMPTS = ["hello world", "a", [{"role": "user", "content": "2+2?"}], "abc def ghi jkl"]


def _batch(tok, prompts=PROMPTS):
    return encode_prompts(tok, prompts)


def _run(model, tok, ids_BP, mask_BP, **kw):
    eos, pad = special_token_ids(tok, model)
    kw.setdefault("max_new_tokens", 12)
    return sample(model, ids_BP, mask_BP, eos_token_ids=eos, pad_token_id=pad, **kw)


def _full_forward_logits(model, rollout):
    ids_BS, mask_BS = rollout.sequences()
    with torch.no_grad():
        return model(input_ids=ids_BS, attention_mask=mask_BS, position_ids=position_ids_from_mask(mask_BS)).logits


def test_eos_then_pad(llama_and_tok):
    model, tok = llama_and_tok
    eos, pad = tok.eos_token_id, tok.pad_token_id
    assert eos != pad
    wrapped = ForcedEOS(model, eos, eos_at=[2, 5, None], ban_ids=(eos, pad))
    ids_BP, mask_BP = _batch(tok, ["hi", "hello there", "x"])
    r = sample(
        wrapped,
        ids_BP,
        mask_BP,
        max_new_tokens=8,
        eos_token_ids=[eos],
        pad_token_id=pad,
        generator=torch.Generator().manual_seed(0),
    )
    assert r.completion_ids_BT.shape == (3, 8)
    assert r.completion_mask_BT.tolist() == [[1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0, 0], [1] * 8]
    assert r.finished_B.tolist() == [True, True, False]
    assert r.completion_ids_BT[0, 1] == eos and r.completion_ids_BT[1, 4] == eos
    assert (r.completion_ids_BT[r.completion_mask_BT == 0] == pad).all()
    assert not (r.completion_ids_BT[2] == eos).any()
    assert (r.logp_BT[r.completion_mask_BT == 0] == 0).all()
    assert (r.logp_BT[r.completion_mask_BT == 1] <= 0).all()
    assert r.logp_BT[0, 1] == pytest.approx(0.0, abs=1e-6)  # a forced EOS has probability ~1
    assert (r.logp_BT[2] < 0).all()
    assert r.completion_ids_BT.dtype == torch.long and r.logp_BT.dtype == torch.float32
    assert torch.equal(r.prompt_ids_BP, ids_BP) and torch.equal(r.prompt_mask_BP, mask_BP)


def test_any_of_several_eos_ids_stops(llama_and_tok):
    model, tok = llama_and_tok
    other_eos = tok.convert_tokens_to_ids("!")
    wrapped = ForcedEOS(model, other_eos, eos_at=[3], ban_ids=(tok.eos_token_id, other_eos))
    ids_BP, mask_BP = _batch(tok, ["hi"])
    r = sample(
        wrapped,
        ids_BP,
        mask_BP,
        max_new_tokens=10,
        eos_token_ids=[tok.eos_token_id, other_eos],
        pad_token_id=tok.pad_token_id,
        greedy=True,
    )
    assert r.finished_B.tolist() == [True]
    assert r.completion_ids_BT.shape == (1, 3) and r.completion_ids_BT[0, -1] == other_eos


def test_early_stop_and_prompt_run_once(llama_and_tok):
    model, tok = llama_and_tok
    wrapped = ForcedEOS(model, tok.eos_token_id, eos_at=[2, 3], ban_ids=(tok.eos_token_id,))
    ids_BP, mask_BP = _batch(tok, ["hi", "hello"])
    r = sample(
        wrapped,
        ids_BP,
        mask_BP,
        max_new_tokens=50,
        eos_token_ids=[tok.eos_token_id],
        pad_token_id=tok.pad_token_id,
        greedy=True,
    )
    assert r.completion_ids_BT.shape == (2, 3)  # trimmed to the longest completion
    assert r.finished_B.all()
    shapes = [shape for shape, _ in wrapped.calls]
    # prefill once, then one token per step; row 0 finished at step 2, so step 3 runs row 1 alone
    assert shapes == [tuple(ids_BP.shape), (2, 1), (1, 1)]
    r_full = sample(
        ForcedEOS(model, tok.eos_token_id, eos_at=[2, 3], ban_ids=(tok.eos_token_id,)),
        ids_BP,
        mask_BP,
        max_new_tokens=50,
        eos_token_ids=[tok.eos_token_id],
        pad_token_id=tok.pad_token_id,
        greedy=True,
        compact=False,
    )
    assert torch.equal(r_full.completion_ids_BT, r.completion_ids_BT)


def test_stop_check_every_still_trims(llama_and_tok):
    model, tok = llama_and_tok
    wrapped = ForcedEOS(model, tok.eos_token_id, eos_at=[2, 3], ban_ids=(tok.eos_token_id,))
    ids_BP, mask_BP = _batch(tok, ["hi", "hello"])
    r = sample(
        wrapped,
        ids_BP,
        mask_BP,
        max_new_tokens=50,
        eos_token_ids=[tok.eos_token_id],
        pad_token_id=tok.pad_token_id,
        greedy=True,
        stop_check_every=8,
    )
    assert len(wrapped.calls) == 8  # checked at step 8 only
    assert r.completion_ids_BT.shape == (2, 3)
    assert r.completion_mask_BT.tolist() == [[1, 1, 0], [1, 1, 1]]


def test_eval_mode_during_sampling_and_restored(llama_and_tok):
    model, tok = llama_and_tok
    wrapped = ForcedEOS(model, tok.eos_token_id, eos_at=[None])
    wrapped.train()
    ids_BP, mask_BP = _batch(tok, ["hi"])
    _run(wrapped, tok, ids_BP, mask_BP, max_new_tokens=3, greedy=True)
    assert all(not training for _, training in wrapped.calls)
    assert wrapped.training and model.training
    model.eval()


def test_seed_reproducible(llama_and_tok):
    model, tok = llama_and_tok
    ids_BP, mask_BP = _batch(tok)

    def run(seed):
        return _run(
            model,
            tok,
            ids_BP,
            mask_BP,
            max_new_tokens=16,
            temperature=1.5,
            generator=torch.Generator().manual_seed(seed),
        )

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a.completion_ids_BT, b.completion_ids_BT)
    assert torch.equal(a.logp_BT, b.logp_BT)
    assert not torch.equal(a.completion_ids_BT[:, :4], c.completion_ids_BT[:, :4])


def test_greedy_is_argmax_and_top_k1_is_greedy(llama_and_tok):
    model, tok = llama_and_tok
    ids_BP, mask_BP = _batch(tok)
    g = _run(model, tok, ids_BP, mask_BP, greedy=True)
    logits_BSV = _full_forward_logits(model, g)
    P, T = ids_BP.shape[1], g.completion_ids_BT.shape[1]
    argmax_BT = logits_BSV[:, P - 1 : P + T - 1].argmax(-1)
    m = g.completion_mask_BT.bool()
    assert torch.equal(argmax_BT[m], g.completion_ids_BT[m])
    k1 = _run(model, tok, ids_BP, mask_BP, top_k=1, temperature=0.8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(k1.completion_ids_BT, g.completion_ids_BT)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_left_padded_batch_matches_each_prompt_alone(tiny_by_arch, arch):
    model, tok = tiny_by_arch(arch)
    ids_BP, mask_BP = _batch(tok)
    batch = _run(model, tok, ids_BP, mask_BP, greedy=True)
    for b, prompt in enumerate(PROMPTS):
        alone = _run(model, tok, *_batch(tok, [prompt]), greedy=True)
        n = int(alone.completion_mask_BT.sum())
        assert int(batch.completion_mask_BT[b].sum()) == n
        assert torch.equal(batch.completion_ids_BT[b, :n], alone.completion_ids_BT[0, :n])
        torch.testing.assert_close(batch.logp_BT[b, :n], alone.logp_BT[0, :n], atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 5, 0.9)])
def test_logp_matches_full_forward(tiny_by_arch, arch, temperature, top_k, top_p):
    model, tok = tiny_by_arch(arch)
    ids_BP, mask_BP = _batch(tok)
    r = _run(
        model,
        tok,
        ids_BP,
        mask_BP,
        max_new_tokens=16,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        generator=torch.Generator().manual_seed(7),
    )
    P, T = ids_BP.shape[1], r.completion_ids_BT.shape[1]
    logits_BTV = _full_forward_logits(model, r)[:, P - 1 : P + T - 1].float() / temperature
    ref_BT = torch.log_softmax(logits_BTV, -1).gather(-1, r.completion_ids_BT[..., None]).squeeze(-1)
    ref_BT = ref_BT * r.completion_mask_BT
    torch.testing.assert_close(r.logp_BT, ref_BT, atol=1e-5, rtol=0)


def test_works_inside_inference_mode_and_outputs_usable_in_autograd(llama_and_tok):
    model, tok = llama_and_tok
    ids_BP, mask_BP = _batch(tok, ["hi", "hello"])
    with torch.inference_mode():
        inner = _run(model, tok, ids_BP, mask_BP, max_new_tokens=4, greedy=True)
    outer = _run(model, tok, ids_BP, mask_BP, max_new_tokens=4, greedy=True)
    assert torch.equal(inner.completion_ids_BT, outer.completion_ids_BT)
    assert not outer.completion_ids_BT.is_inference() and not outer.logp_BT.is_inference()
    w_BTV = torch.randn(*outer.completion_ids_BT.shape, len(tok), requires_grad=True)
    picked_BT = w_BTV.log_softmax(-1).gather(-1, outer.completion_ids_BT[..., None]).squeeze(-1)
    ((picked_BT - outer.logp_BT) * outer.completion_mask_BT).sum().backward()
    assert w_BTV.grad is not None


def test_input_validation(llama_and_tok):
    model, tok = llama_and_tok
    ids_BP, mask_BP = _batch(tok, ["hi", "hello"])
    with pytest.raises(ValueError, match="temperature"):
        _run(model, tok, ids_BP, mask_BP, temperature=0.0)
    with pytest.raises(ValueError, match="left padded"):
        _run(model, tok, ids_BP.flip(1), mask_BP.flip(1))
    with pytest.raises(ValueError, match="top_p"):
        _run(model, tok, ids_BP, mask_BP, top_p=0.0)


def test_filter_logits_top_k_and_top_p():
    logits_BV = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    keep = lambda x: torch.isfinite(x)[0].tolist()  # noqa: E731
    assert keep(_filter_logits(logits_BV, top_k=2, top_p=1.0)) == [True, True, False, False]
    assert keep(_filter_logits(logits_BV, top_k=0, top_p=0.8)) == [True, True, False, False]
    assert keep(_filter_logits(logits_BV, top_k=0, top_p=0.81)) == [True, True, True, False]
    assert keep(_filter_logits(logits_BV, top_k=0, top_p=0.1)) == [True, False, False, False]
    assert keep(_filter_logits(logits_BV.flip(-1), top_k=0, top_p=0.8)) == [False, False, True, True]


def test_layout_independent_sampling_does_not_depend_on_the_split(llama_and_tok):
    """Rows sampled as one global batch equal the same rows sampled in two shards (data parallelism)."""
    import torch

    from gspo.sampling import encode_prompts, sample

    model, tok = llama_and_tok
    ids, mask = encode_prompts(tok, ["ab", "hello", "x", "1+2="])
    kw = dict(
        max_new_tokens=6, temperature=1.0, top_k=20, eos_token_ids=[tok.eos_token_id], pad_token_id=tok.pad_token_id
    )
    whole = sample(model, ids, mask, generator=torch.Generator().manual_seed(5), global_rows=4, **kw)
    parts = [
        sample(
            model, ids[a:b], mask[a:b], generator=torch.Generator().manual_seed(5), row_offset=a, global_rows=4, **kw
        )
        for a, b in ((0, 1), (1, 4))
    ]
    got = torch.nn.utils.rnn.pad_sequence(
        [r for p in parts for r in p.completion_ids_BT], batch_first=True, padding_value=tok.pad_token_id
    )
    T = whole.completion_ids_BT.shape[1]
    assert torch.equal(got[:, :T], whole.completion_ids_BT)
    # and it is a real sampler: different seeds give different tokens
    other = sample(model, ids, mask, generator=torch.Generator().manual_seed(6), global_rows=4, **kw)
    assert not torch.equal(other.completion_ids_BT[:, :2], whole.completion_ids_BT[:, :2])


def _straightforward(monkeypatch):
    """Context: sample() with the model's own growing DynamicCache instead of the preallocated one."""
    import gspo.sampling.generate as generate

    monkeypatch.setattr(generate, "preallocated_cache", lambda model, capacity: None)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_fast_paths_match_the_straightforward_sampler(tiny_by_arch, arch, monkeypatch):
    """Preallocated KV cache + prefill-once repeats + compaction == DynamicCache, repeated prompts, full batch."""
    model, tok = tiny_by_arch(arch)
    ids_bP, mask_bP = _batch(tok)
    G = 3
    eos, pad = special_token_ids(tok, model)
    # end rows early and at different steps, so compaction happens several times
    wrapped = ForcedEOS(model, eos[0], eos_at=[2, None, 4, 2, 7, 3, None, 5, 2, 6, 9, 4])
    kw = dict(max_new_tokens=10, temperature=0.9, top_k=30, eos_token_ids=eos, pad_token_id=pad, global_rows=4 * G)
    wrapped.config = model.config  # let the sampler build its preallocated cache through the wrapper
    fast = sample(wrapped, ids_bP, mask_bP, generator=torch.Generator().manual_seed(11), repeats=G, **kw)
    assert len(wrapped.calls) > 1 and wrapped.calls[-1][0][0] < 4 * G  # the batch did shrink
    with monkeypatch.context() as m:
        _straightforward(m)
        wrapped.calls.clear()
        plain = sample(
            wrapped,
            ids_bP.repeat_interleave(G, 0),
            mask_bP.repeat_interleave(G, 0),
            generator=torch.Generator().manual_seed(11),
            compact=False,
            **kw,
        )
    assert all(shape[0] == 4 * G for shape, _ in wrapped.calls)
    assert torch.equal(fast.prompt_ids_BP, plain.prompt_ids_BP)
    assert torch.equal(fast.completion_ids_BT, plain.completion_ids_BT)
    assert torch.equal(fast.completion_mask_BT, plain.completion_mask_BT)
    assert torch.equal(fast.finished_B, plain.finished_B)
    torch.testing.assert_close(fast.logp_BT, plain.logp_BT, atol=1e-5, rtol=0)
    # greedy too (no ForcedEOS: the model's own stopping)
    g_fast = _run(model, tok, ids_bP, mask_bP, greedy=True, repeats=2)
    with monkeypatch.context() as m:
        _straightforward(m)
        g_plain = _run(
            model, tok, ids_bP.repeat_interleave(2, 0), mask_bP.repeat_interleave(2, 0), greedy=True, compact=False
        )
    assert torch.equal(g_fast.completion_ids_BT, g_plain.completion_ids_BT)


def test_preallocated_layer_equals_dynamic_layer_and_grows():
    from transformers.cache_utils import DynamicLayer

    from gspo.sampling.kv_cache import PreallocatedLayer

    gen = torch.Generator().manual_seed(0)
    fast, plain = PreallocatedLayer(capacity=5), DynamicLayer()
    for new in (3, 1, 1, 1, 4, 1):  # overflows the capacity of 5 twice
        k, v = torch.randn(2, 3, new, 4, generator=gen), torch.randn(2, 3, new, 4, generator=gen)
        fk, fv = fast.update(k, v)
        pk, pv = plain.update(k, v)
        assert torch.equal(fk, pk) and torch.equal(fv, pv)
        assert fast.get_seq_length() == plain.get_seq_length()
    idx = torch.tensor([1, 1, 0])
    fast.batch_select_indices(idx), plain.batch_select_indices(idx)
    fast.batch_repeat_interleave(2), plain.batch_repeat_interleave(2)
    fast.crop(-2), plain.crop(-2)
    assert torch.equal(fast.keys, plain.keys) and torch.equal(fast.values, plain.values)
    k = torch.randn(6, 3, 1, 4, generator=gen)
    assert torch.equal(fast.update(k, k)[0], plain.update(k, k)[0])


def test_repeats_validation(llama_and_tok):
    model, tok = llama_and_tok
    with pytest.raises(ValueError, match="repeats"):
        _run(model, tok, *_batch(tok, ["hi"]), repeats=0)
