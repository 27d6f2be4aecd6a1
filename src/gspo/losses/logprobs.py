"""Per-token log-probs of chosen tokens from final hidden states, chunked over the vocabulary matmul.

    log π(y_t) = (h_t·W[y_t] + b[y_t]) / τ - logsumexp_v((h_t·W[v] + b[v]) / τ)

The plain way (``log_softmax(lm_head(h)).gather``) materialises ``[N, V]`` float32 logits and keeps
them for backward. With a 151,936-token vocabulary that dominates memory (it is what fills TRL's
out-of-memory reports). Here a custom autograd function processes ``chunk_size`` rows at a time in
forward *and recomputes* each chunk's logits in backward, so peak extra memory is
``chunk_size × V`` floats whatever the number of tokens. Only the rows given are scored: the caller
passes hidden states of completion positions only, never the prompt's.

Logits are computed in float32 for float32/bf16/fp16 hidden states (float64 stays float64) (bf16 log-softmax loses precision that
the GSPO ratio, a mean of log-ratios compared against 1 ± 3e-4, cannot afford).

Also returns the per-token entropy of the tempered distribution (no gradient), a logged statistic.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor

#: Default chunk budget, in logits elements (float32: 128 MiB).
CHUNK_ELEMENTS = 1 << 25


def _compute_dtype(h: Tensor) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs, float64 stays float64 (used by exact tests)."""
    return torch.float64 if h.dtype == torch.float64 else torch.float32


def _chunk_logits(h_NH: Tensor, weight_VH: Tensor, bias_V: Tensor | None, temperature: float) -> Tensor:
    dt = _compute_dtype(h_NH)
    logits_NV = h_NH.to(dt) @ weight_VH.to(dt).t()
    if bias_V is not None:
        logits_NV = logits_NV + bias_V.to(dt)
    if temperature != 1.0:
        logits_NV = logits_NV / temperature
    return logits_NV


class _ChunkedTokenLogProb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h_NH, weight_VH, bias_V, targets_N, temperature, chunk_size, with_entropy):
        n, dt = h_NH.shape[0], _compute_dtype(h_NH)
        logp_N = torch.empty(n, dtype=dt, device=h_NH.device)
        lse_N = torch.empty(n, dtype=dt, device=h_NH.device)
        entropy_N = torch.empty(n if with_entropy else 0, dtype=dt, device=h_NH.device)
        for start in range(0, n, chunk_size):
            end = min(start + chunk_size, n)
            logits_CV = _chunk_logits(h_NH[start:end], weight_VH, bias_V, temperature)
            lse_C = torch.logsumexp(logits_CV, dim=-1)
            lse_N[start:end] = lse_C
            logp_N[start:end] = logits_CV.gather(-1, targets_N[start:end, None]).squeeze(-1) - lse_C
            if with_entropy:
                p_CV = torch.exp(logits_CV - lse_C[:, None])
                entropy_N[start:end] = lse_C - (p_CV * logits_CV).sum(-1)
        ctx.save_for_backward(h_NH, weight_VH, bias_V, targets_N, lse_N)
        ctx.temperature, ctx.chunk_size = temperature, chunk_size
        ctx.mark_non_differentiable(entropy_N)
        return logp_N, entropy_N

    @staticmethod
    def backward(ctx, grad_logp_N, _grad_entropy):
        h_NH, weight_VH, bias_V, targets_N, lse_N = ctx.saved_tensors
        temperature, chunk_size = ctx.temperature, ctx.chunk_size
        need_h, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        grad_h = torch.empty_like(h_NH) if need_h else None
        dt = _compute_dtype(h_NH)
        grad_w = torch.zeros(weight_VH.shape, dtype=dt, device=weight_VH.device) if need_w else None
        grad_b = torch.zeros(bias_V.shape, dtype=dt, device=bias_V.device) if need_b else None
        grad_logp_N = grad_logp_N.to(dt)
        for start in range(0, h_NH.shape[0], chunk_size):
            end = min(start + chunk_size, h_NH.shape[0])
            h_CH = h_NH[start:end]
            logits_CV = _chunk_logits(h_CH, weight_VH, bias_V, temperature)
            # d logp / d logits = onehot(y) - softmax; then the 1/τ of the tempering.
            g_CV = torch.exp(logits_CV - lse_N[start:end, None]).mul_(-grad_logp_N[start:end, None])
            g_CV.scatter_add_(-1, targets_N[start:end, None], grad_logp_N[start:end, None])
            if temperature != 1.0:
                g_CV.div_(temperature)
            if need_h:
                grad_h[start:end] = (g_CV @ weight_VH.to(dt)).to(h_NH.dtype)
            if need_w:
                grad_w.addmm_(g_CV.t(), h_CH.to(dt))
            if need_b:
                grad_b.add_(g_CV.sum(0))
        if need_w:
            grad_w = grad_w.to(weight_VH.dtype)
        if need_b:
            grad_b = grad_b.to(bias_V.dtype)
        return grad_h, grad_w, grad_b, None, None, None, None


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
    logp_N, entropy_N = _ChunkedTokenLogProb.apply(
        h_NH, weight, bias, targets.reshape(-1).long(), float(temperature), int(chunk_size), with_entropy
    )
    return logp_N.view(lead), (entropy_N.view(lead) if with_entropy else None)
