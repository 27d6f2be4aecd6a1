"""Shared by the reliability tests: one torch intra-op thread while each test runs.

The CI machine has 2 cores shared with other jobs; with the default 2 OpenMP threads the tiny-model
steps spin-wait under contention and run ~10x slower. One thread also makes float summation order
fixed, so results are reproducible run to run. (Subprocess runs get ``--num-threads 1`` instead.)
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
