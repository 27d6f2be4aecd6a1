"""Clipped policy-gradient losses: GSPO, GSPO-token and GRPO, as pure tensor functions.

Every loss *level* is a function in ``LOSS_LEVELS`` (register new ones with ``@register_level``):
``fn(inputs: LossInputs, *, <hyper-parameters by name>) -> LevelOutput`` turns masked per-token
log-probs into a per-token objective; ``policy_loss`` adds the KL term and aggregates. A loss's
hyper-parameters and their defaults (the paper's clip ranges) come from the algorithm table,
:mod:`gspo.algorithms`; each loss is handed only the ones it declares.
Formulas (Zheng et al. 2025, arXiv 2507.18071; equation numbers are the paper's):

  level "sequence" (GSPO, eq. 5-7)
      s_i    = exp( (1/|y_i|) Σ_t [log π_θ(y_i,t) - log π_old(y_i,t)] )          one ratio per response
      J_i    = min( s_i·Â_i , clip(s_i, 1-ε_low, 1+ε_high)·Â_i )
      gradient where unclipped (eq. 10): s_i·Â_i·(1/|y_i|) Σ_t ∇log π_θ(y_i,t)

  level "sequence_token" (GSPO-token, eq. 13-14)
      s_i,t  = sg[s_i] · π_θ(y_i,t) / sg[π_θ(y_i,t)]                               value = s_i
      J_i,t  = min( s_i,t·Â_i,t , clip(s_i,t, 1-ε_low, 1+ε_high)·Â_i,t )
      gradient where unclipped (eq. 17): s_i·Â_i,t·∇log π_θ(y_i,t), averaged over the response
      With Â_i,t = Â_i it equals GSPO exactly, in value, clipping and gradient.

  level "token" (GRPO, the paper's baseline)
      w_i,t  = π_θ(y_i,t) / π_old(y_i,t)
      J_i,t  = min( w_i,t·Â_i , clip(w_i,t, 1-ε_low, 1+ε_high)·Â_i )

  optional KL to a reference policy, per token (k3 estimator, Schulman 2020):
      KL_i,t = exp(r - l) - (r - l) - 1,   l = log π_θ(y_i,t), r = log π_ref(y_i,t)
      term_i,t += β·KL_i,t     (β = 0 by default, as in the paper's experiments)

Aggregation of the per-token terms L_i,t (= -J, + β·KL):
  "seq-mean"            (the paper's)  Σ_i [(1/|y_i|) Σ_t L_i,t] / N_seq
  "token-mean"          (TRL "dapo", AReaL; length-weighted, NOT GSPO)  Σ_i Σ_t L_i,t / N_tok
  "seq-mean-token-sum"  Σ_i Σ_t L_i,t / N_seq
  "seq-mean-token-sum-norm"  (Dr. GRPO, Liu et al. 2025)  Σ_i Σ_t L_i,t / (N_seq · L_max), a constant
                        denominator: L_max = ``max_length`` (the generation budget), not the sampled lengths
where the normaliser N is passed in by the caller (the number of sequences, or tokens, in the whole
optimizer step across micro-batches and processes), so results do not depend on how the step is split.
For the sequence level, L_i,t is the response's single term repeated on each of its tokens, so
"seq-mean" gives exactly eq. 5 and "token-mean" gives the length-weighted variant.

Departures from the paper, both numerical safeguards that leave finite cases unchanged:
  - log-ratios are clamped to ±``max_log_ratio`` (default 20) before ``exp``, so an extreme ratio gives
    a finite loss (the clamp only acts where the ratio is far outside any clip range);
  - masked positions are *selected away* with ``torch.where`` before any arithmetic, so NaN/inf in
    padding can reach neither the loss nor the gradient (``x * mask`` would leak NaN).

Nothing here calls ``.item()`` or synchronises with the host; stats are detached tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import torch

from gspo.algorithms import loss_defaults
from gspo.losses.registry import Registry, declared_keywords

Tensor: TypeAlias = torch.Tensor

AGGREGATIONS = ("seq-mean", "token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")


@dataclass(frozen=True)
class LossInputs:
    """What every loss receives for a micro-batch (B sequences, T completion tokens), masked already:
    padding is 0 in every tensor, and ``adv_BT`` holds per-response advantages repeated along T."""

    logp_BT: Tensor  # log π_θ (requires grad)
    old_logp_BT: Tensor  # log π_old (detached)
    adv_BT: Tensor
    mask_BT: Tensor  # bool: tokens in the loss
    lengths_B: Tensor  # tokens per row (>= 1), in logp's dtype


@dataclass(frozen=True)
class LevelOutput:
    """What a loss computes for a micro-batch (B sequences, T completion tokens)."""

    objective_BT: Tensor  # J per token (for sequence levels, the response's J repeated); 0 where masked
    ratio_B_or_BT: Tensor  # the importance ratios used: [B] for sequence levels, [B, T] for token level
    clipped_low_BT: Tensor  # bool: the clipped branch is active because the ratio fell below 1-ε_low
    clipped_high_BT: Tensor  # bool: ... rose above 1+ε_high
    sequence_level: bool  # clip statistics count sequences (True) or tokens (False)
    extra: dict[str, Tensor] = field(default_factory=dict)  # the loss's own detached statistics, logged as named


#: A loss: ``fn(inputs: LossInputs, *, <its hyper-parameters by name>) -> LevelOutput``.
LevelFn = Callable[..., LevelOutput]

LOSS_LEVELS = Registry("loss level")


def register_level(name: str) -> Callable[[LevelFn], LevelFn]:
    """Decorator: add a loss under ``name`` (a new algorithm is a new function plus a table entry)."""
    return LOSS_LEVELS.register(name)


register_loss = register_level


def get_level(name: str) -> LevelFn:
    """Look up a loss level; an unknown name raises an error listing the valid ones."""
    try:
        return LOSS_LEVELS[name]
    except KeyError:
        raise ValueError(f"level: unknown loss level {name!r}; valid levels: {sorted(LOSS_LEVELS)}") from None


def _clipped_objective(ratio: Tensor, adv: Tensor, clip_low: float, clip_high: float):
    """min(ratio·A, clip(ratio)·A) and which side's clipped branch is active (gradient zero there)."""
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * adv
    objective = torch.minimum(unclipped, clipped)
    clipped_low = (ratio < 1.0 - clip_low) & (adv < 0)
    clipped_high = (ratio > 1.0 + clip_high) & (adv > 0)
    return objective, clipped_low, clipped_high


def _sequence_log_ratio(log_ratio_BT: Tensor, lengths_B: Tensor, max_log_ratio: float) -> Tensor:
    """(1/|y_i|) Σ_t log-ratio, clamped: the log of GSPO's s_i (a mean in log space, never a sum)."""
    mean_B = log_ratio_BT.sum(dim=-1) / lengths_B
    return mean_B.clamp(-max_log_ratio, max_log_ratio)


@register_level("sequence")
def gspo_sequence_level(x: LossInputs, *, clip_low: float, clip_high: float, max_log_ratio: float) -> LevelOutput:
    """GSPO (eq. 5-7): one length-normalised ratio per response, whole responses clipped."""
    mask_BT = x.mask_BT
    log_s_B = _sequence_log_ratio(x.logp_BT - x.old_logp_BT, x.lengths_B, max_log_ratio)
    s_B = torch.exp(log_s_B)
    # Sequence-level advantages: the first token's value stands for the response (checked by caller).
    adv_B = x.adv_BT[:, 0]
    obj_B, low_B, high_B = _clipped_objective(s_B, adv_B, clip_low, clip_high)
    expand = lambda x: x.unsqueeze(-1).expand_as(mask_BT)  # noqa: E731
    return LevelOutput(
        objective_BT=torch.where(mask_BT, expand(obj_B), 0.0),
        ratio_B_or_BT=s_B,
        clipped_low_BT=expand(low_B) & mask_BT,
        clipped_high_BT=expand(high_B) & mask_BT,
        sequence_level=True,
    )


@register_level("sequence_token")
def gspo_token_level(x: LossInputs, *, clip_low: float, clip_high: float, max_log_ratio: float) -> LevelOutput:
    """GSPO-token (eq. 13-14): s_i,t = sg[s_i]·π_θ(y_i,t)/sg[π_θ(y_i,t)], per-token advantages allowed."""
    logp_BT, mask_BT = x.logp_BT, x.mask_BT
    log_s_B = _sequence_log_ratio(logp_BT - x.old_logp_BT, x.lengths_B, max_log_ratio)
    log_s_BT = log_s_B.detach().unsqueeze(-1) + logp_BT - logp_BT.detach()
    s_BT = torch.exp(log_s_BT)
    obj_BT, low_BT, high_BT = _clipped_objective(s_BT, x.adv_BT, clip_low, clip_high)
    return LevelOutput(
        objective_BT=torch.where(mask_BT, obj_BT, 0.0),
        ratio_B_or_BT=torch.exp(log_s_B),
        clipped_low_BT=low_BT & mask_BT,
        clipped_high_BT=high_BT & mask_BT,
        sequence_level=True,
    )


@register_level("token")
def grpo_token_level(x: LossInputs, *, clip_low: float, clip_high: float, max_log_ratio: float) -> LevelOutput:
    """GRPO: one ratio per token, tokens clipped individually."""
    mask_BT = x.mask_BT
    log_w_BT = (x.logp_BT - x.old_logp_BT).clamp(-max_log_ratio, max_log_ratio)
    w_BT = torch.exp(log_w_BT)
    obj_BT, low_BT, high_BT = _clipped_objective(w_BT, x.adv_BT, clip_low, clip_high)
    return LevelOutput(
        objective_BT=torch.where(mask_BT, obj_BT, 0.0),
        ratio_B_or_BT=w_BT,
        clipped_low_BT=low_BT & mask_BT,
        clipped_high_BT=high_BT & mask_BT,
        sequence_level=False,
    )


def kl_k3(logp_BT: Tensor, ref_logp_BT: Tensor, mask_BT: Tensor, max_log_ratio: float = 20.0) -> Tensor:
    """Per-token k3 estimate of KL(π_θ || π_ref): exp(r - l) - (r - l) - 1 (≥ 0), 0 where masked."""
    mask_BT = mask_BT.bool()
    delta_BT = torch.where(mask_BT, ref_logp_BT - logp_BT, 0.0).clamp(-max_log_ratio, max_log_ratio)
    return torch.where(mask_BT, torch.exp(delta_BT) - delta_BT - 1.0, 0.0)


def aggregate(
    term_BT: Tensor,
    mask_BT: Tensor,
    lengths_B: Tensor,
    mode: str,
    normalizer: Tensor | float | None,
    max_length: int | None = None,
) -> Tensor:
    """Reduce per-token loss terms to a scalar (see module docstring). Masked terms must already be 0.

    ``normalizer`` counts sequences or tokens of the whole optimizer step; for
    ``seq-mean-token-sum-norm`` it counts sequences and the sum is also divided by ``max_length``
    (default: this micro-batch's width T).
    """
    if mode == "seq-mean-token-sum-norm":
        total = term_BT.sum() / float(max_length or term_BT.shape[-1])
        default = float(term_BT.shape[0])
    elif mode == "seq-mean":
        total = (term_BT.sum(dim=-1) / lengths_B).sum()
        default = float(term_BT.shape[0])
    elif mode == "token-mean":
        total = term_BT.sum()
        default = mask_BT.sum()
    elif mode == "seq-mean-token-sum":
        total = term_BT.sum()
        default = float(term_BT.shape[0])
    else:
        raise ValueError(f"aggregation: unknown mode {mode!r}; valid modes: {list(AGGREGATIONS)}")
    return total / (default if normalizer is None else normalizer)


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return torch.where(mask, x, 0.0).sum() / mask.sum().clamp(min=1)


def policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    level: str | LevelFn = "sequence",
    clip_low: float | None = None,
    clip_high: float | None = None,
    aggregation: str = "seq-mean",
    normalizer: Tensor | float | None = None,
    ref_logp: Tensor | None = None,
    kl_coef: float = 0.0,
    max_log_ratio: float = 20.0,
    hparams: Mapping[str, Any] | None = None,
    token_weight_BT: Tensor | None = None,
    max_length: int | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped policy loss (to minimise) and detached statistics.

    Args:
        logp: ``[B, T]`` log π_θ of each completion token (requires grad).
        old_logp: ``[B, T]`` log π_old of the same tokens (the behaviour policy; no grad needed).
        advantages: ``[B]`` per response, or ``[B, T]`` per token (``"sequence"`` needs ``[B]`` or a
            ``[B, T]`` that is constant along T; per-token advantages belong to ``"sequence_token"``).
        mask: ``[B, T]`` 1/True for tokens in the loss (EOS included), 0 for padding or tokens the
            model did not generate. Each row needs at least one real token (an empty completion has
            no ratio).
        level: a key of ``LOSS_LEVELS`` (``"sequence"`` GSPO, ``"sequence_token"`` GSPO-token,
            ``"token"`` GRPO) or a loss function.
        clip_low, clip_high: ε_low, ε_high; ``None`` takes the algorithm table's value for the level
            (3e-4/4e-4 for the sequence levels, 0.2/0.27 for GRPO: :mod:`gspo.algorithms`).
        aggregation: ``"seq-mean"`` (the paper's), ``"token-mean"`` or ``"seq-mean-token-sum"``.
        normalizer: the denominator: the number of sequences (``seq-mean``, ``seq-mean-token-sum``)
            or tokens (``token-mean``) in the whole optimizer step. ``None`` means this micro-batch's.
        ref_logp: ``[B, T]`` reference-policy log-probs, needed when ``kl_coef > 0``.
        kl_coef: β, weight of the k3 KL penalty (0 = off, the paper's setting).
        max_log_ratio: clamp for log-ratios before ``exp``.
        hparams: further hyper-parameters of the loss, by name (they override the table's defaults).
        token_weight_BT: ``[B, T]`` detached weights multiplying each token's policy term (the
            rollout-mismatch correction's truncated importance weights); ``None``: all 1.
        max_length: L_max of ``seq-mean-token-sum-norm`` (Dr. GRPO's constant; default T).

    Returns:
        ``(loss, stats)``; ``stats`` holds detached scalar tensors: ``policy_loss``, ``clip_frac``,
        ``clip_frac_low``, ``clip_frac_high`` (fractions of sequences for the sequence levels, of
        tokens for ``"token"``), ``ratio_mean``, ``ratio_min``, ``ratio_max`` and, with KL, ``kl``.
    """
    level_fn = level if callable(level) else get_level(level)
    params = _loss_hparams(level, level_fn, clip_low, clip_high, max_log_ratio, hparams)
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation: unknown mode {aggregation!r}; valid modes: {list(AGGREGATIONS)}")
    if kl_coef < 0:
        raise ValueError(f"kl_coef: must be >= 0, got {kl_coef}")
    if kl_coef > 0 and ref_logp is None:
        raise ValueError("ref_logp: required when kl_coef > 0")
    _check_shapes(logp, old_logp, advantages, mask, level)
    x = _masked_inputs(logp, old_logp, advantages, mask)

    out = level_fn(x, **params)
    term_BT = -out.objective_BT
    if token_weight_BT is not None:
        term_BT = term_BT * torch.where(x.mask_BT, token_weight_BT.detach(), 0.0)
    stats: dict[str, Tensor] = {}
    if ref_logp is not None:  # measured whenever given (log_kl), added to the loss only when kl_coef > 0
        kl_BT = kl_k3(x.logp_BT, torch.where(x.mask_BT, ref_logp.detach(), 0.0), x.mask_BT, max_log_ratio)
        if kl_coef > 0:
            term_BT = term_BT + kl_coef * kl_BT
        stats["kl"] = ((kl_BT.sum(-1) / x.lengths_B).mean()).detach()
    loss = aggregate(term_BT, x.mask_BT, x.lengths_B, aggregation, normalizer, max_length)
    with torch.no_grad():
        stats["policy_loss"] = aggregate(-out.objective_BT, x.mask_BT, x.lengths_B, aggregation, None, max_length)
        stats.update(_ratio_stats(out, x))
    return loss, stats


def _loss_hparams(level, level_fn, clip_low, clip_high, max_log_ratio, hparams) -> dict[str, Any]:
    """The loss's hyper-parameters by name: table defaults < explicit clip / max_log_ratio < ``hparams``."""
    params: dict[str, Any] = dict(loss_defaults(level)) if isinstance(level, str) else {}
    params["max_log_ratio"] = max_log_ratio
    if clip_low is not None:
        params["clip_low"] = float(clip_low)
    if clip_high is not None:
        params["clip_high"] = float(clip_high)
    params.update(hparams or {})
    if not 0.0 <= params.get("clip_low", 0.0) <= 1.0:
        raise ValueError(f"clip_low: must be in [0, 1], got {params['clip_low']}")
    if params.get("clip_high", 0.0) < 0.0:
        raise ValueError(f"clip_high: must be >= 0, got {params['clip_high']}")
    declared = declared_keywords(level_fn)
    unknown = sorted(set(hparams or {}) - declared) if declared is not None else []
    if unknown:
        raise ValueError(f"hparams: the loss takes no {unknown}; it takes {sorted(declared or ())}")
    return params if declared is None else {k: v for k, v in params.items() if k in declared}


def _check_shapes(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, level) -> None:
    if logp.dim() != 2 or old_logp.shape != logp.shape or mask.shape != logp.shape:
        raise ValueError(
            f"logp, old_logp, mask: must all be [B, T] of one shape, got {tuple(logp.shape)}, "
            f"{tuple(old_logp.shape)}, {tuple(mask.shape)}"
        )
    if advantages.shape not in (logp.shape[:1], logp.shape):
        raise ValueError(f"advantages: must be [B] or [B, T] = {tuple(logp.shape)}, got {tuple(advantages.shape)}")
    if level == "sequence" and advantages.dim() == 2:
        # Constant along each response? Compared on the host only for this rare input form.
        first = advantages[:, :1].expand_as(advantages)
        if not bool(torch.where(mask.bool(), advantages == first, True).all()):
            raise ValueError(
                "advantages: per-token advantages need level='sequence_token' (GSPO-token), not 'sequence'"
            )


def _masked_inputs(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor) -> LossInputs:
    """Select real positions before any arithmetic so NaN/inf in padding never propagates (nor its grad)."""
    mask_BT = mask.bool()
    logp_BT = torch.where(mask_BT, logp, 0.0)
    adv_BT = advantages.detach()
    if adv_BT.dim() == 1:
        adv_BT = adv_BT.unsqueeze(-1).expand_as(logp_BT)
    return LossInputs(
        logp_BT=logp_BT,
        old_logp_BT=torch.where(mask_BT, old_logp.detach(), 0.0),
        adv_BT=torch.where(mask_BT, adv_BT, 0.0),
        mask_BT=mask_BT,
        lengths_B=mask_BT.sum(dim=-1).clamp(min=1).to(logp_BT.dtype),
    )


def _ratio_stats(out: LevelOutput, x: LossInputs) -> dict[str, Tensor]:
    """Ratio range and clip fractions: of sequences for sequence-level losses, of tokens otherwise."""
    ratio, mask_BT = out.ratio_B_or_BT, x.mask_BT
    stats: dict[str, Tensor] = {}
    if out.sequence_level:
        # Per-sequence fraction of clipped tokens (0 or 1 with per-sequence advantages), averaged.
        def frac(c: Tensor) -> Tensor:
            return (c.sum(-1) / x.lengths_B).mean()

        stats["ratio_mean"], stats["ratio_min"], stats["ratio_max"] = ratio.mean(), ratio.min(), ratio.max()
    else:

        def frac(c: Tensor) -> Tensor:
            return _masked_mean(c.to(x.logp_BT.dtype), mask_BT)

        stats["ratio_mean"] = _masked_mean(ratio, mask_BT)
        stats["ratio_min"] = torch.where(mask_BT, ratio, torch.inf).min()
        stats["ratio_max"] = torch.where(mask_BT, ratio, -torch.inf).max()
    stats["clip_frac_low"] = frac(out.clipped_low_BT)
    stats["clip_frac_high"] = frac(out.clipped_high_BT)
    stats["clip_frac"] = stats["clip_frac_low"] + stats["clip_frac_high"]
    stats.update({k: v.detach() for k, v in out.extra.items()})
    return stats
