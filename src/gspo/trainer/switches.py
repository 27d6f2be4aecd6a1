"""The trainer's general switches that are not part of any one algorithm (config fields, any entry):

- a *sampler copy* (``sampler_dtype``): rollouts sampled by a copy of the model in bfloat16 / float16,
  refreshed from the trained weights before each step, as a separate inference engine would be;
- *rollout-mismatch correction* (``mismatch_correction``: TIS / MIS, :func:`gspo.losses.mismatch_correction`);
- *adaptive clipping* (``adaptive_clip``): ε scaled between steps to hold the clip fraction near a target;
- metrics of the overlong shaping (``overlong/*``);
- the *KL in the reward* without a critic (``reward_kl_coef`` with REINFORCE++): per-token rewards and the
  estimator's token form (:func:`apply_reward_kl`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from gspo.losses import call_with_declared, mismatch_correction, token_rewards

logger = logging.getLogger("gspo")

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def sampler_copy(model, dtype: str):
    """A frozen copy of ``model`` in ``dtype`` for sampling, or None for ``"same"``."""
    if dtype == "same":
        return None
    return copy.deepcopy(model).to(_DTYPES[dtype]).eval().requires_grad_(False)


@torch.no_grad()
def refresh_sampler_copy(copy_model, model) -> None:
    """Copy the trained weights into the sampler copy (cast to its dtype)."""
    if copy_model is None:
        return
    for dst, src in zip(copy_model.state_dict().values(), model.state_dict().values()):
        dst.copy_(src)


def apply_mismatch_correction(config, batch, old, dist) -> None:
    """Measure π_old (trainer) against μ (sampler) on the rollout; TIS weights into ``old``, MIS into the mask.

    Writes the ``mismatch/*`` metrics (raw ratios, before any truncation) into ``batch.metrics``, reduced
    over all processes (``dist``): means weighted by tokens (responses for the MIS share), extremes by
    min / max, so they describe the global batch whatever the number of processes.
    """
    weight_BT, keep_B, stats = mismatch_correction(
        old.logp_BT,
        batch.sampler_logp_BT.to(old.logp_BT.dtype),
        batch.loss_mask_BT,
        mode=config.mismatch_correction,
        cap=config.mismatch_cap,
        max_log_ratio=config.max_log_ratio,
    )
    tokens, responses = batch.loss_mask_BT.sum(), batch.loss_mask_BT.any(-1).sum()
    old.token_weight_BT = weight_BT
    batch.loss_mask_BT = batch.loss_mask_BT & keep_B[:, None]
    token_means = ("mismatch/ratio_mean", "mismatch/k1", "mismatch/tis_capped_frac")
    means = {k: (stats[k], tokens) for k in token_means}
    means["mismatch/mis_masked_frac"] = (stats["mismatch/mis_masked_frac"], responses)
    mins = {k: stats[k] for k in ("mismatch/ratio_min", "mismatch/seq_ratio_min")}
    maxs = {k: stats[k] for k in ("mismatch/ratio_max", "mismatch/seq_ratio_max")}
    batch.metrics.update(dist.reduce_metrics(means, mins, maxs))


def scaled_clip(hparams: Mapping[str, Any], scale: float) -> Mapping[str, Any]:
    """``hparams`` with clip_low / clip_high multiplied by ``scale`` (clip_low at most 1)."""
    if scale == 1.0:
        return hparams
    out = dict(hparams)
    if "clip_low" in out:
        out["clip_low"] = min(out["clip_low"] * scale, 1.0)
    if "clip_high" in out:
        out["clip_high"] = out["clip_high"] * scale
    return out


def adapt_clip(trainer, clip_frac: float) -> dict[str, float]:
    """After a step: widen ε when it clipped more than the target, narrow it when less (within bounds).

    scale ← clamp(scale · (1 + rate)^{±1}, low, high); returns the ``clip/*`` metrics (empty when off).
    The step's own updates used the scale from before it.
    """
    cfg = trainer.config
    if not cfg.adaptive_clip:
        return {}
    used = scaled_clip(trainer.loss_hparams, trainer.clip_scale)
    factor = 1.0 + cfg.adaptive_clip_rate
    scale = trainer.clip_scale * (factor if clip_frac > cfg.adaptive_clip_target else 1.0 / factor)
    low, high = cfg.adaptive_clip_bounds
    metrics = {"clip/scale": trainer.clip_scale}
    metrics.update({f"clip/{k[5:]}": float(v) for k, v in used.items() if k in ("clip_low", "clip_high")})
    trainer.clip_scale = min(max(scale, low), high)
    return metrics


def loss_mask(config, sampled, mask_BT):
    """The tokens the loss sees: ``mask_BT``, minus the rows cut at a length limit under DAPO's overlong
    filtering (``overlong_filter``: truncated completions, or episodes, leave the loss)."""
    mask_BT = mask_BT.bool()
    return mask_BT & sampled.finished_B[:, None] if config.overlong_filter else mask_BT


def shaping_metrics(config, penalty: Sequence[float], sampled, dist) -> dict[str, float]:
    """``overlong/*``: the soft punishment's mean and share of penalised completions; the filter's share.

    Means over the completions of all processes (``dist``), not of this process's share.
    """
    means: dict[str, tuple[float, float]] = {}
    if config.overlong_buffer_tokens > 0 and penalty:
        n = len(penalty)
        means["overlong/penalty_mean"] = (sum(penalty) / n, n)
        means["overlong/penalized_frac"] = (sum(p < 0 for p in penalty) / n, n)
    if config.overlong_filter:
        n = len(sampled.finished_B)
        means["overlong/filtered_frac"] = (int((~sampled.finished_B).sum()) / max(n, 1), n)
    return dist.reduce_metrics(means) if means else {}


def reward_tokens(config, dist, batch, ref_logp_BT):
    """This process's rows: ``(rewards_B, token_rewards_BT, kl_BT)``, all float64.

    The outcome reward sits on each row's last real token; with ``reward_kl_coef`` β > 0 every real token
    also gets −β·(log μ − log π_ref) (μ the sampler), and ``kl_BT`` is that per-token KL (else None).
    float64: a small KL beside a large outcome would lose its digits in float32. Used by PPO's critic
    (through GAE) and by REINFORCE++'s KL in the reward.
    """
    B, mask_BT = batch.size, batch.loss_mask_BT
    rewards_B = batch.rewards_B[dist.rank * B : (dist.rank + 1) * B].to(mask_BT.device, torch.float64)
    kl_BT = None
    if config.reward_kl_coef > 0:
        assert ref_logp_BT is not None
        kl_BT = torch.where(mask_BT, batch.sampler_logp_BT.double() - ref_logp_BT.double(), 0.0)
    return rewards_B, token_rewards(rewards_B, mask_BT, kl_BT=kl_BT, kl_coef=config.reward_kl_coef), kl_BT


def apply_reward_kl(trainer, batch, ref_logp_BT) -> None:
    """REINFORCE++'s KL in the reward (``reward_kl_coef`` > 0 and no critic): token advantages replace the rollout's.

    r_t = −β·(log μ(y_t) − log π_ref(y_t)) on every real token (μ the sampler), plus the outcome reward on
    the last one; the estimator turns them into whitened returns-to-go over the global batch. Logs
    ``reward_kl/kl_mean`` (per token) and ``reward_kl/penalty_mean`` (β·Σ_t KL_t per response).
    """
    cfg, dist = trainer.config, trainer.dist
    if cfg.reward_kl_coef <= 0 or getattr(trainer, "critic", None) is not None:
        return
    mask_BT = batch.loss_mask_BT
    rewards_B, r_BT, kl_BT = reward_tokens(cfg, dist, batch, ref_logp_BT)
    assert kl_BT is not None
    batch.adv_B = call_with_declared(
        trainer.advantage_fn,
        rewards_B,
        cfg.group_size,
        token_rewards_BT=r_BT,
        mask_BT=mask_BT,
        reduce_sums=dist.all_reduce,
    ).to(ref_logp_BT.dtype)
    tokens, rows = mask_BT.sum(), mask_BT.any(-1).sum()
    penalty_B = cfg.reward_kl_coef * kl_BT.sum(-1)
    batch.metrics.update(
        dist.reduce_metrics(
            {
                "reward_kl/kl_mean": (kl_BT.sum() / tokens.clamp(min=1), tokens),
                "reward_kl/penalty_mean": (penalty_B.sum() / rows.clamp(min=1), rows),
            }
        )
    )
