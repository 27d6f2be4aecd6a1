"""Collecting one step's rollout: sampling rounds, DAPO's dynamic sampling and overlong shaping.

A *round* samples ``group_size`` completions for this process's share of ``prompts_per_step`` prompts
and scores them (:meth:`GSPOTrainer._sample_round`). Without dynamic sampling a step is one round.
With it (``dynamic_sampling``, any algorithm; DAPO, Yu et al. 2025, eq. 11), groups whose rewards are
all equal are set aside and more rounds are sampled until each process holds its share of informative
groups, or ``dynamic_sampling_max_rounds`` extra rounds were spent: then the step goes on with what it
has, filled up with constant groups (advantage 0), and says so in a warning and in the metrics:

- ``dynamic_sampling/rounds``: extra rounds this step (0 .. the bound);
- ``dynamic_sampling/sampled_groups``: groups sampled in all rounds, all processes;
- ``dynamic_sampling/informative_groups``: of those, groups whose rewards were not all equal;
- ``dynamic_sampling/filled_groups``: constant groups used to fill the rollout (0 when it filled up);
- ``dynamic_sampling/extra_generations``: completions sampled beyond one rollout.

Each process decides which of its own groups to keep (groups never straddle processes); the number
of rounds is agreed with one all-reduce per round, so every process samples the same number.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from gspo.losses import informative_groups, soft_overlong_penalty
from gspo.sampling import Rollout, decode_completions, encode_prompts, sample
from gspo.trainer.reward_runner import RewardOutput

logger = logging.getLogger("gspo")


@dataclass
class Round:
    """Rows, samples, completions and (local, shaped) rewards of some groups; rows group by group."""

    rows: list[dict[str, Any]]  # one per prompt
    sampled: Rollout
    completions: list[str]
    rewards: RewardOutput  # total includes the overlong penalty
    penalty: list[float] = field(default_factory=list)  # the soft overlong penalty per completion

    @property
    def rewards_B(self) -> torch.Tensor:
        return torch.tensor(self.rewards.total, dtype=torch.float32)

    def narrowed(self, out: Round, rows: list[int]) -> Round:
        """``out`` (this round's ``rows``, selected) with what a subclass carries besides (episodes)."""
        return out

    def joined(self, out: Round, parts: list[Round]) -> Round:
        """``out`` (``parts`` concatenated) with what a subclass carries besides."""
        return out


def _pick(values: Sequence[Any], rows: list[int]) -> list[Any]:
    return [values[i] for i in rows]


def select_groups(part: Round, groups: list[int], group_size: int) -> Round:
    """The sub-round holding ``groups`` (indices of prompts), in that order."""
    rows = [g * group_size + j for g in groups for j in range(group_size)]
    idx = torch.tensor(rows, dtype=torch.long, device=part.sampled.completion_ids_BT.device)
    s = part.sampled
    sampled = Rollout(
        prompt_ids_BP=s.prompt_ids_BP[idx],
        prompt_mask_BP=s.prompt_mask_BP[idx],
        completion_ids_BT=s.completion_ids_BT[idx],
        completion_mask_BT=s.completion_mask_BT[idx],
        logp_BT=s.logp_BT[idx],
        finished_B=s.finished_B[idx],
    )
    r = part.rewards
    rewards = RewardOutput(
        total=_pick(r.total, rows),
        per_function={k: _pick(v, rows) for k, v in r.per_function.items()},
        failures=dict(r.failures),
        seconds=r.seconds,
    )
    out = Round(_pick(part.rows, groups), sampled, _pick(part.completions, rows), rewards, _pick(part.penalty, rows))
    return part.narrowed(out, rows)


def _pad_to(x: torch.Tensor, width: int, value: float, left: bool) -> torch.Tensor:
    extra = width - x.shape[1]
    return F.pad(x, (extra, 0) if left else (0, extra), value=value) if extra else x


def concat_rounds(parts: list[Round], pad_id: int) -> Round:
    """One round from several: prompts left-padded and completions right-padded to common widths."""
    if len(parts) == 1:
        return parts[0]
    P = max(p.sampled.prompt_ids_BP.shape[1] for p in parts)
    T = max(p.sampled.completion_ids_BT.shape[1] for p in parts)

    def cat(name: str, width: int, value: float, left: bool) -> torch.Tensor:
        return torch.cat([_pad_to(getattr(p.sampled, name), width, value, left) for p in parts])

    sampled = Rollout(
        prompt_ids_BP=cat("prompt_ids_BP", P, pad_id, True),
        prompt_mask_BP=cat("prompt_mask_BP", P, 0, True),
        completion_ids_BT=cat("completion_ids_BT", T, pad_id, False),
        completion_mask_BT=cat("completion_mask_BT", T, 0, False),
        logp_BT=cat("logp_BT", T, 0.0, False),
        finished_B=torch.cat([p.sampled.finished_B for p in parts]),
    )
    failures: dict[str, int] = {}
    for p in parts:
        for k, v in p.rewards.failures.items():
            failures[k] = failures.get(k, 0) + v
    rewards = RewardOutput(
        total=[v for p in parts for v in p.rewards.total],
        per_function={k: [v for p in parts for v in p.rewards.per_function[k]] for k in parts[0].rewards.per_function},
        failures=failures,
        seconds=sum(p.rewards.seconds for p in parts),
    )
    out = Round(
        [r for p in parts for r in p.rows],
        sampled,
        [c for p in parts for c in p.completions],
        rewards,
        [v for p in parts for v in p.penalty],
    )
    return parts[0].joined(out, parts)


def sample_round(trainer) -> Round:
    """Sample G completions for this process's share of the next prompts_per_step prompts; score them."""
    cfg = trainer.config
    G = cfg.group_size
    t0 = time.perf_counter()
    # Every process draws the same global prompts and keeps its contiguous share (whole groups).
    share = cfg.prompts_per_step // trainer.dist.world
    global_idx = trainer.order.take(cfg.prompts_per_step)
    rows = [trainer.train_data[i] for i in global_idx[trainer.dist.rank * share : (trainer.dist.rank + 1) * share]]
    prompts = [r["prompt"] for r in rows]
    ids_BP, mask_BP = encode_prompts(trainer.tokenizer, prompts, max_prompt_tokens=trainer.max_prompt_tokens)
    with trainer._rollout_model() as sampler_model:
        # each prompt is prefilled once and its KV cache repeated G times (rows i*G .. i*G+G-1)
        sampled = sample(
            sampler_model,
            ids_BP.to(trainer.device),
            mask_BP.to(trainer.device),
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            top_k=cfg.top_k,
            eos_token_ids=trainer.eos_ids,
            pad_token_id=trainer.pad_id,
            generator=trainer.sample_gen,
            row_offset=trainer.dist.rank * share * G,
            global_rows=cfg.rollout_size,
            repeats=G,
        )
    t1 = time.perf_counter()
    completions = decode_completions(trainer.tokenizer, sampled)
    columns = {k: [r.get(k) for r in rows for _ in range(G)] for k in rows[0] if k != "prompt"}
    rewards = trainer.rewards([p for p in prompts for _ in range(G)], completions, columns)
    penalty_B = soft_overlong_penalty(
        sampled.completion_lengths_B.cpu(),
        cfg.max_new_tokens,
        cfg.overlong_buffer_tokens,
        cfg.overlong_penalty_factor,
    )
    rewards.total = [t + p for t, p in zip(rewards.total, penalty_B.tolist())]
    trainer._seconds["sample"] += t1 - t0
    trainer._seconds["reward"] += time.perf_counter() - t1
    return Round(rows, sampled, completions, rewards, penalty_B.tolist())


def collect(trainer) -> tuple[Round, dict[str, float]]:
    """This process's rollout for one step, and the dynamic-sampling metrics (empty when it is off)."""
    cfg = trainer.config
    G, share = cfg.group_size, cfg.prompts_per_step // trainer.dist.world
    part = trainer._sample_round()
    if not cfg.setting("dynamic_sampling"):
        return part, {}
    kept: list[Round] = []
    spare: list[Round] = []
    n_kept = n_informative = extra_rounds = 0
    while True:
        ok = informative_groups(part.rewards_B, G).tolist()
        good = [g for g, k in enumerate(ok) if k]
        n_informative += len(good)
        take = good[: share - n_kept]
        n_kept += len(take)
        kept.append(select_groups(part, take, G))
        spare.append(select_groups(part, [g for g, k in enumerate(ok) if not k], G))
        need = trainer.dist.all_reduce(torch.tensor(float(share - n_kept), device=trainer.device), "max")
        if float(need) == 0 or extra_rounds == cfg.dynamic_sampling_max_rounds:
            break
        extra_rounds += 1
        part = trainer._sample_round()
    short = share - n_kept
    fill = _first_groups(spare, short, G)
    out = concat_rounds([p for p in kept + fill if p.rows], trainer.pad_id)
    counts = torch.tensor(
        [share * (extra_rounds + 1), n_informative, short], dtype=torch.float64, device=trainer.device
    )
    sampled_groups, informative, filled = (float(v) for v in trainer.dist.all_reduce(counts))
    if filled:
        logger.warning(
            "step %d: dynamic sampling found %d informative groups of %d after %d extra rounds (the bound); "
            "the step goes on with %d constant groups",
            trainer.step + 1,
            informative,
            sampled_groups,
            extra_rounds,
            filled,
        )
    return out, {
        "dynamic_sampling/rounds": extra_rounds,
        "dynamic_sampling/sampled_groups": sampled_groups,
        "dynamic_sampling/informative_groups": informative,
        "dynamic_sampling/filled_groups": filled,
        "dynamic_sampling/extra_generations": extra_rounds * cfg.prompts_per_step * G,
    }


def _first_groups(parts: list[Round], count: int, group_size: int) -> list[Round]:
    """The first ``count`` groups of ``parts``, as sub-rounds."""
    out = []
    for part in parts:
        if count <= 0:
            break
        n = min(count, len(part.rows))
        out.append(select_groups(part, list(range(n)), group_size))
        count -= n
    return out
