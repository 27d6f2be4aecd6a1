"""The padding check shared by the loss tests: NaN / inf in masked positions never reach loss or gradient."""

from __future__ import annotations

import torch

from gspo.losses import policy_loss


def assert_padding_does_not_leak(logp, old, adv, mask, *, level: str, old_fill: float) -> None:
    """NaN log-probs and ``old_fill`` π_old log-probs at masked positions change neither the loss, its
    statistics (all finite) nor the gradient (0 at masked positions), against the clean inputs."""
    clean = logp.detach().clone().requires_grad_(True)
    loss_clean, _ = policy_loss(clean, old, adv, mask, level=level)
    loss_clean.backward()
    dirty_vals = logp.detach().clone()
    dirty_vals[~mask] = float("nan")
    dirty = dirty_vals.requires_grad_(True)
    old_dirty = old.clone()
    old_dirty[~mask] = old_fill
    loss_dirty, stats = policy_loss(dirty, old_dirty, adv, mask, level=level)
    loss_dirty.backward()
    assert torch.isfinite(loss_dirty)
    assert all(torch.isfinite(v) for v in stats.values())
    torch.testing.assert_close(loss_dirty, loss_clean)
    torch.testing.assert_close(dirty.grad, clean.grad)
    assert (dirty.grad[~mask] == 0).all()
