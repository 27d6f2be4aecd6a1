"""Multi-turn rollouts (gspo.sampling.episodes): token exactness, masks, log-probs, limits, failures."""

from __future__ import annotations

import pytest
import torch

from gspo.environments import EnvironmentError
from gspo.environments.formatting import TurnFormat
from gspo.environments.guard import GuardedEnvironment
from gspo.losses import policy_loss
from gspo.sampling.episodes import EpisodeLimits, run_episodes
from gspo.sampling.scoring import completion_logprobs
from tests.environments.scripted import (
    HangingEnv,
    NeverDoneEnv,
    RaisingEnv,
    ScriptedEnv,
    WrongTypeEnv,
    rows,
    straightforward_episode,
)
from tests.helpers_tiny import tiny_model_and_tokenizer


@pytest.fixture(scope="module")
def tiny():
    return tiny_model_and_tokenizer(arch="llama", seed=2)


LIMITS = EpisodeLimits(max_turns=3, max_turn_tokens=6, max_episode_tokens=200)


def play(model, tok, env, *, greedy=False, limits=LIMITS, group=2, n=2, seed=0, **guard):
    return run_episodes(
        model,
        tok,
        GuardedEnvironment(env, **guard),
        rows(n),
        group_size=group,
        limits=limits,
        fmt=TurnFormat(tok, chat=True),
        eos_token_ids=[tok.eos_token_id],
        pad_token_id=tok.pad_token_id,
        greedy=greedy,
        generator=torch.Generator().manual_seed(seed),
    )


def test_three_turn_episodes_equal_a_straightforward_per_episode_loop(tiny):
    model, tok = tiny
    env = ScriptedEnv(turns=3)
    batch = play(model, tok, env, greedy=True, n=3, group=1)
    fmt = TurnFormat(tok, chat=True)
    for b, ep in enumerate(batch.episodes):
        prompt, ids, model_mask, logps = straightforward_episode(
            model, tok, env, ep.row, fmt, max_turns=3, max_turn_tokens=6, eos_ids={tok.eos_token_id}
        )
        n = len(ids)
        roll = batch.rollout
        assert roll.prompt_ids_BP[b][roll.prompt_mask_BP[b].bool()].tolist() == prompt
        assert int(roll.completion_mask_BT[b].sum()) == n
        assert roll.completion_ids_BT[b, :n].tolist() == ids
        assert batch.model_mask_BT[b, :n].tolist() == model_mask
        assert not batch.model_mask_BT[b, n:].any()
        assert torch.allclose(roll.logp_BT[b, :n], torch.tensor(logps), atol=1e-5)
        assert ep.turns == 3 and ep.done and ep.truncated is None
        assert (batch.turn_BT[b, :n][~batch.model_mask_BT[b, :n]] == -1).all()
        assert sorted(set(batch.turn_BT[b, :n][batch.model_mask_BT[b, :n]].tolist())) == [0, 1, 2]


def test_trained_tokens_are_the_sampled_ones_and_sampler_logprobs_cover_model_tokens_only(tiny):
    model, tok = tiny
    batch = play(model, tok, ScriptedEnv(turns=3), seed=5)
    roll = batch.rollout
    for b, ep in enumerate(batch.episodes):
        for k, reply in enumerate(ep.replies):
            turn_ids = roll.completion_ids_BT[b][batch.turn_BT[b] == k].tolist()
            assert len(turn_ids) == ep.turn_tokens[k]
            text_ids = turn_ids[:-1] if turn_ids[-1] == tok.eos_token_id else turn_ids
            assert tok.decode(text_ids, skip_special_tokens=True) == reply
    env_BT = roll.completion_mask_BT.bool() & ~batch.model_mask_BT
    assert env_BT.any() and (roll.logp_BT[env_BT] == 0).all()
    # the trainer's log-probs of the same tokens equal the sampler's on model tokens
    logp, _ = completion_logprobs(
        model, roll.prompt_ids_BP, roll.prompt_mask_BP, roll.completion_ids_BT, roll.completion_mask_BT
    )
    assert torch.allclose(logp[batch.model_mask_BT], roll.logp_BT[batch.model_mask_BT], atol=1e-5)


def test_environment_tokens_get_no_gradient_and_ratio_length_counts_model_tokens(tiny):
    model, tok = tiny
    batch = play(model, tok, ScriptedEnv(turns=3), seed=1)
    mask_BT = batch.model_mask_BT
    env_BT = batch.rollout.completion_mask_BT.bool() & ~mask_BT
    logp = batch.rollout.logp_BT.clone().requires_grad_(True)
    old = batch.rollout.logp_BT + torch.where(mask_BT, -0.01, 5.0)  # environment tokens far off: ignored
    adv_B = torch.tensor([1.0, -1.0, 0.5, 2.0])
    loss, stats = policy_loss(logp, old, adv_B, mask_BT, level="sequence", clip_low=1.0, clip_high=10.0)
    loss.backward()
    assert (logp.grad[env_BT] == 0).all() and (logp.grad[mask_BT] != 0).all()
    # s_i = exp(mean over model tokens of 0.01) whatever the number of environment tokens
    assert torch.isclose(stats["ratio_mean"], torch.tensor(0.01).exp(), atol=1e-6)
    # eq. 10: each model token of episode i gets s_i·Â_i/|y_i| / B, |y_i| its model-token count
    lengths = mask_BT.sum(-1).float()
    expected = -(torch.tensor(0.01).exp() * adv_B / lengths / 4)
    assert torch.allclose(logp.grad[0][mask_BT[0]], expected[0].expand(int(lengths[0])), atol=1e-6)


def test_gspo_equals_gspo_token_with_per_trajectory_advantages_on_episodes(tiny):
    model, tok = tiny
    batch = play(model, tok, ScriptedEnv(turns=3), seed=2)
    mask_BT = batch.model_mask_BT
    adv_B = torch.tensor([0.7, -1.2, 0.3, 1.5])
    old = batch.rollout.logp_BT + torch.where(mask_BT, 2e-4, 0.0) * torch.tensor([1.0, -1.0, -3.0, 0.0])[:, None]
    results = []
    for level, adv in (("sequence", adv_B), ("sequence_token", adv_B[:, None].expand_as(mask_BT))):
        logp = batch.rollout.logp_BT.clone().requires_grad_(True)
        loss, stats = policy_loss(logp, old, adv, mask_BT, level=level, clip_low=3e-4, clip_high=4e-4)
        loss.backward()
        results.append((loss.detach(), logp.grad.clone(), stats["clip_frac"]))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-7)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-7)
    assert results[0][2] == results[1][2] and results[0][2] > 0  # the same episodes clipped


def test_turn_limit_ends_episodes_that_never_finish(tiny):
    model, tok = tiny
    batch = play(
        model, tok, NeverDoneEnv(), limits=EpisodeLimits(max_turns=2, max_turn_tokens=4, max_episode_tokens=500)
    )
    for ep in batch.episodes:
        assert ep.turns == 2 and ep.truncated == "turns" and not ep.done
        assert all(n <= 4 for n in ep.turn_tokens)
    assert not batch.rollout.finished_B.any()


def test_token_limit_ends_episodes_within_the_budget(tiny):
    model, tok = tiny
    batch = play(
        model, tok, NeverDoneEnv(), limits=EpisodeLimits(max_turns=50, max_turn_tokens=5, max_episode_tokens=30)
    )
    lengths = batch.rollout.completion_mask_BT.sum(-1)
    assert (lengths <= 30).all()
    assert all(ep.truncated == "tokens" and ep.turns < 50 for ep in batch.episodes)


@pytest.mark.parametrize("env", [RaisingEnv(), WrongTypeEnv()], ids=["raises", "wrong-type"])
def test_a_failing_environment_is_named_or_ends_its_episodes(tiny, env):
    model, tok = tiny
    with pytest.raises(EnvironmentError, match=f"environment '{env.name}': step"):
        play(model, tok, env)
    guarded = GuardedEnvironment(env, on_error="end")
    batch = run_episodes(
        model, tok, guarded, rows(2), group_size=2, limits=EpisodeLimits(3, 6, 200), fmt=TurnFormat(tok, chat=True),
        eos_token_ids=[tok.eos_token_id], pad_token_id=tok.pad_token_id, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert guarded.errors == 4
    for ep in batch.episodes:
        assert ep.truncated == "error" and ep.final_reward == 0.0 and ep.turns == 1 and env.name in ep.error


def test_a_hanging_environment_meets_its_deadline(tiny):
    import time

    model, tok = tiny
    start = time.perf_counter()
    with pytest.raises(EnvironmentError, match="did not return within 0.2 s"):
        play(model, tok, HangingEnv(), timeout_s=0.2)
    batch = play(model, tok, HangingEnv(), timeout_s=0.2, on_error="end")
    assert time.perf_counter() - start < 10
    assert all(ep.truncated == "error" for ep in batch.episodes)
