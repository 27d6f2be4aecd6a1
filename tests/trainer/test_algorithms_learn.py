"""Every entry of the algorithm table raises held-out accuracy on the embedded task in a short run
(the embedded adder starts at 0 greedy accuracy on carry problems; 8 steps, 100 held-out problems)."""

from __future__ import annotations

import pytest

from gspo.algorithms import ALGORITHMS
from gspo.config import GSPOConfig


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_algorithm_raises_held_out_accuracy_on_the_embedded_task(tmp_path, algorithm):
    from gspo.trainer.build import build_trainer

    cfg = GSPOConfig(
        algorithm=algorithm, max_steps=8, eval_limit=100, eval_every=0, output_dir=str(tmp_path), progress=False
    )
    summary = build_trainer(cfg).train()
    assert summary["eval_before"] <= 0.05
    assert summary["eval_after"] >= 0.6, summary
