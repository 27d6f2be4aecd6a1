"""Environments written for the tests: scripted, misbehaving, and a straightforward episode loop."""

from __future__ import annotations

import time

import torch

from gspo.environments import Environment, Episode, Turn


class ScriptedEnv(Environment):
    """``turns`` model turns, then done. Answers ``"ok K"`` after turn K (reward ``turn_rewards[K]``
    when given); the final reward is the number of characters of all replies mod 5 (varied)."""

    name = "scripted"

    def __init__(self, turns: int = 3, turn_rewards: list[float] | None = None, role: str = "user"):
        self.turns, self.turn_rewards, self.role = turns, turn_rewards, role

    def reset(self, episode: Episode):
        return [{"role": "user", "content": f"go {episode.row['id']}"}]

    def step(self, episode: Episode, reply: str) -> Turn:
        k = episode.turns - 1
        reward = None if self.turn_rewards is None else self.turn_rewards[k]
        return Turn([{"role": self.role, "content": f"ok {k}"}], done=k + 1 >= self.turns, reward=reward)

    def reward(self, episode: Episode) -> float:
        return float(sum(len(r) for r in episode.replies) % 5)


class NeverDoneEnv(ScriptedEnv):
    name = "never-done"

    def step(self, episode, reply):
        return Turn([{"role": "user", "content": "again"}])


class RaisingEnv(ScriptedEnv):
    name = "raising"

    def step(self, episode, reply):
        raise KeyError("the tool crashed")


class HangingEnv(ScriptedEnv):
    name = "hanging"

    def step(self, episode, reply):
        time.sleep(30)
        return Turn(done=True)


class WrongTypeEnv(ScriptedEnv):
    name = "wrong-type"

    def step(self, episode, reply):
        return {"messages": "not a turn"}


def rows(n: int = 2) -> list[dict]:
    return [{"prompt": f"go {i}", "id": i} for i in range(n)]


@torch.no_grad()
def straightforward_episode(model, tokenizer, env, row, fmt, *, max_turns: int, max_turn_tokens: int, eos_ids):
    """One greedy episode with full forwards and no batching: (prompt ids, ids after it, model mask, log-probs)."""
    episode = Episode(row=row)
    episode.messages = env.reset(episode)
    prompt = fmt.first_ids(episode.messages)
    ids: list[int] = []
    model_mask: list[bool] = []
    logps: list[float] = []
    for turn in range(max_turns):
        reply: list[int] = []
        for _ in range(max_turn_tokens):
            logits = model(torch.tensor([prompt + ids])).logits[0, -1].float()
            logp = torch.log_softmax(logits, -1)
            token = int(logp.argmax())
            ids.append(token)
            reply.append(token)
            model_mask.append(True)
            logps.append(float(logp[token]))
            if token in eos_ids:
                break
        ended = reply[-1] in eos_ids
        episode.replies.append(tokenizer.decode(reply[:-1] if ended else reply, skip_special_tokens=True))
        answer = env.step(episode, episode.replies[-1])
        if answer.done or turn + 1 == max_turns:
            break
        extra = fmt.answer_ids(answer.messages, sampled_eos_id=reply[-1] if ended else None)
        ids += extra
        model_mask += [False] * len(extra)
        logps += [0.0] * len(extra)
    return prompt, ids, model_mask, logps
