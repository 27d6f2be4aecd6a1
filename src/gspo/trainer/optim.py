"""Optimizer and learning-rate schedule.

AdamW from torch (the fused kernel where supported), or 8-bit AdamW from bitsandbytes on CUDA (``optimizer="adamw_8bit"``); on CPU, or
without bitsandbytes, the 8-bit request falls back to plain AdamW with a logged message. The schedule
is linear warm-up then constant, linear decay or cosine decay over the run's optimizer steps.
"""

from __future__ import annotations

import logging
import math

import torch

logger = logging.getLogger("gspo")


def build_optimizer(
    params, *, kind: str, lr: float, weight_decay: float, betas: tuple[float, float], eps: float, device: torch.device
):
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("model: no trainable parameters")
    if kind == "adamw_8bit":
        if device.type != "cuda":
            logger.warning("optimizer: adamw_8bit needs a CUDA device; using plain AdamW on %s", device.type)
        else:
            try:
                import bitsandbytes as bnb

                return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps)
            except ImportError:
                logger.warning("optimizer: bitsandbytes is not installed (pip install 'gspo[gpu]'); using plain AdamW")
    # fused AdamW: one kernel per step, ~5x faster than foreach on CPU for SmolLM2 (benchmarks/README.md, R1)
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps, fused=True)
    except (RuntimeError, ValueError):  # a device/dtype the fused kernel does not support
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps, foreach=True)


def build_scheduler(optimizer, *, schedule: str, warmup_steps: int, total_steps: int):
    total_steps = max(total_steps, 1)

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fit_prompt_budget(config, model) -> int:
    """max_prompt_tokens, lowered so that prompt + max_new_tokens fits the model's context."""
    from gspo.config import ConfigError
    from gspo.models.introspect import context_length

    context = context_length(model)
    if context is None:
        return config.max_prompt_tokens
    if config.max_new_tokens >= context:
        raise ConfigError(
            "max_new_tokens",
            f"must be smaller than the model's context of {context} tokens, got {config.max_new_tokens}",
        )
    if config.max_prompt_tokens + config.max_new_tokens <= context:
        return config.max_prompt_tokens
    logger.info(
        "max_prompt_tokens lowered from %d to %d so that prompt + max_new_tokens=%d fits the model's context of %d tokens",
        config.max_prompt_tokens,
        context - config.max_new_tokens,
        config.max_new_tokens,
        context,
    )
    return context - config.max_new_tokens
