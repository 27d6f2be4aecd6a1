"""What-if prototypes: candidate changes to src/gspo, applied by monkeypatching *in the benchmark process
only*, so their gain can be measured before anyone edits the library. Nothing here is imported by gspo.

Historical since R1-R8 were applied to src/ (see benchmarks/README.md): the prototypes patch functions
as they were at commit 2ecd446, so reproduce the projections from a checkout of that commit.

    .venv-bench/bin/python benchmarks/whatif.py --check                                 # numerics of the prototypes
    .venv-bench/bin/python benchmarks/whatif.py --model tiny-151936 --variants base,choose,logprob,adamw,all

Each variant runs in its own process (the bench_vs_trl gspo configuration: 32 completions forced to
full length, 4 optimizer steps per rollout, micro-batches of 8), alternating base, v1, v2, ..., base,
v1, ...; the table gives s/optimizer step, the gain against base and peak RSS.

Variants (each names the src/ function it would change):

- ``choose``   gspo/sampling/generate.py ``_choose``: no ``/ temperature`` copy at τ = 1, and inverse-CDF
  sampling (``cumsum`` + ``searchsorted``, one uniform per row) instead of ``torch.multinomial``, which
  on CPU costs ~0.5 s per call on a [32, 151936] distribution.
- ``logprob``  gspo/losses/logprobs.py ``_ChunkedTokenLogProb``: ``log_softmax`` (one fused kernel)
  instead of ``logsumexp`` + subtraction; entropy as a row dot product (no [N, V] temporary); the
  softmax kept from forward for backward (when it fits a budget) instead of recomputing the logits
  matmul and ``exp`` in backward.
- ``adamw``    gspo/trainer/optim.py ``build_optimizer``: ``AdamW(fused=True)`` instead of ``foreach=True``.
- ``nohead``   gspo/trainer/scoring.py ``completion_logprobs``: ``logits_to_keep=<empty index>``
  instead of ``1``, so the scoring forward computes no logits at all (the hook takes the hidden states).
- ``prefill``  gspo/sampling/generate.py ``_sample_loop``: prefill each distinct prompt once and
  ``batch_repeat_interleave`` its KV cache over the group (the trainer repeats each prompt G times).
- ``prefix``   gspo/trainer/scoring.py ``completion_logprobs``: each distinct prompt of a micro-batch runs
  once (KV cache expanded over its rows, gradient flowing back through the expansion); applies to the
  old-log-prob pass and to training.
- ``groupmb``  gspo/trainer/trainer.py ``_update``: minibatches made of whole groups (a semantic
  change: which completions share an optimizer step), so ``prefix`` shares the prompt 8 ways in training.
- ``micro64``  config only: gspo's default ``micro_batch_size=64`` (old log-probs in one forward).
- ``sampler``  config only: ``old_logp_source="sampler"`` (paper section 5.4; skips the no-grad pass).
- ``malloc``   gspo/trainer/trainer.py ``GSPOTrainer.__init__`` (or the CLI) on CPU: glibc ``mallopt``
  (``M_MMAP_MAX=0``, ``M_TRIM_THRESHOLD=1 GiB``) so freed [N, V] buffers are reused instead of being
  unmapped and page-faulted in again on the next allocation (each fresh 78 MB tensor costs ~30-40 ms
  of page faults here). Applied at worker start, before torch is imported.
- ``all``      choose + logprob + adamw + nohead + prefill (library changes only, no config change).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

LIB_VARIANTS = ("choose", "logprob", "adamw", "nohead", "prefill")
PROCESS_VARIANTS = ("malloc",)


def keep_freed_memory() -> bool:
    """glibc: never return freed memory to the OS via munmap/trim, so big buffers are reused warm."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))
CONFIG_VARIANTS = {"micro64": {"micro_batch_size": 64}, "sampler": {"old_logp_source": "sampler"}}


# ============================================================================ prototypes
def fast_choose(orig):
    """``_choose`` without the full-size ``/ temperature`` copy at τ = 1 and with an in-place cumsum.

    Same draws as the library's inverse-CDF path (``rows=(offset, global_rows)``: one uniform per
    global row from the shared generator); falls back to the library for greedy / top-k / top-p.
    """
    import torch

    @functools.wraps(orig)
    def _choose(logits_BV, *, temperature, top_k, top_p, greedy, generator, rows=None, **kw):
        if greedy or (0 < top_k < logits_BV.shape[-1]) or top_p < 1.0 or kw:
            return orig(logits_BV, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
                        generator=generator, rows=rows, **kw)
        scaled_BV = logits_BV.float()
        if temperature != 1.0:
            scaled_BV = scaled_BV / temperature
        logp_full_BV = torch.log_softmax(scaled_BV, dim=-1)
        cdf_BV = logp_full_BV.exp().cumsum_(-1)  # in place: no second [B, V] buffer
        B = cdf_BV.shape[0]
        if rows is None:
            u_B = torch.rand(B, generator=generator, device=cdf_BV.device)
        else:
            offset, global_rows = rows
            u_B = torch.rand(global_rows, generator=generator, device=cdf_BV.device)[offset: offset + B]
        token_B = torch.searchsorted(cdf_BV, (u_B * cdf_BV[:, -1])[:, None], right=True).squeeze(-1)
        token_B = token_B.clamp_max(cdf_BV.shape[-1] - 1)
        logp_B = logp_full_BV.gather(-1, token_B[:, None]).squeeze(-1)
        return token_B, logp_B

    return _choose


def make_logprob_v2(save_budget_bytes: int = 512 * 2**20):
    import torch

    class ChunkedLogProbV2(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h_NH, weight_VH, bias_V, targets_N, temperature, chunk_size, with_entropy, save_probs):
            n, V = h_NH.shape[0], weight_VH.shape[0]
            dt = torch.float64 if h_NH.dtype == torch.float64 else torch.float32
            w = weight_VH.to(dt)
            logp_N = torch.empty(n, dtype=dt, device=h_NH.device)
            entropy_N = torch.empty(n if with_entropy else 0, dtype=dt, device=h_NH.device)
            lse_N = None if save_probs else torch.empty(n, dtype=dt, device=h_NH.device)
            probs = []
            for start in range(0, n, chunk_size):
                end = min(start + chunk_size, n)
                h = h_NH[start:end].to(dt)
                logits = torch.mm(h, w.t()) if bias_V is None else torch.addmm(bias_V.to(dt), h, w.t())
                if temperature != 1.0:
                    logits.div_(temperature)
                t = targets_N[start:end, None]
                logsm = torch.log_softmax(logits, dim=-1)
                logp_N[start:end] = logsm.gather(-1, t).squeeze(-1)
                if not save_probs and lse_N is not None:
                    lse_N[start:end] = logits.gather(-1, t).squeeze(-1) - logp_N[start:end]
                del logits
                if with_entropy or save_probs:
                    p = logsm.exp()
                    if with_entropy:  # -Σ p log p as a batched row dot product (no [C, V] temporary)
                        entropy_N[start:end] = -torch.bmm(p[:, None, :], logsm[:, :, None]).view(-1)
                    if save_probs:
                        probs.append(p)
            ctx.save_for_backward(h_NH, weight_VH, bias_V, targets_N, *(probs if save_probs else [lse_N]))
            ctx.temperature, ctx.chunk_size, ctx.saved_probs = temperature, chunk_size, save_probs
            ctx.mark_non_differentiable(entropy_N)
            return logp_N, entropy_N

        @staticmethod
        def backward(ctx, grad_logp_N, _grad_entropy):
            h_NH, weight_VH, bias_V, targets_N, *rest = ctx.saved_tensors
            T, cs = ctx.temperature, ctx.chunk_size
            need_h, need_w, need_b = ctx.needs_input_grad[:3]
            dt = torch.float64 if h_NH.dtype == torch.float64 else torch.float32
            w = weight_VH.to(dt)
            grad_h = torch.empty_like(h_NH) if need_h else None
            grad_w = grad_b = None
            g_N = grad_logp_N.to(dt)
            for i, start in enumerate(range(0, h_NH.shape[0], cs)):
                end = min(start + cs, h_NH.shape[0])
                h = h_NH[start:end].to(dt)
                t = targets_N[start:end, None]
                if ctx.saved_probs:
                    g = rest[i]  # the saved softmax, consumed in place (backward runs once)
                else:
                    logits = torch.mm(h, w.t()) if bias_V is None else torch.addmm(bias_V.to(dt), h, w.t())
                    if T != 1.0:
                        logits.div_(T)
                    g = logits.sub_(rest[0][start:end, None]).exp_()
                g.mul_(-g_N[start:end, None]).scatter_add_(-1, t, g_N[start:end, None])
                if T != 1.0:
                    g.div_(T)
                if need_h:
                    grad_h[start:end] = torch.mm(g, w).to(h_NH.dtype)
                if need_w:
                    grad_w = torch.mm(g.t(), h) if grad_w is None else grad_w.addmm_(g.t(), h)
                if need_b:
                    grad_b = g.sum(0) if grad_b is None else grad_b.add_(g.sum(0))
            if need_w:
                grad_w = grad_w.to(weight_VH.dtype)
            if need_b:
                grad_b = grad_b.to(bias_V.dtype)
            return grad_h, grad_w, grad_b, None, None, None, None, None

    def chunked_token_logprobs(hidden, weight, targets, *, bias=None, temperature=1.0, chunk_size=None, with_entropy=False):
        if chunk_size is None:  # the library's default budget: ~128 MiB of float32 logits per chunk
            chunk_size = max(16, (1 << 25) // weight.shape[0])
        lead = targets.shape
        h_NH = hidden.reshape(-1, hidden.shape[-1])
        needs_grad = torch.is_grad_enabled() and (h_NH.requires_grad or weight.requires_grad)
        save = needs_grad and h_NH.shape[0] * weight.shape[0] * 4 <= save_budget_bytes
        logp_N, entropy_N = ChunkedLogProbV2.apply(
            h_NH, weight, bias, targets.reshape(-1).long(), float(temperature), int(chunk_size), with_entropy, save
        )
        return logp_N.view(lead), (entropy_N.view(lead) if with_entropy else None)

    return chunked_token_logprobs


def no_head_completion_logprobs(orig):
    """completion_logprobs with an empty logits_to_keep index: the forward computes no logits at all."""
    import torch

    import gspo.trainer.scoring as sc

    @functools.wraps(orig)
    def completion_logprobs(model, prompt_ids_BP, prompt_mask_BP, completion_ids_BT, completion_mask_BT, *,
                            temperature=1.0, chunk_size=None, with_entropy=False, force_plain=False, **kw):
        parts, keep = sc._fast_path_parts(model), sc._accepts_logits_to_keep(model)
        if parts is None or not keep or force_plain or kw:
            return orig(model, prompt_ids_BP, prompt_mask_BP, completion_ids_BT, completion_mask_BT,
                        temperature=temperature, chunk_size=chunk_size, with_entropy=with_entropy,
                        force_plain=force_plain, **kw)
        P, T = prompt_ids_BP.shape[1], completion_ids_BT.shape[1]
        input_ids = torch.cat([prompt_ids_BP, completion_ids_BT], dim=1)
        attention_mask = torch.cat([prompt_mask_BP.long(), completion_mask_BT.long()], dim=1)
        backbone, head = parts
        captured = {}

        def grab(_m, _i, output):
            captured["hidden"] = output[0] if isinstance(output, tuple) else output.last_hidden_state

        handle = backbone.register_forward_hook(grab)
        try:
            model(input_ids=input_ids, attention_mask=attention_mask, position_ids=sc.position_ids_from_mask(attention_mask),
                  use_cache=False, logits_to_keep=torch.empty(0, dtype=torch.long, device=input_ids.device))
        finally:
            handle.remove()
        return sc.chunked_token_logprobs(captured["hidden"][:, P - 1: P + T - 1], head.weight, completion_ids_BT,
                                         bias=head.bias, temperature=temperature, chunk_size=chunk_size,
                                         with_entropy=with_entropy)

    return completion_logprobs


def shared_prefill_loop(orig):
    """_sample_loop that prefills each distinct prompt once when rows come in equal blocks of repeats."""
    import torch

    import gspo.sampling.generate as gen

    @functools.wraps(orig)
    def _sample_loop(model, prompt_ids_BP, prompt_mask_BP, **kw):
        B = prompt_ids_BP.shape[0]
        G = 1
        for g in range(B, 1, -1):  # largest block size with identical rows inside every block
            if B % g == 0:
                ids, mask = prompt_ids_BP.view(B // g, g, -1), prompt_mask_BP.view(B // g, g, -1)
                if bool((ids == ids[:, :1]).all()) and bool((mask == mask[:, :1]).all()):
                    G = g
                    break
        if G == 1:
            return orig(model, prompt_ids_BP, prompt_mask_BP, **kw)
        real_forward = model.forward
        had_instance_forward = "forward" in vars(model)
        state = {"first": True}

        def forward(*args, **kwargs):
            if not state["first"]:
                return real_forward(*args, **kwargs)
            state["first"] = False
            sub = {k: (v[::G] if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == B else v)
                   for k, v in kwargs.items()}
            out = real_forward(*args, **sub)
            out.logits = out.logits.repeat_interleave(G, 0)
            out.past_key_values.batch_repeat_interleave(G)
            return out

        model.forward = functools.wraps(real_forward)(forward)
        try:
            return orig(model, prompt_ids_BP, prompt_mask_BP, **kw)
        finally:
            if had_instance_forward:
                model.forward = real_forward
            else:
                del model.forward  # back to the class's forward

    return _sample_loop


def prefix_shared_completion_logprobs(orig):
    """completion_logprobs that runs each distinct prompt of the micro-batch once.

    The prompt rows are de-duplicated (``torch.unique``); the backbone runs on the distinct prompts
    with a KV cache, the cache is expanded to all rows with ``batch_select_indices`` (differentiable
    indexing, so in training the gradient of every completion flows back into its shared prompt),
    and the completions run on top of it. Hidden states are the same as the full forward's (up to
    float rounding); the output layer and the loss are unchanged.
    """
    import torch

    import gspo.trainer.scoring as sc

    @functools.wraps(orig)
    def completion_logprobs(model, prompt_ids_BP, prompt_mask_BP, completion_ids_BT, completion_mask_BT, *,
                            temperature=1.0, chunk_size=None, with_entropy=False, force_plain=False, **kw):
        parts = sc._fast_path_parts(model)
        B, P = prompt_ids_BP.shape
        if parts is None or force_plain or kw or B < 2:
            return orig(model, prompt_ids_BP, prompt_mask_BP, completion_ids_BT, completion_mask_BT,
                        temperature=temperature, chunk_size=chunk_size, with_entropy=with_entropy,
                        force_plain=force_plain, **kw)
        key = torch.cat([prompt_ids_BP, prompt_mask_BP.long()], 1)
        uniq, inverse = torch.unique(key, dim=0, return_inverse=True)
        if uniq.shape[0] == B:
            return orig(model, prompt_ids_BP, prompt_mask_BP, completion_ids_BT, completion_mask_BT,
                        temperature=temperature, chunk_size=chunk_size, with_entropy=with_entropy,
                        force_plain=force_plain, **kw)
        backbone, head = parts
        u_ids, u_mask = uniq[:, :P], uniq[:, P:]
        out_p = backbone(input_ids=u_ids, attention_mask=u_mask, position_ids=sc.position_ids_from_mask(u_mask),
                         use_cache=True)
        cache = out_p.past_key_values
        cache.batch_select_indices(inverse)
        full_mask = torch.cat([prompt_mask_BP.long(), completion_mask_BT.long()], 1)
        pos_c = sc.position_ids_from_mask(full_mask)[:, P:]
        out_c = backbone(input_ids=completion_ids_BT, attention_mask=full_mask, position_ids=pos_c,
                         past_key_values=cache, use_cache=True)
        hidden_BTH = torch.cat([out_p.last_hidden_state[:, -1][inverse][:, None], out_c.last_hidden_state[:, :-1]], 1)
        return sc.chunked_token_logprobs(hidden_BTH, head.weight, completion_ids_BT, bias=head.bias,
                                         temperature=temperature, chunk_size=chunk_size, with_entropy=with_entropy)

    return completion_logprobs


def group_aligned_randperm(group_size: int, rollout: int):
    """torch.randperm replacement for the trainer's minibatch shuffle: each minibatch = whole groups."""
    import torch

    real = torch.randperm

    def randperm(n, *args, **kwargs):
        if n != rollout:
            return real(n, *args, **kwargs)
        groups = real(n // group_size, *args, **kwargs)
        return (groups[:, None] * group_size + torch.arange(group_size)).reshape(-1)

    return randperm


def apply_variant(trainer, variants: set[str]) -> None:
    import torch

    import gspo.sampling.generate as gen
    import gspo.trainer.scoring as sc
    from gspo.trainer.optim import build_scheduler

    if "choose" in variants:
        gen._choose = fast_choose(gen._choose)
    if "logprob" in variants:
        sc.chunked_token_logprobs = make_logprob_v2()
    if "nohead" in variants:
        sc_orig = sc.completion_logprobs
        import gspo.trainer.trainer as tr

        tr.completion_logprobs = no_head_completion_logprobs(sc_orig)
    if "prefill" in variants:
        gen._sample_loop = shared_prefill_loop(gen._sample_loop)
    if "prefix" in variants:
        import gspo.trainer.trainer as tr

        tr.completion_logprobs = prefix_shared_completion_logprobs(tr.completion_logprobs)
    if "groupmb" in variants:
        import gspo.trainer.trainer as tr

        tr.torch = _TorchProxy(group_aligned_randperm(trainer.config.group_size, trainer.config.rollout_size))
    if "adamw" in variants:
        cfg = trainer.config
        params = [p for p in trainer.model.parameters() if p.requires_grad]
        trainer.optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                              betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps, fused=True)
        trainer.scheduler = build_scheduler(trainer.optimizer, schedule=cfg.lr_schedule, warmup_steps=cfg.warmup_steps,
                                            total_steps=cfg.max_steps * cfg.num_minibatches * cfg.num_epochs)


class _TorchProxy:
    """The torch module with randperm replaced (so only the trainer's shuffle changes)."""

    def __init__(self, randperm):
        import torch

        self._torch, self.randperm = torch, randperm

    def __getattr__(self, name):
        return getattr(self._torch, name)


def expand(variant: str) -> set[str]:
    """'base' -> {}, 'all' -> every library prototype, 'a+b' -> {a, b} (each part expanded)."""
    out: set[str] = set()
    for part in variant.split("+"):
        if part == "all":
            out |= set(LIB_VARIANTS)
        elif part != "base":
            out.add(part)
    return out



# ============================================================================ component A/B (one process)
def components(model_name: str, threads: int, L: int = 16, reps: int = 7) -> dict:
    """Time each prototype against the library function it replaces on the step's real shapes.

    A and B alternate inside one process (A B A B ...), so machine load drifts hit both alike; the
    medians times the calls per rollout cycle give the expected saving per cycle.
    """
    import torch

    benchlib.set_threads(threads)
    import gspo.losses.logprobs as lp
    import gspo.sampling.generate as gen
    from gspo.sampling import encode_prompts

    torch.manual_seed(0)
    model, tok = benchlib.load(model_name)
    head = model.get_output_embeddings()
    V, H = head.weight.shape
    rows = 8 * L  # completion tokens per micro-batch of 8
    res = {}

    def ab(name, fa, fb, calls_per_cycle):
        ta, tb = [], []
        fa(), fb()
        for _ in range(reps):
            t = time.perf_counter(); fa(); ta.append(time.perf_counter() - t)
            t = time.perf_counter(); fb(); tb.append(time.perf_counter() - t)
        a, b = benchlib.median(ta), benchlib.median(tb)
        res[name] = dict(library_ms=1e3 * a, prototype_ms=1e3 * b, speedup=a / b, calls_per_cycle=calls_per_cycle,
                         saving_s_per_cycle=(a - b) * calls_per_cycle)
        print(f"  {name:48s} library {1e3 * a:9.2f} ms  prototype {1e3 * b:9.2f} ms  x{a / b:5.2f}  "
              f"({calls_per_cycle}/cycle: saves {(a - b) * calls_per_cycle:+.3f} s/cycle)", flush=True)

    # 1. output layer, update micro-batch: forward (with entropy) + backward
    v2 = make_logprob_v2()
    h = torch.randn(rows, H, requires_grad=True)
    w = head.weight.detach().clone().requires_grad_()
    y = torch.randint(0, V, (rows,))

    def fwd_bwd(fn):
        def run():
            lpv, _ = fn(h, w, y, with_entropy=True)
            lpv.sum().backward()
            h.grad = w.grad = None
        return run

    ab("output layer fwd+bwd, update (8 seqs)", fwd_bwd(lp.chunked_token_logprobs), fwd_bwd(v2), 4)

    # 2. output layer, old log-probs (no grad)
    def nograd(fn):
        def run():
            with torch.no_grad():
                fn(h, w, y)
        return run

    ab("output layer no-grad, old log-probs (8 seqs)", nograd(lp.chunked_token_logprobs), nograd(v2), 4)

    # 3. sampler token choice on [32, V]
    logits = torch.randn(32, V)
    fast = fast_choose(gen._choose)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    kw = dict(temperature=1.0, top_k=0, top_p=1.0, greedy=False, rows=(0, 32))
    ab("sampler _choose [32, V]", lambda: gen._choose(logits, generator=g1, **kw), lambda: fast(logits, generator=g2, **kw), L)

    # 4. AdamW step over the model's parameters: foreach (library) vs fused
    params_a = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]
    params_b = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]
    for pa, pb in zip(params_a, params_b):
        pa.grad = torch.randn_like(pa) * 1e-3
        pb.grad = pa.grad.clone()
    opt_a = torch.optim.AdamW(params_a, lr=1e-5, foreach=True)
    opt_b = torch.optim.AdamW(params_b, lr=1e-5, fused=True)
    ab("AdamW step (foreach -> fused)", opt_a.step, opt_b.step, 4)
    del params_a, params_b, opt_a, opt_b

    # 5. scoring forward: logits_to_keep=1 (library) vs an empty index (no output layer at all)
    prompts = benchlib.prompts()[:8]
    ids, mask = encode_prompts(tok, prompts)
    seq = torch.cat([ids, torch.randint(3, V, (8, L))], 1)
    m = torch.cat([mask, torch.ones(8, L, dtype=mask.dtype)], 1)
    pos = (m.cumsum(-1) - 1).clamp_min(0)
    empty = torch.empty(0, dtype=torch.long)

    def score(keep):
        def run():
            with torch.no_grad():
                model(input_ids=seq, attention_mask=m, position_ids=pos, use_cache=False, logits_to_keep=keep)
        return run

    ab("scoring forward (8 seqs): logits_to_keep 1 -> none", score(1), score(empty), 8)

    # 6. sampling prefill: 32 rows (4 prompts x 8) vs 4 rows + batch_repeat_interleave(8)
    ids4, mask4 = encode_prompts(tok, benchlib.prompts()[:4])
    ids32, mask32 = ids4.repeat_interleave(8, 0), mask4.repeat_interleave(8, 0)

    def prefill(ids_, mask_, expand):
        def run():
            with torch.inference_mode():
                out = model(input_ids=ids_, attention_mask=mask_, position_ids=(mask_.cumsum(-1) - 1).clamp_min(0),
                            use_cache=True, logits_to_keep=1)
                if expand:
                    out.past_key_values.batch_repeat_interleave(8)
        return run

    ab("sampling prefill: 32 rows -> 4 rows + KV repeat", prefill(ids32, mask32, False), prefill(ids4, mask4, True), 1)
    return res

# ============================================================================ worker / driver
def worker(a) -> None:
    if "malloc" in expand(a.variant):
        assert keep_freed_memory()
    import torch

    benchlib.set_threads(a.threads)
    from gspo.trainer import GSPOConfig, GSPOTrainer

    torch.manual_seed(0)
    model, tok = benchlib.load(a.model)
    parts = expand(a.variant)
    overrides = {}
    for v in parts & set(CONFIG_VARIANTS):
        overrides.update(CONFIG_VARIANTS[v])
    cfg = GSPOConfig(**{**dict(
        model=a.model, prompts_per_step=4, group_size=8, max_new_tokens=a.completion_len, num_minibatches=4,
        micro_batch_size=8, learning_rate=1e-5, max_grad_norm=1.0, algorithm="gspo", clip_low=3e-4, clip_high=4e-4,
        kl_coef=0.0, old_logp_source="recompute", temperature=1.0, max_steps=10**6, progress=False,
        eval_limit=0, seed=0, num_threads=a.threads), **overrides})
    trainer = GSPOTrainer(model, tok, [benchlib.vowel_reward], [{"prompt": p} for p in benchlib.prompts()], cfg)
    trainer.eos_ids = [int(model.config.vocab_size)]
    apply_variant(trainer, parts - set(CONFIG_VARIANTS) - set(PROCESS_VARIANTS))
    cycles, parts_t = [], []
    for i in range(a.warmup + a.measure):
        t = time.perf_counter()
        m = trainer.train_step()
        if i >= a.warmup:
            cycles.append(time.perf_counter() - t)
            parts_t.append({k: m[k] for k in ("time/sample", "time/old_logp", "time/update")})
            assert m["completion/length_mean"] == a.completion_len
    Path(a.worker_out).write_text(json.dumps(dict(cycle_s=cycles, parts=parts_t, peak_rss_mib_self=benchlib.peak_rss_mib(),
                                                  loss=m["loss"], clip_frac=m["clip_frac"])))


def check() -> int:
    """Numerics of the prototypes against the library's functions (float64 and float32)."""
    import torch

    from gspo.losses import chunked_token_logprobs as ref
    from gspo.sampling.generate import _choose

    v2 = make_logprob_v2()
    ok = True
    names = ["logp", "entropy", "grad_h", "grad_w", "grad_b"]
    for temp, ent, bias in ((1.0, True, False), (0.7, True, True), (1.3, False, False)):
        torch.manual_seed(0)
        N, H, V = 37, 16, 1000
        h64, w64 = torch.randn(N, H, dtype=torch.float64), torch.randn(V, H, dtype=torch.float64)
        b64 = torch.randn(V, dtype=torch.float64) if bias else None
        y, gout64 = torch.randint(0, V, (N,)), torch.randn(N, dtype=torch.float64)

        def run(fn, dt):
            h = h64.to(dt).requires_grad_()
            w = w64.to(dt).requires_grad_()
            b = b64.to(dt).requires_grad_() if bias else None
            lp, en = fn(h, w, y, bias=b, temperature=temp, chunk_size=10, with_entropy=ent)
            grads = torch.autograd.grad((lp * gout64.to(dt)).sum(), [h, w] + ([b] if bias else []))
            outs = [lp.detach(), en] + list(grads)
            return [None if o is None else o.double() for o in outs]

        exact = run(ref, torch.float64)
        for label, fn in (("library", ref), ("v2", v2)):
            if label == "v2":  # v2 in float64 must equal the library in float64
                d64 = max(float((x - e).abs().max() / e.abs().max()) for x, e in zip(run(fn, torch.float64), exact) if e is not None)
                ok &= d64 < 1e-12
        errs = {}
        for label, fn in (("library", ref), ("v2", v2)):
            out = run(fn, torch.float32)
            errs[label] = {n: float((x - e).abs().max() / e.abs().max()) for n, x, e in zip(names, out, exact) if e is not None}
        good = all(errs["v2"][n] <= 2 * errs["library"][n] + 1e-6 for n in errs["v2"])
        ok &= good
        print(f"logprob v2, T={temp} entropy={ent} bias={bias}: float64 equal to library (rel {d64:.1e}); "
              f"float32 relative error vs float64 truth, library / v2: "
              + ", ".join(f"{n} {errs['library'][n]:.1e}/{errs['v2'][n]:.1e}" for n in errs["v2"]) + f"  {'OK' if good else 'FAIL'}")
    # sampler: same log-probs for the same tokens, and the right distribution
    fast = fast_choose(_choose)  # noqa
    logits = torch.randn(4, 50) * 2
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(4, 50)
    for _ in range(4000):
        tok, lp = fast(logits, temperature=1.0, top_k=0, top_p=1.0, greedy=False, generator=g)
        counts[torch.arange(4), tok] += 1
        ref_lp = torch.log_softmax(logits, -1).gather(-1, tok[:, None]).squeeze(-1)
        assert torch.allclose(lp, ref_lp, atol=1e-6)
    # with rows=(offset, global_rows), the same generator state gives the library's tokens exactly
    big = torch.randn(6, 3000) * 3
    for offset in (0, 2):
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        t_lib, lp_lib = _choose(big[offset:offset + 4], temperature=1.0, top_k=0, top_p=1.0, greedy=False, generator=g1, rows=(offset, 6))
        t_new, lp_new = fast(big[offset:offset + 4], temperature=1.0, top_k=0, top_p=1.0, greedy=False, generator=g2, rows=(offset, 6))
        same = bool((t_lib == t_new).all()) and bool(torch.allclose(lp_lib, lp_new, atol=1e-6))
        ok &= same
        print(f"fast sampler with rows=({offset}, 6): same tokens and log-probs as the library: {'OK' if same else 'FAIL'}")
    # prefix sharing: same log-probs and parameter gradients as the library's full forward
    import gspo.trainer.scoring as sc
    from gspo.sampling import encode_prompts

    for name in ("tiny-259", "tiny-32768"):
        torch.manual_seed(0)
        model, tok = benchlib.load(name)
        model.train()
        ids, mask = encode_prompts(tok, benchlib.prompts()[:3])
        sel = torch.tensor([0, 1, 0, 2, 2, 0, 1, 1])
        ids, mask = ids[sel], mask[sel]
        comp = torch.randint(3, 259, (8, 6))
        cmask = torch.ones(8, 6, dtype=torch.long)
        cmask[3, 4:] = 0
        shared = prefix_shared_completion_logprobs(sc.completion_logprobs)
        outs = []
        for fn in (sc.completion_logprobs, shared):
            model.zero_grad()
            lp, ent = fn(model, ids, mask, comp, cmask, with_entropy=True)
            torch.where(cmask.bool(), lp, 0.0).sum().backward()
            outs.append((lp.detach(), ent, [p.grad.clone() for p in model.parameters()]))
        m_ = cmask.bool()
        d_lp = float((outs[0][0] - outs[1][0])[m_].abs().max())
        d_g = max(float((a - b).abs().max() / a.abs().max().clamp(min=1e-30)) for a, b in zip(outs[0][2], outs[1][2]))
        good = d_lp < 1e-4 and d_g < 1e-4
        ok &= good
        print(f"prefix sharing ({name}, 8 rows / 3 prompts): max |Δ logp| {d_lp:.1e}, max relative Δ grad {d_g:.1e} "
              f"{'OK' if good else 'FAIL'}")
    tv = 0.5 * (counts / 4000 - torch.softmax(logits, -1)).abs().sum(-1).max()
    good = float(tv) < 0.05
    ok &= good
    print(f"fast sampler: log-probs equal; total-variation distance of 4000 draws to softmax: {float(tv):.3f} "
          f"{'OK' if good else 'FAIL'}")
    return 0 if ok else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true")
    p.add_argument("--components", action="store_true", help="A/B each prototype against its library function in one process")
    p.add_argument("--models", default="tiny-151936")
    p.add_argument("--variants", default="base,choose,logprob,adamw,nohead,prefill,micro64,sampler,all")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--measure", type=int, default=2)
    p.add_argument("--completion-len", type=int, default=16)
    p.add_argument("--out", default="whatif.json")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.check:
        return check()
    if a.components:
        out = {}
        for m in a.models.split(","):
            print(f"{m}, {a.threads} thread(s), L={a.completion_len}:")
            out[f"{m}@t{a.threads}"] = components(m, a.threads, a.completion_len)
        path = benchlib.RESULTS / "whatif_components.json"
        old = json.loads(path.read_text()) if path.is_file() else {}
        old.update(out)
        benchlib.write_json(path.name, old)
        return 0
    if a.worker:
        worker(a)
        return 0
    variants = a.variants.split(",")
    path = benchlib.RESULTS / a.out
    results = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
    results.update(machine=benchlib.machine_info(), versions=benchlib.versions_subprocess(),
                   settings=dict(threads=a.threads, reps=a.reps, warmup=a.warmup, measure=a.measure,
                                 completion_len=a.completion_len))
    benchlib.prepare_models_subprocess(a.models.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        for m in a.models.split(","):
            runs = {v: [] for v in variants}
            for rep in range(a.reps):
                for v in variants:
                    out = Path(tmp) / f"{m}-{v}-{rep}.json"
                    cmd = [sys.executable, __file__, "--worker", "--model", m, "--variant", v, "--threads", str(a.threads),
                           "--warmup", str(a.warmup), "--measure", str(a.measure), "--completion-len", str(a.completion_len),
                           "--worker-out", str(out)]
                    data, rss, _ = benchlib.run_child_wait4(cmd, benchlib.thread_env(a.threads), out)
                    data["peak_rss_mib"] = rss
                    runs[v].append(data)
                    print(f"[{m} t={a.threads} rep={rep}] {v:18s} s/step {benchlib.median(data['cycle_s']) / 4:.4f}  "
                          f"peak RSS {rss:.0f} MiB  parts {data['parts'][-1]}", flush=True)
            base = benchlib.median([c for r in runs["base"] for c in r["cycle_s"]]) / 4 if "base" in runs else None
            row = {}
            for v in variants:
                s = benchlib.median([c for r in runs[v] for c in r["cycle_s"]]) / 4
                row[v] = dict(s_per_step=s, speedup_vs_base=(base / s if base else None),
                              peak_rss_mib=max(r["peak_rss_mib"] for r in runs[v]), runs=runs[v])
            results["rows"][f"{m}@t{a.threads}"] = row
            benchlib.write_json(a.out, results)
            print(f"\n{m}, {a.threads} thread(s):")
            print("| variant | s/step | speed-up vs base | peak RSS |\n|---|---|---|---|")
            for v in variants:
                r = row[v]
                print(f"| {v} | {r['s_per_step']:.4f} | {r['speedup_vs_base']:.2f}x | {r['peak_rss_mib']:.0f} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
