"""Metrics of the general switches describe the global batch, whatever the number of processes.

Two processes are simulated in one: rank 1's collectives are recorded, then rank 0's are combined
with them, so the reduced metrics can be compared with the same computation over the whole batch.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from gspo.trainer.distributed import Dist
from gspo.trainer.switches import apply_mismatch_correction, shaping_metrics


class Recording(Dist):
    """One process of two: its all-reduce inputs are kept, the result is its own tensor."""

    def __init__(self):
        super().__init__()
        self.sent: list[torch.Tensor] = []

    def all_reduce(self, tensor, op="sum"):
        self.sent.append(tensor.clone())
        return tensor


class Combining(Dist):
    """The other process: each all-reduce combines its tensor with the recorded one of the same call."""

    def __init__(self, other: Recording):
        super().__init__()
        self.world, self.other = 2, list(other.sent)

    def all_reduce(self, tensor, op="sum"):
        theirs = self.other.pop(0)
        return {"sum": tensor + theirs, "min": torch.minimum(tensor, theirs), "max": torch.maximum(tensor, theirs)}[op]


def _mismatch(mask_BT, old_BT, sampler_BT, dist):
    config = SimpleNamespace(mismatch_correction="mis", mismatch_cap=1.3, max_log_ratio=20.0)
    batch = SimpleNamespace(loss_mask_BT=mask_BT.clone(), sampler_logp_BT=sampler_BT, metrics={})
    apply_mismatch_correction(config, batch, SimpleNamespace(logp_BT=old_BT, token_weight_BT=None), dist)
    return batch.metrics


def test_mismatch_metrics_over_two_processes_equal_those_of_the_whole_batch():
    g = torch.Generator().manual_seed(0)
    B, T = 6, 5
    mask_BT = torch.rand(B, T, generator=g) > 0.3
    mask_BT[:, 0] = True
    old_BT = -torch.rand(B, T, generator=g, dtype=torch.float64)
    sampler_BT = old_BT + 1.5 * torch.randn(B, T, generator=g, dtype=torch.float64)
    whole = _mismatch(mask_BT, old_BT, sampler_BT, Dist())
    rank1 = Recording()
    _mismatch(mask_BT[4:], old_BT[4:], sampler_BT[4:], rank1)  # an uneven split: 4 rows and 2 rows
    split = _mismatch(mask_BT[:4], old_BT[:4], sampler_BT[:4], Combining(rank1))
    assert split.keys() == whole.keys()
    for key in whole:
        assert split[key] == pytest.approx(whole[key], rel=1e-12, abs=1e-12), key
    assert 0 < whole["mismatch/mis_masked_frac"] < 1  # the test exercises both outcomes


def test_overlong_metrics_over_two_processes_equal_those_of_the_whole_batch():
    config = SimpleNamespace(overlong_buffer_tokens=4, overlong_filter=True)
    penalty = [0.0, -0.5, 0.0, -1.0, 0.0]
    finished_B = torch.tensor([True, False, True, False, True])
    whole = shaping_metrics(config, penalty, SimpleNamespace(finished_B=finished_B), Dist())
    rank1 = Recording()
    shaping_metrics(config, penalty[3:], SimpleNamespace(finished_B=finished_B[3:]), rank1)
    split = shaping_metrics(config, penalty[:3], SimpleNamespace(finished_B=finished_B[:3]), Combining(rank1))
    assert whole == {"overlong/penalty_mean": -0.3, "overlong/penalized_frac": 0.4, "overlong/filtered_frac": 0.4}
    assert split == pytest.approx(whole)
