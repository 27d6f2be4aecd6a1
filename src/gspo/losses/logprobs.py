"""Per-token log-probs of chosen tokens from final hidden states, chunked over the vocabulary matmul.

    log π(y_t) = (h_t·W[y_t] + b[y_t]) / τ - logsumexp_v((h_t·W[v] + b[v]) / τ)

The plain way (``log_softmax(lm_head(h)).gather``) materialises ``[N, V]`` float32 logits and keeps
them for backward. With a 151,936-token vocabulary that dominates memory (it is what fills TRL's
out-of-memory reports). Here a custom autograd function processes ``chunk_size`` rows at a time in
forward *and recomputes* each chunk's logits in backward, so peak extra memory is
``chunk_size × V`` floats whatever the number of tokens. Only the rows given are scored: the caller
passes hidden states of completion positions only, never the prompt's. One exception, for speed:
when a gradient will be taken and the probabilities of all rows fit in ``SAVE_PROBS_BYTES``
(512 MiB), forward keeps them and backward uses them instead of recomputing the logits matmul.

Logits are computed in float32 for float32/bf16/fp16 hidden states (float64 stays float64) (bf16 log-softmax loses precision that
the GSPO ratio, a mean of log-ratios compared against 1 ± 3e-4, cannot afford).

Also returns the per-token entropy of the tempered distribution (no gradient), a logged statistic.
"""

from __future__ import annotations

from typing import TypeAlias

import torch

Tensor: TypeAlias = torch.Tensor

#: Default chunk budget, in logits elements (float32: 128 MiB).
CHUNK_ELEMENTS = 1 << 25

#: When a gradient will be taken and all rows' probabilities take at most this many bytes, forward
#: keeps them for backward instead of backward recomputing the logits (a speed/memory trade: about
#: 1.35-1.6x faster output layer forward + backward on CPU, measured in ``benchmarks/whatif.py``).
SAVE_PROBS_BYTES = 512 * 2**20


def _compute_dtype(h: Tensor) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs, float64 stays float64 (used by exact tests)."""
    return torch.float64 if h.dtype == torch.float64 else torch.float32


def _chunk_logits(h_NH: Tensor, weight_VH: Tensor, bias_V: Tensor | None, temperature: float) -> Tensor:
    """``(h @ W.T + b) / τ`` in the compute dtype, as one fresh buffer (callers may modify it in place)."""
    dt = _compute_dtype(h_NH)
    h, w = h_NH.to(dt), weight_VH.to(dt)
    logits_NV = torch.mm(h, w.t()) if bias_V is None else torch.addmm(bias_V.to(dt), h, w.t())
    if temperature != 1.0:
        logits_NV.div_(temperature)
    return logits_NV


class _ChunkedTokenLogProb(torch.autograd.Function):
    """Forward: one fused ``log_softmax`` per chunk. Backward: ``g = p * (-grad)``, ``g[y] += grad``.

    With ``save_probs`` (the caller decided a gradient is needed and the probabilities fit its
    budget) forward keeps each chunk's ``p = exp(log_softmax)`` and backward reads it, so the logits
    matmul and the ``exp`` are not recomputed. Otherwise forward
    keeps only the per-row logsumexp and backward recomputes each chunk's logits.
    """

    @staticmethod
    def forward(ctx, h_NH, weight_VH, bias_V, targets_N, temperature, chunk_size, with_entropy, save_probs):
        n, dt = h_NH.shape[0], _compute_dtype(h_NH)
        logp_N = torch.empty(n, dtype=dt, device=h_NH.device)
        entropy_N = torch.empty(n if with_entropy else 0, dtype=dt, device=h_NH.device)
        lse_N = None if save_probs else torch.empty(n, dtype=dt, device=h_NH.device)
        probs = []  # list[Tensor]: the softmax chunks kept for backward
        for start in range(0, n, chunk_size):
            end = min(start + chunk_size, n)
            t_C1 = targets_N[start:end, None]
            logits_CV = _chunk_logits(h_NH[start:end], weight_VH, bias_V, temperature)
            logsm_CV = torch.log_softmax(logits_CV, dim=-1)
            logp_N[start:end] = logsm_CV.gather(-1, t_C1).squeeze(-1)
            if lse_N is not None:  # logsumexp = logit(y) - log p(y)
                lse_N[start:end] = logits_CV.gather(-1, t_C1).squeeze(-1) - logp_N[start:end]
            del logits_CV
            if with_entropy or save_probs:
                p_CV = logsm_CV.exp()
                if with_entropy:  # -sum_v p log p as a batched row dot product (no [C, V] temporary)
                    entropy_N[start:end] = -torch.bmm(p_CV[:, None, :], logsm_CV[:, :, None]).view(-1)
                if save_probs:
                    probs.append(p_CV)
        ctx.save_for_backward(h_NH, weight_VH, bias_V, targets_N, *(probs if save_probs else [lse_N]))
        ctx.temperature, ctx.chunk_size, ctx.saved_probs = temperature, chunk_size, save_probs
        ctx.mark_non_differentiable(entropy_N)
        return logp_N, entropy_N

    @staticmethod
    def backward(ctx, grad_logp_N, _grad_entropy):
        h_NH, weight_VH, bias_V, targets_N, *saved = ctx.saved_tensors
        temperature, chunk_size = ctx.temperature, ctx.chunk_size
        need_h, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        dt = _compute_dtype(h_NH)
        w_VH = weight_VH.to(dt)
        grad_h = torch.empty_like(h_NH) if need_h else None
        grad_w = grad_b = None
        grad_logp_N = grad_logp_N.to(dt)
        for i, start in enumerate(range(0, h_NH.shape[0], chunk_size)):
            end = min(start + chunk_size, h_NH.shape[0])
            h_CH = h_NH[start:end].to(dt)
            g_C1 = grad_logp_N[start:end, None]
            # d logp / d logits = onehot(y) - softmax; then the 1/τ of the tempering.
            if ctx.saved_probs:  # the saved softmax stays intact (backward may run again: retain_graph)
                g_CV = saved[i] * -g_C1
            else:
                g_CV = _chunk_logits(h_NH[start:end], weight_VH, bias_V, temperature)
                g_CV.sub_(saved[0][start:end, None]).exp_().mul_(-g_C1)
            g_CV.scatter_add_(-1, targets_N[start:end, None], g_C1)
            if temperature != 1.0:
                g_CV.div_(temperature)
            if need_h:
                grad_h[start:end] = torch.mm(g_CV, w_VH).to(h_NH.dtype)
            if need_w:
                grad_w = torch.mm(g_CV.t(), h_CH) if grad_w is None else grad_w.addmm_(g_CV.t(), h_CH)
            if need_b:
                grad_b = g_CV.sum(0) if grad_b is None else grad_b.add_(g_CV.sum(0))
        if need_w:
            grad_w = grad_w.to(weight_VH.dtype) if grad_w is not None else torch.zeros_like(weight_VH)
        if need_b:
            grad_b = grad_b.to(bias_V.dtype) if grad_b is not None else torch.zeros_like(bias_V)
        return grad_h, grad_w, grad_b, None, None, None, None, None


def chunked_token_logprobs(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    *,
    bias: Tensor | None = None,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    with_entropy: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Log-probs of ``targets`` under ``softmax((hidden @ weight.T + bias) / temperature)``.

    Args:
        hidden: ``[..., H]`` final hidden states (after the final norm) at the positions that
            *predict* each target.
        weight: ``[V, H]`` output-layer weight; ``bias``: optional ``[V]``.
        targets: ``[...]`` token ids (same leading shape as ``hidden``).
        temperature: the sampling temperature τ > 0 (the trainer must score with the sampler's τ).
        chunk_size: rows per chunk; peak extra memory is about ``chunk_size × V × 4`` bytes (×2 in
            backward). ``None`` picks ``CHUNK_ELEMENTS // V`` rows (about 128 MiB of float32 logits:
            ~220 rows for a 151,936-token vocabulary, one chunk for small vocabularies).
        with_entropy: also return the (detached) entropy of each row's distribution.

    Returns:
        ``(logp, entropy)``: float32 (float64 for float64 inputs) tensors of ``targets``' shape (``entropy`` is ``None`` unless asked).
    """
    if temperature <= 0:
        raise ValueError(f"temperature: must be > 0, got {temperature}")
    if chunk_size is None:
        chunk_size = max(16, CHUNK_ELEMENTS // weight.shape[0])
    if chunk_size < 1:
        raise ValueError(f"chunk_size: must be >= 1, got {chunk_size}")
    if hidden.shape[:-1] != targets.shape:
        raise ValueError(f"hidden, targets: leading shapes differ: {tuple(hidden.shape)} vs {tuple(targets.shape)}")
    lead = targets.shape
    h_NH = hidden.reshape(-1, hidden.shape[-1])
    # Keep the softmax for backward when a gradient will be taken and it fits the budget (a Function's
    # forward runs under no_grad, so this is decided here).
    needs_grad = torch.is_grad_enabled() and (
        h_NH.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    itemsize = 8 if _compute_dtype(h_NH) == torch.float64 else 4
    save_probs = needs_grad and h_NH.shape[0] * weight.shape[0] * itemsize <= SAVE_PROBS_BYTES
    logp_N, entropy_N = _ChunkedTokenLogProb.apply(
        h_NH, weight, bias, targets.reshape(-1).long(), float(temperature), int(chunk_size), with_entropy, save_probs
    )
    return logp_N.view(lead), (entropy_N.view(lead) if with_entropy else None)
