"""README "Extending gspo", checked: a toy algorithm (its own loss with its own hyper-parameter, its
own advantage estimator) and a toy task, registered from outside the package, train 2 steps."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from gspo import Algorithm, GSPOConfig, Task, register_advantage, register_algorithm, register_loss, register_task
from gspo.algorithms import ALGORITHMS
from gspo.losses import ADVANTAGE_ESTIMATORS, LOSS_LEVELS, LevelOutput, LossInputs
from gspo.tasks import TASK_REGISTRY


def rloo_advantages(rewards_B: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO: each reward minus the mean of the other G-1 rewards of its group."""
    r_GN = torch.nan_to_num(rewards_B.float(), nan=0.0).view(-1, group_size)
    others = (r_GN.sum(1, keepdim=True) - r_GN) / (group_size - 1)
    return (r_GN - others).reshape(-1)


def scaled_pg_loss(x: LossInputs, *, scale: float) -> LevelOutput:
    """Token-ratio policy gradient without clipping, times ``scale`` (its own hyper-parameter)."""
    w_BT = torch.exp(x.logp_BT - x.old_logp_BT)
    never = torch.zeros_like(x.mask_BT)
    return LevelOutput(
        objective_BT=torch.where(x.mask_BT, scale * w_BT * x.adv_BT, 0.0),
        ratio_B_or_BT=w_BT,
        clipped_low_BT=never,
        clipped_high_BT=never,
        sequence_level=False,
    )


class CopyTask(Task):
    """Repeat a digit: prompt '7=' -> '7'."""

    name = "copy-digit"
    procedural = True
    max_new_tokens = 2

    def default_records(self, split: str, limit: int | None) -> list[tuple[str, dict[str, Any]]]:
        return [(f"{split}:{d}", {"digit": str(d)}) for d in range(10)]

    def make_row(self, record: dict[str, Any], at) -> dict[str, Any]:
        return {"prompt": f"{record['digit']}=", "answer": record["digit"], "id": at.where}

    def score(self, completion: str, row: dict[str, Any]) -> float:
        return float(completion.strip() == row["answer"])


@pytest.fixture
def registered():
    seen: list[dict] = []

    def scale_seen(x: LossInputs, *, scale: float) -> LevelOutput:
        seen.append({"scale": scale})
        return scaled_pg_loss(x, scale=scale)

    register_advantage("rloo-toy")(rloo_advantages)
    register_loss("scaled-pg")(scale_seen)
    register_algorithm(
        Algorithm(
            "toy-pg",
            loss="scaled-pg",
            advantage="rloo-toy",
            defaults={"scale": 1.0},
            summary="unclipped token policy gradient with RLOO advantages (a test)",
        )
    )
    register_task("copy-digit", CopyTask)
    try:
        yield seen
    finally:
        ADVANTAGE_ESTIMATORS.pop("rloo-toy")
        LOSS_LEVELS.pop("scaled-pg")
        ALGORITHMS.pop("toy-pg")
        TASK_REGISTRY.pop("copy-digit")


def test_a_toy_algorithm_and_task_from_outside_train_two_steps(tmp_path, registered):
    from gspo.trainer.build import build_trainer

    assert "toy-pg" in GSPOConfig.field_choices()["algorithm"]  # --help lists it
    config = GSPOConfig(
        algorithm="toy-pg",
        algorithm_options={"scale": 0.5},
        task="copy-digit",
        max_steps=2,
        prompts_per_step=4,
        group_size=4,
        max_new_tokens=2,
        eval_limit=4,
        eval_every=0,
        output_dir=str(tmp_path),
        progress=False,
    ).validate()
    summary = build_trainer(config).train()
    assert summary["steps"] == 2 and summary["optimizer_steps"] == 8 and summary["algorithm"] == "toy-pg"
    assert registered and all(call == {"scale": 0.5} for call in registered)  # its hyper-parameter, by name
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "loss" in line] == [1, 2]


def test_unknown_algorithm_options_and_unprovided_needs_are_config_errors(registered, monkeypatch):
    import gspo.config.train as train_config
    from gspo.config import ConfigError

    monkeypatch.setattr(train_config, "PROVIDED_NEEDS", ("old_logp", "reference"))  # as before critics existed
    with pytest.raises(ConfigError, match="algorithm_options: has unknown names \\['tau'\\]"):
        GSPOConfig(algorithm="toy-pg", algorithm_options={"tau": 1.0}).validate()
    register_algorithm(Algorithm("toy-ppo", loss="scaled-pg", needs=frozenset({"old_logp", "critic"}), summary="x"))
    try:
        with pytest.raises(ConfigError, match="needs \\['critic'\\], which the trainer does not provide yet"):
            GSPOConfig(algorithm="toy-ppo").validate()
    finally:
        ALGORITHMS.pop("toy-ppo")


def test_a_pair_loss_from_outside_is_an_online_preference_algorithm(tmp_path):
    """IPO (Azar et al. 2023): (z/β − 1/(2τ))² on the log-ratio margin, as a pair loss and a table entry."""
    from gspo import register_pair_loss
    from gspo.losses import PAIR_LOSSES
    from gspo.trainer import GSPOTrainer
    from tests.helpers_tiny import tiny_model_and_tokenizer
    from tests.trainer.conftest import count_a_reward, make_rows, trainer_config

    calls: list[float] = []

    @register_pair_loss("ipo-toy")
    def ipo(chosen_B, rejected_B, ref_chosen_B, ref_rejected_B, *, tau):
        calls.append(tau)
        margin_B = (chosen_B - ref_chosen_B) - (rejected_B - ref_rejected_B)
        return ((margin_B - 1 / (2 * tau)) ** 2).mean(), {"margin": margin_B.detach().mean()}

    register_algorithm(
        Algorithm("ipo-toy", "ipo-toy", "IPO (a test)", defaults={"tau": 0.1}, needs=frozenset({"reference", "pairs"}))
    )
    try:
        model, tok = tiny_model_and_tokenizer(chat=False)
        cfg = trainer_config(tmp_path, algorithm="ipo-toy", algorithm_options={"tau": 0.5})
        m = GSPOTrainer(model, tok, [count_a_reward], make_rows(), cfg).train_step()
        assert calls and set(calls) == {0.5} and m["pairs"] > 0 and "margin" in m
        assert m["optimizer_steps"] >= 1 and m["loss"] > 0
    finally:
        PAIR_LOSSES.pop("ipo-toy")
        ALGORITHMS.pop("ipo-toy")
