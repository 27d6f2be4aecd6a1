"""Multi-turn rollouts: episodes of model turns and environment answers, batched, token-exact.

:func:`run_episodes` plays ``group_size`` episodes per row against an environment:

1. each episode's first messages (``env.reset``) are tokenized once (its *prompt*);
2. every turn, the episodes still running are sampled together by :func:`gspo.sampling.sample` (the
   trainer's sampler: same temperature, top-p/k, the sampler's log-probs), each on its own whole
   context (prompt, earlier turns, environment answers: all as token ids, left padded); finished
   episodes have left the batch;
3. the sampled ids of a turn are appended as they are (the EOS that ended it included); its text,
   decoded once, goes to the environment (``step_many``); the environment's answer is tokenized
   once (:class:`gspo.environments.formatting.TurnFormat`) and appended;
4. an episode ends when the environment says ``done``, after ``max_turns`` model turns, when its
   tokens after the prompt would pass ``max_episode_tokens`` (a turn is cut there), or on an
   environment failure under ``environment_errors=end``; then ``env.reward`` gives its final reward.

The result, :class:`EpisodeBatch`, is an ordinary :class:`~gspo.sampling.Rollout` whose "completion"
is everything after the first prompt (model and environment tokens; ``completion_mask_BT`` 1 on all
of them, so a training forward sees the whole conversation), with ``model_mask_BT`` marking the tokens
the model sampled (the loss mask), ``turn_BT`` the model turn each token belongs to (-1 for
environment tokens) and the sampler's ``logp_BT`` on model tokens only (0 elsewhere).
``finished_B`` is True for episodes the environment ended.

Each turn re-runs the whole context through the model (no KV cache is kept between turns): simple
and exact; the cost is one prefill per turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from gspo.environments.base import Episode
from gspo.environments.formatting import TurnFormat
from gspo.environments.guard import GuardedEnvironment
from gspo.sampling.generate import Rollout, sample


@dataclass(frozen=True)
class EpisodeLimits:
    """When an episode ends besides ``done``: model turns, tokens per model turn, tokens after the prompt."""

    max_turns: int
    max_turn_tokens: int
    max_episode_tokens: int


@dataclass
class EpisodeBatch:
    """B episodes as a rollout, with the model-token mask, turn indices and the episodes themselves."""

    rollout: Rollout
    model_mask_BT: torch.Tensor  # bool: tokens the model sampled (the loss mask)
    turn_BT: torch.Tensor  # int64: model turn of each token, -1 on environment tokens and padding
    episodes: list[Episode]

    @property
    def returns_B(self) -> list[float]:
        return [e.total_reward for e in self.episodes]


@dataclass
class _Track:
    """One episode's tokens after its prompt, built turn by turn."""

    prompt: list[int]
    ids: list[int]
    model: list[bool]
    logp: list[float]
    turn: list[int]
    running: bool = True
    ended_eos: bool = False  # the last model turn ended with an EOS token


def _left_pad(seqs: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return ids, mask


def _start(env: GuardedEnvironment, fmt: TurnFormat, rows, group_size: int, max_prompt_tokens: int | None):
    episodes, tracks = [], []
    for r, row in enumerate(rows):
        for j in range(group_size):
            ep = Episode(row=row, index=r * group_size + j)
            messages = env.reset(ep)
            ep.messages = list(messages or [])
            prompt = env.formatted(ep, partial(fmt.first_ids, ep.messages)) if messages else None
            if prompt is None:  # the environment failed (environment_errors=end): a placeholder, never sampled on
                messages, prompt = None, fmt.first_ids([{"role": "user", "content": " "}])
            if max_prompt_tokens is not None and len(prompt) > max_prompt_tokens:
                prompt = prompt[-max_prompt_tokens:]
            episodes.append(ep)
            tracks.append(_Track(prompt, [], [], [], [], running=messages is not None))
    return episodes, tracks


def _take_turn(model, tracks, active: list[int], limits: EpisodeLimits, sampling: dict[str, Any], pad_id: int):
    """Sample one turn for the ``active`` episodes: per episode (ids, logps, ended with EOS)."""
    budget = [limits.max_episode_tokens - len(tracks[b].ids) for b in active]
    ids_BP, mask_BP = _left_pad([tracks[b].prompt + tracks[b].ids for b in active], pad_id)
    device = sampling["device"]
    roll = sample(
        model,
        ids_BP.to(device),
        mask_BP.to(device),
        max_new_tokens=max(1, min(limits.max_turn_tokens, max(budget))),
        **{k: v for k, v in sampling.items() if k != "device"},
        pad_token_id=pad_id,
    )
    lengths = roll.completion_mask_BT.sum(-1).tolist()
    ids, logp, finished = roll.completion_ids_BT.tolist(), roll.logp_BT.float().tolist(), roll.finished_B.tolist()
    out = []
    for i, room in enumerate(budget):
        n = min(int(lengths[i]), room)
        out.append((ids[i][:n], logp[i][:n], bool(finished[i]) and n == int(lengths[i])))
    return out


def run_episodes(
    model,
    tokenizer,
    env: GuardedEnvironment,
    rows: Sequence[dict[str, Any]],
    *,
    group_size: int,
    limits: EpisodeLimits,
    fmt: TurnFormat,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    max_prompt_tokens: int | None = None,
    device: torch.device | str = "cpu",
) -> EpisodeBatch:
    """Play ``group_size`` episodes per row (rows of episode i*G+j: row i); see the module docstring."""
    episodes, tracks = _start(env, fmt, rows, group_size, max_prompt_tokens)
    sampling = dict(
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        greedy=greedy,
        generator=generator,
        eos_token_ids=list(eos_token_ids),
        device=device,
    )
    eos = set(int(i) for i in eos_token_ids)
    for turn in range(limits.max_turns):
        active = [b for b, t in enumerate(tracks) if t.running]
        if not active:
            break
        sampled = _take_turn(model, tracks, active, limits, sampling, pad_token_id)
        stepping, replies = [], []
        for b, (ids, logp, ended) in zip(active, sampled):
            t, ep = tracks[b], episodes[b]
            t.ids += ids
            t.model += [True] * len(ids)
            t.logp += logp
            t.turn += [turn] * len(ids)
            ep.turn_tokens.append(len(ids))
            ep.turn_rewards.append(0.0)
            text_ids = ids[:-1] if ended and ids and ids[-1] in eos else ids
            ep.replies.append(tokenizer.decode(text_ids, skip_special_tokens=True))
            ep.messages.append({"role": "assistant", "content": ep.replies[-1]})
            if len(t.ids) >= limits.max_episode_tokens:
                ep.truncated, t.running = "tokens", False
            else:
                stepping.append(b)
                replies.append(ep.replies[-1])
            t.ended_eos = ended
        answers = env.step_many([episodes[b] for b in stepping], replies) if stepping else []
        for b, answer in zip(stepping, answers):
            _apply(tracks[b], episodes[b], answer, env, fmt, turn, limits)
    for b, t in enumerate(tracks):
        if t.running:  # still running after max_turns model turns
            episodes[b].truncated, t.running = "turns", False
    for ep in episodes:
        ep.final_reward = env.reward(ep) if ep.truncated != "error" else 0.0
        env.close(ep)
    return _as_batch(tracks, episodes, pad_token_id, device)


def _apply(
    t: _Track, ep: Episode, answer, env: GuardedEnvironment, fmt: TurnFormat, turn: int, limits: EpisodeLimits
) -> None:
    """The environment's answer to one turn: its reward and counts recorded, its tokens appended."""
    if answer is None:  # the environment failed (environment_errors=end): the episode is over
        t.running = False
        return
    if answer.reward is not None:
        ep.turn_rewards[-1] = float(answer.reward)
    ep.tool_calls += int(answer.tool_call)
    ep.tool_errors += int(answer.tool_call and answer.tool_error)
    if answer.done:
        ep.done, t.running = True, False
        return
    if turn + 1 >= limits.max_turns:
        ep.truncated, t.running = "turns", False  # no model turn follows: its answer is not appended
        return
    eos_id = t.ids[-1] if t.ended_eos else None
    extra = env.formatted(ep, partial(fmt.answer_ids, answer.messages, sampled_eos_id=eos_id))
    if extra is None:  # its messages could not be formatted (environment_errors=end): the episode is over
        t.running = False
        return
    if len(t.ids) + len(extra) >= limits.max_episode_tokens:
        ep.truncated, t.running = "tokens", False  # no room left for a model turn after it
        return
    ep.messages += answer.messages
    t.ids += extra
    t.model += [False] * len(extra)
    t.logp += [0.0] * len(extra)
    t.turn += [-1] * len(extra)


def _as_batch(tracks: list[_Track], episodes: list[Episode], pad_id: int, device) -> EpisodeBatch:
    prompt_ids_BP, prompt_mask_BP = _left_pad([t.prompt for t in tracks], pad_id)
    B, T = len(tracks), max(1, max(len(t.ids) for t in tracks))  # >= 1 column even if every reset failed
    ids_BT = torch.full((B, T), pad_id, dtype=torch.long)
    mask_BT = torch.zeros((B, T), dtype=torch.long)
    model_BT = torch.zeros((B, T), dtype=torch.bool)
    logp_BT = torch.zeros((B, T), dtype=torch.float32)
    turn_BT = torch.full((B, T), -1, dtype=torch.long)
    for b, t in enumerate(tracks):
        n = len(t.ids)
        ids_BT[b, :n] = torch.tensor(t.ids, dtype=torch.long)
        mask_BT[b, :n] = 1
        model_BT[b, :n] = torch.tensor(t.model, dtype=torch.bool)
        logp_BT[b, :n] = torch.tensor(t.logp, dtype=torch.float32)
        turn_BT[b, :n] = torch.tensor(t.turn, dtype=torch.long)
    finished_B = torch.tensor([e.done for e in episodes], dtype=torch.bool)
    rollout = Rollout(
        prompt_ids_BP=prompt_ids_BP.to(device),
        prompt_mask_BP=prompt_mask_BP.to(device),
        completion_ids_BT=ids_BT.to(device),
        completion_mask_BT=mask_BT.to(device),
        logp_BT=logp_BT.to(device),
        finished_B=finished_B.to(device),
    )
    return EpisodeBatch(rollout, model_BT.to(device), turn_BT.to(device), episodes)


__all__ = ["EpisodeBatch", "EpisodeLimits", "run_episodes"]
