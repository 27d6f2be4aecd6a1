"""EpisodeTrainer: episodes through the whole trainer (advantages per turn, the loss mask, metrics,
evaluation, resume), the built-in environments end to end from the command line."""

from __future__ import annotations

import json

import pytest
import torch

from gspo.algorithms import ALGORITHMS
from gspo.trainer.checkpoint import latest_checkpoint
from gspo.trainer.episodes import EpisodeTrainer
from tests.environments.scripted import RaisingEnv, ScriptedEnv, rows
from tests.helpers_cli import run_gspo
from tests.helpers_tiny import tiny_model_and_tokenizer
from tests.trainer.conftest import model_params, trainer_config


def _config(tmp_path, **overrides):
    base = dict(environment="scripted", max_new_tokens=60, max_turn_tokens=5, max_turns=3, eval_limit=4)
    return trainer_config(tmp_path, **{**base, **overrides})


def _trainer(tmp_path, env=None, seed=0, **overrides):
    model, tok = tiny_model_and_tokenizer(seed=seed)
    config = _config(tmp_path, **overrides)
    return EpisodeTrainer(model, tok, env or ScriptedEnv(), rows(8), config, eval_data=rows(4))


@pytest.mark.parametrize("algorithm", ["gspo-token", "grpo"])
def test_per_turn_rewards_reach_the_tokens_of_their_turn(tmp_path, algorithm):
    trainer = _trainer(tmp_path, ScriptedEnv(turn_rewards=[1.0, 0.0, 0.5]), algorithm=algorithm)
    batch = trainer._rollout()
    adv_BT = batch.adv_B
    assert adv_BT.shape == batch.sampled.completion_ids_BT.shape
    returns_B = batch.rewards_B
    G = trainer.config.group_size
    for b in range(batch.size):
        group = returns_B[(b // G) * G : (b // G + 1) * G]
        mean, std = group.mean(), group.std()
        std = std if std > 0 else torch.tensor(1.0)
        model_BT = batch.loss_mask_BT[b]
        values = adv_BT[b][model_BT]
        # reward-to-go from turns 0, 1, 2: R, R - 1, R - 1
        togo = [returns_B[b], returns_B[b] - 1.0, returns_B[b] - 1.0]
        expected = sorted({round(float((g - mean) / std), 5) for g in togo})
        assert sorted({round(float(v), 5) for v in values}) == expected
        assert (adv_BT[b][~model_BT] == 0).all()


def test_gspo_takes_one_advantage_per_episode_even_with_turn_rewards(tmp_path):
    trainer = _trainer(tmp_path, ScriptedEnv(turn_rewards=[1.0, 0.0, 0.5]))
    batch = trainer._rollout()
    assert batch.adv_B.shape == (batch.size,)
    env_BT = batch.sampled.completion_mask_BT.bool() & ~batch.loss_mask_BT
    assert env_BT.any()  # environment tokens are in the sequence, out of the loss


def test_training_steps_move_the_model_and_log_episode_metrics(tmp_path):
    trainer = _trainer(tmp_path, max_steps=2)
    before = model_params(trainer.model)
    summary = trainer.train()
    assert summary["steps"] == 2 and summary["eval_before"] is not None
    after = model_params(trainer.model)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    step = [x for x in lines if x["step"] == 1 and "episodes/turns_mean" in x][0]
    assert step["episodes/turns_mean"] == 3 and step["episodes/done_frac"] == 1
    assert step["episodes/tokens_per_turn"] <= 5 and step["episodes/env_tokens_mean"] > 0


def test_resume_in_the_middle_of_a_multi_turn_run_equals_an_uninterrupted_run(tmp_path):
    steps = dict(max_steps=4, save_steps=2, eval_limit=0)
    trainer_a = _trainer(tmp_path / "a", **steps)
    trainer_a.train()
    _trainer(tmp_path / "b", max_steps=2, save_steps=2, eval_limit=0).train()
    assert latest_checkpoint(tmp_path / "b" / "run") is not None
    trainer_c = _trainer(tmp_path / "b", seed=99, resume=True, **steps)  # another init: overwritten
    assert trainer_c.train()["steps"] == 4
    a, c = model_params(trainer_a.model), model_params(trainer_c.model)
    assert all(torch.allclose(a[k], c[k], atol=1e-6) for k in a)


def test_gspo_train_with_the_guessing_game_from_the_command_line(tiny_dir, tmp_path):
    out = tmp_path / "guess"
    result = run_gspo(
        "train", "--environment", "guess", "--environment-options", '{"low": 1, "high": 9}', "--model", tiny_dir,
        "--max-steps", "2", "--prompts-per-step", "2", "--group-size", "4", "--max-new-tokens", "48",
        "--max-turn-tokens", "4", "--max-turns", "4", "--eval-limit", "4", "--output-dir", out, "--num-threads", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["eval_after"] is not None
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("episodes/turns_mean" in m for m in metrics)


def test_a_bad_environment_is_named_before_any_model_loads(tmp_path):
    result = run_gspo("train", "--environment", "no.such.module:Env", "--output-dir", tmp_path / "x")
    assert result.returncode != 0
    assert "environment" in result.stderr and "no.such.module" in result.stderr


def test_gspo_and_gspo_token_train_alike_on_episodes_with_per_trajectory_advantages(tmp_path):
    """No per-turn rewards: GSPO-token's per-token advantages are the episode's, so one step of each is the same."""
    params = []
    for algorithm in ("gspo", "gspo-token"):
        trainer = _trainer(tmp_path / algorithm, algorithm=algorithm, max_steps=1, eval_limit=0)
        start = model_params(trainer.model)
        trainer.train()
        params.append(model_params(trainer.model))
    # Adam's first steps move a weight by about lr = 1e-2 whatever the gradient's size, so float32 rounding
    # differences of the two losses' gradients show up as up to ~6e-6 (measured): well below a step
    moved = max(float((params[0][k] - start[k]).abs().max()) for k in start)
    assert moved > 1e-3
    assert all(torch.allclose(params[0][k], params[1][k], atol=2e-5) for k in params[0])


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_every_algorithm_of_the_table_trains_on_episodes(tmp_path, algorithm):
    env = ScriptedEnv(turns=2, turn_rewards=[0.5, 0.0])
    trainer = _trainer(tmp_path, env, algorithm=algorithm, max_steps=1, eval_limit=0)
    before = model_params(trainer.model)
    metrics = trainer.train_step()
    assert all(torch.isfinite(torch.tensor(float(metrics[k]))) for k in ("loss", "grad_norm"))
    after = model_params(trainer.model)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_a_raising_environment_under_end_gives_a_logged_defined_step(tmp_path):
    trainer = _trainer(tmp_path, RaisingEnv(), environment_errors="end", eval_limit=0)
    metrics = trainer.train_step()
    assert metrics["episodes/env_errors"] == 16 and metrics["reward/failures"] == 16
    assert metrics["reward/mean"] == 0 and metrics["episodes/turns_mean"] == 1


def test_environment_failures_during_evaluation_are_not_the_next_step_s(tmp_path, caplog):
    trainer = _trainer(tmp_path, RaisingEnv(), environment_errors="end", eval_limit=4)
    with caplog.at_level("WARNING", logger="gspo"):
        assert trainer.evaluate() == 0.0
    assert "eval: 4 environment failure(s)" in caplog.text
    assert trainer.train_step()["reward/failures"] == 16  # this step's 16 episodes only


class HalfConstantEnv(ScriptedEnv):
    """Rows with an even id always score 0 (their groups teach nothing); odd ones vary."""

    def reward(self, episode):
        return 0.0 if episode.row["id"] % 2 == 0 else super().reward(episode)


def test_dynamic_sampling_keeps_informative_groups_of_episodes(tmp_path):
    trainer = _trainer(tmp_path, HalfConstantEnv(), dynamic_sampling=True, dynamic_sampling_max_rounds=6)
    batch = trainer._rollout()
    G = trainer.config.group_size
    assert [row["id"] % 2 for row in batch.rows] == [1] * trainer.config.prompts_per_step
    assert batch.metrics["dynamic_sampling/rounds"] >= 1 and batch.metrics["dynamic_sampling/filled_groups"] == 0
    # the episodes' layout followed the selection: loss mask = model tokens of the kept episodes
    assert batch.loss_mask_BT.shape == batch.sampled.completion_ids_BT.shape
    env_BT = batch.sampled.completion_mask_BT.bool() & ~batch.loss_mask_BT
    assert env_BT.any() and batch.loss_mask_BT.any(1).all()
    returns = batch.rewards_B.view(-1, G)
    assert (returns.std(1) > 0).all()
