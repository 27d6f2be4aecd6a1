"""``EpisodeTrainer``: the GSPO trainer over multi-turn episodes with an environment.

Everything after the rollout is the single-turn trainer's (:class:`gspo.trainer.trainer.GSPOTrainer`):
minibatches, π_old, the algorithm table's losses, checkpoints and resume. What changes is the rollout:

- a step plays ``group_size`` episodes for each of its ``prompts_per_step`` rows
  (:func:`gspo.sampling.episodes.run_episodes`; more rounds under dynamic sampling, whose selection and
  concatenation of rounds carry the episodes along: ``EpisodeRound``); an episode's "completion" is all its tokens after
  the first prompt, and the **loss mask holds the model's tokens only**: environment tokens are in the
  forward (as context) and out of the loss, their log-probs never enter a ratio, and a sequence ratio
  is normalised by the episode's model-token count (GSPO's |y_i| over the whole episode);
- the reward is the episode's return (final reward plus per-turn rewards), turned into advantages by
  the configured estimator; with per-turn rewards and a loss that takes per-token advantages
  (``turn_advantages``), each turn's tokens get the advantage of its reward-to-go
  (:mod:`gspo.losses.turns`); GSPO's sequence loss keeps one advantage per episode;
- metrics: turns, tool calls and errors, tokens per model turn, how episodes ended;
- evaluation plays one greedy episode per held-out row and counts ``env.solved``.

Departure from the paper: GSPO defines s_i over one response; here the "response" is the model's part
of a whole episode (its tokens across turns), as the paper suggests for multi-turn RL with GSPO-token.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch

from gspo.algorithms import PER_TOKEN_ADVANTAGE_LOSSES
from gspo.environments.base import Environment
from gspo.environments.formatting import TurnFormat
from gspo.environments.guard import GuardedEnvironment
from gspo.evaluation.episodes import summarize_episodes
from gspo.losses import call_with_declared, soft_overlong_penalty
from gspo.losses.turns import spread_turn_advantages, turn_advantages
from gspo.sampling.episodes import EpisodeBatch, EpisodeLimits, run_episodes
from gspo.trainer.reward_runner import RewardOutput
from gspo.trainer.rollout import Round
from gspo.trainer.rollout import collect as collect_rollout
from gspo.trainer.step_data import RolloutBatch
from gspo.trainer.trainer import GSPOTrainer

logger = logging.getLogger("gspo")


@dataclass
class EpisodeRound(Round):
    """A round of episodes: the usual fields plus the episodes and their token layout (kept through
    dynamic sampling's selection and concatenation of rounds)."""

    episodes: EpisodeBatch | None = None

    def narrowed(self, out: Round, rows: list[int]) -> Round:
        assert self.episodes is not None
        idx = torch.tensor(rows, dtype=torch.long, device=self.episodes.model_mask_BT.device)
        played = EpisodeBatch(
            out.sampled, self.episodes.model_mask_BT[idx], self.episodes.turn_BT[idx],
            [self.episodes.episodes[i] for i in rows],
        )  # fmt: skip
        return EpisodeRound(out.rows, out.sampled, out.completions, out.rewards, out.penalty, played)

    def joined(self, out: Round, parts: list[Round]) -> Round:
        T = out.sampled.completion_ids_BT.shape[1]
        batches = [p.episodes for p in parts if isinstance(p, EpisodeRound) and p.episodes is not None]

        def pad(x: torch.Tensor, value) -> torch.Tensor:
            return torch.nn.functional.pad(x, (0, T - x.shape[1]), value=value)

        played = EpisodeBatch(
            out.sampled,
            torch.cat([pad(b.model_mask_BT, False) for b in batches]),
            torch.cat([pad(b.turn_BT, -1) for b in batches]),
            [e for b in batches for e in b.episodes],
        )
        return EpisodeRound(out.rows, out.sampled, out.completions, out.rewards, out.penalty, played)


def _environment_reward(prompts, completions, **_):  # stands in for the task reward (never called)
    return [0.0] * len(completions)


class EpisodeTrainer(GSPOTrainer):
    """Train ``model`` on episodes of ``environment`` started from ``train_data`` rows (see module docstring)."""

    def __init__(
        self,
        model,
        tokenizer,
        environment: Environment,
        train_data,
        config,
        *,
        eval_data=None,
        chat: bool = True,
        accelerator=None,
    ):
        super().__init__(model, tokenizer, [_environment_reward], train_data, config, accelerator=accelerator)
        self.eval_data = list(eval_data or [])
        self.env = GuardedEnvironment(
            environment, timeout_s=config.environment_timeout_s or None, on_error=config.environment_errors
        )
        self.fmt = TurnFormat(tokenizer, chat=chat)
        self.limits = EpisodeLimits(
            max_turns=config.max_turns,
            max_turn_tokens=config.max_turn_tokens or config.max_new_tokens,
            max_episode_tokens=config.max_new_tokens,
        )
        loss = self.algorithm.loss
        self.per_token_loss = isinstance(loss, str) and loss in PER_TOKEN_ADVANTAGE_LOSSES
        logger.info("environment %s; turn format %s; limits %s", self.env.name, self.fmt.describe(), self.limits)

    # ------------------------------------------------------------------ rollout
    def play(self, model, rows, *, group_size: int, greedy: bool = False) -> EpisodeBatch:
        """Episodes of ``rows`` (``group_size`` each) with ``model`` under this run's sampling settings."""
        cfg = self.config
        return run_episodes(
            model,
            self.tokenizer,
            self.env,
            rows,
            group_size=group_size,
            limits=self.limits,
            fmt=self.fmt,
            eos_token_ids=self.eos_ids,
            pad_token_id=self.pad_id,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            top_k=cfg.top_k,
            greedy=greedy,
            generator=self.sample_gen,
            max_prompt_tokens=self.max_prompt_tokens,
            device=self.device,
        )

    def _sample_round(self) -> Round:
        """One round: this process's share of the step's rows, ``group_size`` episodes each, and their returns."""
        cfg = self.config
        t0 = time.perf_counter()
        share = cfg.prompts_per_step // self.dist.world
        global_idx = self.order.take(cfg.prompts_per_step)
        rows = [self.train_data[i] for i in global_idx[self.dist.rank * share : (self.dist.rank + 1) * share]]
        with self._rollout_model() as sampler_model:
            played = self.play(sampler_model, rows, group_size=cfg.group_size)
        self._seconds["sample"] += time.perf_counter() - t0
        eps = played.episodes
        # DAPO's soft overlong punishment, on the episode's tokens after its prompt (max_new_tokens' budget)
        penalty = soft_overlong_penalty(
            played.rollout.completion_lengths_B.cpu(),
            cfg.max_new_tokens,
            cfg.overlong_buffer_tokens,
            cfg.overlong_penalty_factor,
        ).tolist()
        rewards = RewardOutput(
            total=[r + p for r, p in zip(played.returns_B, penalty)],
            per_function={
                "environment": [e.final_reward for e in eps],
                "turns": [sum(e.turn_rewards) for e in eps],
            },
            failures={"environment": self.env.take_errors()},
        )
        return EpisodeRound(rows, played.rollout, [e.last_reply for e in eps], rewards, penalty, played)

    def _rollout(self) -> RolloutBatch:
        """This step's episodes, their returns and advantages (per episode, or per turn), the loss mask."""
        cfg = self.config
        self._seconds = {"sample": 0.0, "reward": 0.0}
        from gspo.trainer.switches import loss_mask, refresh_sampler_copy, shaping_metrics

        refresh_sampler_copy(self.sampler_copy, self.dist.unwrap(self.model))
        got, sampling_metrics = collect_rollout(self)  # one round, or several under dynamic sampling
        assert isinstance(got, EpisodeRound) and got.episodes is not None
        played, sampled = got.episodes, got.sampled
        rewards = got.rewards
        rewards.total = self.dist.gather_objects(rewards.total)
        rewards.per_function = {k: self.dist.gather_objects(v) for k, v in rewards.per_function.items()}
        returns_B = torch.tensor(rewards.total, dtype=torch.float32)
        model_tokens_B = played.model_mask_BT.sum(-1).cpu()
        lengths_B = torch.tensor(self.dist.gather_objects(model_tokens_B.tolist()))
        B_local = sampled.completion_ids_BT.shape[0]
        local = slice(self.dist.rank * B_local, (self.dist.rank + 1) * B_local)
        adv_B = call_with_declared(
            self.advantage_fn, returns_B, cfg.group_size, scale=cfg.setting("advantage_scale"), lengths_B=lengths_B
        )
        adv = self._turn_advantages(adv_B, returns_B, played, local)
        loss_mask_BT = loss_mask(cfg, sampled, played.model_mask_BT & sampled.completion_mask_BT.bool())
        return RolloutBatch(
            rows=got.rows,
            sampled=sampled,
            completions=got.completions,
            loss_mask_BT=loss_mask_BT,
            rewards=rewards,
            rewards_B=returns_B,
            adv_B=adv,
            seconds=dict(self._seconds),
            metrics={
                **episode_metrics(played),
                **sampling_metrics,
                **shaping_metrics(cfg, got.penalty, sampled, self.dist),
            },
        )

    def _turn_advantages(self, adv_B: torch.Tensor, returns_B: torch.Tensor, played: EpisodeBatch, local: slice):
        """``[B]`` per-episode advantages, or ``[B, T]`` per-turn ones (see ``turn_advantages``)."""
        use = self.config.turn_advantages
        has_turn_rewards = any(e.has_turn_rewards for e in played.episodes)
        if use is None:  # per-turn advantages are the group estimator's (validation refuses the others)
            use = self.per_token_loss and self.config.setting("advantage") == "group"
        local_adv_B = adv_B[local].to(self.device)
        if not (use and has_turn_rewards):
            return local_adv_B
        K = max(len(e.turn_rewards) for e in played.episodes)
        turn_rewards_BK = torch.zeros(len(played.episodes), K)
        for b, e in enumerate(played.episodes):
            turn_rewards_BK[b, : len(e.turn_rewards)] = torch.tensor(e.turn_rewards)
        scale = self.config.setting("advantage_scale")
        adv_BK = turn_advantages(
            local_adv_B.cpu(), returns_B[local], turn_rewards_BK, self.config.group_size, scale=scale
        )
        return spread_turn_advantages(adv_BK.to(self.device), played.turn_BT)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> float | None:
        """Share of held-out rows whose greedy episode the environment counts as solved (main process)."""
        if not self.eval_data or self.config.eval_limit == 0:
            return None
        from gspo.evaluation.episodes import evaluate_environment

        accuracy = torch.zeros((), dtype=torch.float64, device=self.device)
        if self.dist.is_main:
            with self._sampling_model() as model:
                result = evaluate_environment(
                    model, self.tokenizer, self.env, self.eval_data[: self.config.eval_limit], limits=self.limits,
                    fmt=self.fmt, eos_token_ids=self.eos_ids, pad_token_id=self.pad_id,
                    batch_size=max(self.config.micro_batch_size, 64), seed=self.config.seed,
                    max_prompt_tokens=self.max_prompt_tokens,
                )  # fmt: skip
            eval_errors = self.env.take_errors()  # the evaluation's own: not the next training step's failures
            if eval_errors:
                logger.warning("eval: %d environment failure(s) ended episodes (environment_errors=end)", eval_errors)
            logger.info("eval: %s", ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items()))
            accuracy += result.solved
        self.model.train()
        return float(self.dist.all_reduce(accuracy))


def episode_metrics(played: EpisodeBatch) -> dict[str, Any]:
    """This rollout's episode metrics, plus the model / environment token split."""
    out: dict[str, Any] = summarize_episodes(played.episodes)
    real = played.rollout.completion_mask_BT.bool()
    out["episodes/model_tokens_mean"] = float(played.model_mask_BT.sum(-1).float().mean())
    out["episodes/env_tokens_mean"] = float((real & ~played.model_mask_BT).sum(-1).float().mean())
    return out


def build_episode_trainer(config, accelerator=None) -> EpisodeTrainer:
    """``gspo train --environment ...``: the environment (and its rows, or the task's), then the model."""
    from gspo.config import ConfigError
    from gspo.environments import load_environment
    from gspo.trainer.build import load_policy, load_rows, resolve_device, wants_chat
    from gspo.trainer.distributed import launched_distributed

    if launched_distributed():
        raise ConfigError("environment", "episodes run in one process for now; drop --num-processes")
    try:
        env = load_environment(config.environment, config.environment_options)
    except ValueError as exc:
        raise ConfigError("environment_options" if config.environment_options else "environment", str(exc)) from None
    train_rows, eval_rows, task = env_rows(env, config)
    device = resolve_device(config.device) if accelerator is None else accelerator.device
    model, tokenizer = load_policy(config, device)
    chat = wants_chat(config, tokenizer)
    if task is not None:
        env.task = task
        train_rows = load_rows(task, config, config.train_split, chat=chat)
        eval_rows = (
            load_rows(task, config, config.eval_split, chat=chat, limit=config.eval_limit) if config.eval_limit else []
        )
    logger.info(
        "model %s on %s; environment %s: %d train / %d eval rows; algorithm %s",
        config.model, device, env.name, len(train_rows), len(eval_rows), config.algorithm,
    )  # fmt: skip
    return EpisodeTrainer(
        model, tokenizer, env, train_rows, config, eval_data=eval_rows, chat=chat, accelerator=accelerator
    )


def env_rows(env, config) -> tuple[list, list, Any]:
    """The environment's own rows (train, eval) and no task, or ([], [], the configured task)."""
    from gspo.config import ConfigError
    from gspo.trainer.build import build_task

    own_rows = getattr(env, "rows", None)
    train = evals = None
    try:
        if own_rows is not None:
            train = own_rows(config.train_split)
            evals = own_rows(config.eval_split, config.eval_limit) if train is not None and config.eval_limit else []
    except ValueError as exc:
        raise ConfigError("train_split", str(exc)) from None
    if train is not None:
        return list(train), list(evals or []), None
    return [], [], build_task(config)
