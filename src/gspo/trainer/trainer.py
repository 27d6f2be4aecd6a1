"""``GSPOTrainer``: the RL loop — sample, reward, advantages, minibatched off-policy updates.

One training *step* is:

1. take ``prompts_per_step`` prompts (deterministic, resumable order) and sample ``group_size``
   completions each with the KV-cache sampler (the same code ``gspo eval`` uses); under dynamic
   sampling, more rounds until the groups are informative (:mod:`gspo.trainer.rollout`);
2. score them with the reward functions (plus the soft overlong penalty when on) and compute the
   advantages with the configured estimator (eq. 6 by default);
3. π_old log-probs: recomputed by a no-grad trainer forward, or the sampler's own (section 5.4), or —
   only when provably on-policy (one minibatch, one epoch) — skipped, since then π_old ≡ π_θ. The
   recomputation skips the rows of epoch 0's first minibatch: no optimizer step has been taken yet
   when that minibatch runs, so its own forward gives their π_old exactly (a quarter of the pass saved
   with 4 minibatches);
4. for each epoch, shuffle the rollout into ``num_minibatches`` minibatches (the paper: 4, which is what
   makes later minibatches off-policy) and take one optimizer step per minibatch. Each minibatch is
   processed in micro-batches with gradient accumulation; the loss is divided by the number of
   sequences (or tokens, for token-mean) in the whole optimizer step — across micro-batches and
   processes — so results do not depend on the micro-batch size.

Guards: an optimizer step whose loss or gradient norm is not finite is skipped (gradients dropped,
parameters and optimizer state untouched), counted and logged.

The algorithm is an entry of the algorithm table (:mod:`gspo.algorithms`): its loss, its advantage
estimator, the loss's hyper-parameters by name and what it needs (π_old, a reference). The trainer
provides what the entry asks for and never branches on the algorithm's name. Step data is typed
(:mod:`gspo.trainer.step_data`). General switches (sampler copy, mismatch correction, adaptive clipping):
:mod:`gspo.trainer.switches`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import torch

from gspo.config import ConfigError, GSPOConfig
from gspo.losses import ADVANTAGE_ESTIMATORS, call_with_declared, policy_loss
from gspo.models.device import model_device
from gspo.models.introspect import enable_activation_checkpointing
from gspo.models.lora import is_peft_model, reference_context
from gspo.sampling import special_token_ids
from gspo.sampling.scoring import completion_logprobs, sampler_matches_trainer
from gspo.trainer.critic import Critic
from gspo.trainer.data_order import PromptOrder
from gspo.trainer.distributed import Dist
from gspo.trainer.metrics import rollout_metrics
from gspo.trainer.optim import build_optimizer, build_scheduler, fit_prompt_budget
from gspo.trainer.pairs import PairUpdate
from gspo.trainer.progress import library_bars_off
from gspo.trainer.reward_runner import RewardRunner
from gspo.trainer.rollout import Round, sample_round
from gspo.trainer.rollout import collect as collect_rollout
from gspo.trainer.step_data import OldLogProbs, RolloutBatch, StepStats, UpdateInputs, checked_rows
from gspo.trainer.switches import (
    adapt_clip,
    apply_mismatch_correction,
    apply_reward_kl,
    loss_mask,
    refresh_sampler_copy,
    sampler_copy,
    scaled_clip,
    shaping_metrics,
)

logger = logging.getLogger("gspo")

Tensor: TypeAlias = torch.Tensor


class GSPOTrainer:
    """Train ``model`` with an algorithm of the table (GSPO by default) on ``train_data`` rows.

    Args:
        model: any Hugging Face causal LM (optionally a PEFT model).
        tokenizer: its tokenizer (left padding is used for prompts).
        reward_funcs: callables ``f(prompts, completions, **columns) -> list[float | None]``.
        train_data: rows, each a dict with a ``prompt`` (string or chat messages) and the columns
            the reward functions need.
        config: a ``GSPOConfig`` (validated here).
        eval_task / eval_data: a ``gspo.tasks.Task`` and its held-out rows for evaluation (optional).
        reward_weights: one weight per reward function (default: config.reward_weights or all 1).
    """

    #: Fast path: the π_old recomputation skips the rows of epoch 0's first minibatch (see OldLogProbs).
    reuse_first_minibatch = True

    def __init__(
        self,
        model,
        tokenizer,
        reward_funcs: Sequence[Callable[..., Sequence[Any]]],
        train_data: Sequence[dict[str, Any]],
        config: GSPOConfig,
        *,
        eval_task=None,
        eval_data: Sequence[dict[str, Any]] | None = None,
        reward_weights: Sequence[float] | None = None,
        accelerator=None,
    ):
        self.config = config.validate()
        self.dist = Dist(accelerator)
        if config.prompts_per_step % self.dist.world:
            raise ConfigError(
                "prompts_per_step",
                f"must be divisible by the number of processes ({self.dist.world}), got {config.prompts_per_step}",
            )
        self.model, self.tokenizer = model, tokenizer
        self.train_data = checked_rows(train_data)
        self.eval_task, self.eval_data = eval_task, list(eval_data or [])
        self.rewards = RewardRunner(reward_funcs, reward_weights or config.reward_weights or None, config.reward_errors)
        self.algorithm = config.algorithm_spec
        self.loss_hparams = config.loss_hparams
        self.advantage_fn = ADVANTAGE_ESTIMATORS.get_fn(config.setting("advantage"))
        self.aggregation = config.setting("aggregation")
        self.clip_scale = 1.0  # adaptive clipping's factor on ε (1 when off)
        self._seconds = {"sample": 0.0, "reward": 0.0}  # this step's sampling and reward time (rollout.py)
        self.uses_reference = (
            "reference" in self.algorithm.needs or config.kl_coef > 0 or config.reward_kl_coef > 0 or config.log_kl
        )
        self.device = model_device(model)
        self.eos_ids, self.pad_id = special_token_ids(tokenizer, model)
        self.max_prompt_tokens = fit_prompt_budget(config, model)
        # π_old from the sampler (section 5.4) when asked, or under 'auto' when it is the same numbers
        # (never under a mismatch correction or a sampler copy: then π_old must be the trainer's own)
        self.measures_mismatch = config.mismatch_correction != "none" or config.sampler_dtype != "same"
        self.old_logp_from_sampler = not self.measures_mismatch and (
            config.old_logp_source == "sampler" or (config.old_logp_source == "auto" and sampler_matches_trainer(model))
        )
        if config.old_logp_source == "auto":
            logger.info(
                "old_logp_source=auto: π_old from the %s",
                "sampler's log-probs"
                if self.old_logp_from_sampler
                else "trainer (recomputed; the model is half precision or has dropout)",
            )
        self.sample_gen = torch.Generator(device=self.device).manual_seed(config.seed)
        self.shuffle_gen = torch.Generator().manual_seed(config.seed + 1)
        self.order = PromptOrder(len(self.train_data), config.seed)
        self._build_optimization(accelerator)
        # What the entry needs beyond log-probs: a value model (critic.py), best/worst pairs (pairs.py).
        self.critic = Critic(self) if "critic" in self.algorithm.needs else None
        self.pairs = PairUpdate(self) if "pairs" in self.algorithm.needs else None
        self.sampler_copy = sampler_copy(self.dist.unwrap(model), config.sampler_dtype)
        # KL reference: the adapter-disabled model for LoRA (no second copy), else a frozen copy.
        self.ref_model = None
        if self.uses_reference and not is_peft_model(model):
            self.ref_model = copy.deepcopy(model).eval().requires_grad_(False)
        if config.gradient_checkpointing and enable_activation_checkpointing(model):
            if hasattr(model, "enable_input_require_grads"):
                model.enable_input_require_grads()
        self.step = 0
        self.optimizer_steps = 0
        self.skipped_steps = 0
        self.best_score: float | None = None
        self.eval_before: float | None = None
        self.output_dir = Path(config.output_dir)

    def _build_optimization(self, accelerator) -> None:
        """Optimizer, the accelerate wrapping (DDP / FSDP / DeepSpeed) and the learning-rate schedule."""
        cfg = self.config
        self.optimizer = build_optimizer(
            self.model.parameters(),
            kind=cfg.optimizer,
            lr=cfg.learning_rate,
            weight_decay=cfg.weight_decay,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            eps=cfg.adam_eps,
            device=self.device,
        )
        if accelerator is not None:  # wraps the model for DDP / FSDP / DeepSpeed; the schedule stays ours
            self.model, self.optimizer = accelerator.prepare(self.model, self.optimizer)
        self.scheduler = build_scheduler(
            self.optimizer,
            schedule=cfg.lr_schedule,
            warmup_steps=cfg.warmup_steps,
            total_steps=cfg.max_steps * cfg.num_minibatches * cfg.num_epochs,
        )

    # ------------------------------------------------------------------ rollout
    @contextlib.contextmanager
    def _sampling_model(self):
        """The plain model for generation (no DDP hooks); FSDP gathers full parameters meanwhile."""
        if self.dist.sharded_params and "FSDP" in str(self.dist.accelerator.distributed_type):
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            with FSDP.summon_full_params(self.model, writeback=False, recurse=True):
                yield self.dist.unwrap(self.model)
        else:
            yield self.dist.unwrap(self.model)

    def _sample_round(self) -> Round:
        """One sampling round: :func:`gspo.trainer.rollout.sample_round`."""
        return sample_round(self)

    def _rollout(self) -> RolloutBatch:
        """This step's rollout (one round, or several under dynamic sampling), rewards and advantages."""
        cfg = self.config
        self._seconds = {"sample": 0.0, "reward": 0.0}
        refresh_sampler_copy(self.sampler_copy, self.dist.unwrap(self.model))
        got, metrics = collect_rollout(self)
        rewards, sampled = got.rewards, got.sampled
        # All-gather the (small) reward lists: advantages and logged means then see the global batch.
        rewards.total = self.dist.gather_objects(rewards.total)
        rewards.per_function = {k: self.dist.gather_objects(v) for k, v in rewards.per_function.items()}
        rewards_B = torch.tensor(rewards.total, dtype=torch.float32)
        lengths_B = torch.tensor(self.dist.gather_objects(sampled.completion_lengths_B.tolist()))
        B_local = sampled.completion_ids_BT.shape[0]
        local = slice(self.dist.rank * B_local, (self.dist.rank + 1) * B_local)
        adv_B = call_with_declared(
            self.advantage_fn,
            rewards_B,
            cfg.group_size,
            scale=cfg.setting("advantage_scale"),
            lengths_B=lengths_B,
        )[local].to(self.device)
        loss_mask_BT = loss_mask(cfg, sampled, sampled.completion_mask_BT)
        metrics.update(shaping_metrics(cfg, got.penalty, sampled, self.dist))
        return RolloutBatch(
            rows=got.rows,
            sampled=sampled,
            completions=got.completions,
            loss_mask_BT=loss_mask_BT,
            rewards=rewards,
            rewards_B=rewards_B,
            adv_B=adv_B,
            seconds=dict(self._seconds),
            metrics=metrics,
        )

    @contextlib.contextmanager
    def _rollout_model(self):
        """The model that samples rollouts: the sampler copy (sampler_dtype) or the trained model."""
        if self.sampler_copy is not None:
            yield self.sampler_copy
        else:
            with self._sampling_model() as model:
                yield model

    def _micro_slices(self, idx: Tensor):
        for start in range(0, idx.numel(), self.config.micro_batch_size):
            yield idx[start : start + self.config.micro_batch_size]

    def _score(self, model, batch: RolloutBatch, idx: Tensor, with_entropy: bool = False):
        """Log-probs (and entropies) of rows ``idx``, trimmed of all-padding columns; their loss mask."""
        roll = batch.sampled
        p_mask, c_mask = roll.prompt_mask_BP[idx], roll.completion_mask_BT[idx]
        first = int(p_mask.any(0).long().argmax())  # left padding of prompts
        last = int(c_mask.any(0).long().cumsum(0).argmax()) + 1  # right padding of completions
        logp, ent = completion_logprobs(
            model,
            roll.prompt_ids_BP[idx][:, first:],
            p_mask[:, first:],
            roll.completion_ids_BT[idx][:, :last],
            c_mask[:, :last],
            temperature=self.config.temperature,
            with_entropy=with_entropy,
            force_plain=self.dist.sharded_params,
            share_prompts=self.config.share_prompts,
            pack=self.config.pack_sequences,
        )
        return logp, ent, batch.loss_mask_BT[idx, :last], last

    @torch.no_grad()
    def _logprobs_no_grad(self, model, batch: RolloutBatch, rows: Tensor | None = None) -> Tensor:
        """``[B, T]`` log-probs of the rollout's completions (only ``rows``, the others stay 0)."""
        B, T = batch.sampled.completion_ids_BT.shape
        out = torch.zeros(B, T, device=self.device, dtype=torch.float32)
        for idx in self._micro_slices(torch.arange(B, device=self.device) if rows is None else rows):
            logp, _, _, last = self._score(model, batch, idx)
            out = out.to(logp.dtype)
            out[idx, :last] = logp
        return out

    def _epoch_order(self, B: int) -> Tensor:
        """One epoch's order of the B global rollout rows; minibatches are consecutive slices of it."""
        if self.config.minibatch_grouping == "group":  # whole groups, in random order
            G = self.config.group_size
            groups = torch.randperm(B // G, generator=self.shuffle_gen)
            return (groups[:, None] * G + torch.arange(G)).reshape(-1).to(self.device)
        return torch.randperm(B, generator=self.shuffle_gen).to(self.device)

    def _local_rows(self, global_idx: Tensor, B_local: int) -> Tensor:
        """This process's rows (local indices) among the global rollout rows ``global_idx``."""
        offset = self.dist.rank * B_local
        return global_idx[(global_idx >= offset) & (global_idx < offset + B_local)] - offset

    # ------------------------------------------------------------------ what the loss needs
    def _old_logprobs(self, batch: RolloutBatch, perms: list[Tensor]) -> OldLogProbs:
        """π_old for this rollout (see OldLogProbs): none needed, the sampler's, or recomputed."""
        if "old_logp" not in self.algorithm.needs:
            return OldLogProbs(None)
        if self.measures_mismatch:  # π_old by the trainer for every row, compared with the sampler's
            self.model.train()
            old = OldLogProbs(self._logprobs_no_grad(self.model, batch))
            apply_mismatch_correction(self.config, batch, old, self.dist)
            return old
        if self.config.on_policy:
            return OldLogProbs(None)  # π_old ≡ π_θ at the single update: no extra forward needed
        if self.old_logp_from_sampler:
            return OldLogProbs(batch.sampler_logp_BT)
        self.model.train()
        if not self.reuse_first_minibatch:
            return OldLogProbs(self._logprobs_no_grad(self.model, batch))
        # Exact and cheaper: the first minibatch's rows get π_old from the update's own forward
        # (π_θ has not moved yet), so only the other rows are recomputed here.
        first_rows = self._local_rows(perms[0][: self.config.minibatch_size], batch.size)
        keep = torch.ones(batch.size, dtype=torch.bool, device=self.device)
        keep[first_rows] = False
        return OldLogProbs(self._logprobs_no_grad(self.model, batch, rows=keep.nonzero().squeeze(1)), fill_first=True)

    def _reference_logprobs(self, batch: RolloutBatch) -> Tensor | None:
        if not self.uses_reference:
            return None
        rows = self.pairs.paired_rows(batch) if self.pairs is not None else None  # a pair loss reads its pairs only
        if self.ref_model is not None:
            return self._logprobs_no_grad(self.ref_model, batch, rows)
        with reference_context(self.model):
            return self._logprobs_no_grad(self.model, batch, rows)

    # ------------------------------------------------------------------ update
    def _update(self, inputs: UpdateInputs) -> dict[str, float]:
        """The optimizer steps of one rollout: one per minibatch, ``num_minibatches`` per epoch."""
        if self.pairs is not None:  # a pair loss: its own minibatches of pairs
            return self.pairs.update(inputs)
        cfg = self.config
        B_local = inputs.batch.size
        stats = StepStats(B_local * self.dist.world, cfg.num_epochs, self.device)
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        M = cfg.minibatch_size
        for epoch, perm in enumerate(inputs.perms):
            for mb in range(cfg.num_minibatches):
                inputs.old.begin_minibatch(epoch, mb)
                mb_idx = self._local_rows(perm[mb * M : (mb + 1) * M], B_local)
                self._minibatch_step(inputs, mb_idx, params, stats)
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped_steps += stats.skipped
        return stats.reduce(self.dist)

    def _normalizer(self, batch: RolloutBatch, mb_idx: Tensor) -> Tensor | float:
        """The loss denominator: sequences (or tokens, for token-mean) of the whole minibatch, all processes."""
        if self.aggregation == "token-mean":
            local_tokens = batch.loss_mask_BT[mb_idx].sum().float()
            normalizer = self.dist.all_reduce(local_tokens).clamp(min=1)
        else:
            normalizer = float(self.config.minibatch_size)
        # DDP averages gradients over processes: dividing the normaliser by the world size
        # makes the synchronised gradient the global-batch one.
        return normalizer / self.dist.world

    def _minibatch_step(self, inputs: UpdateInputs, mb_idx: Tensor, params: list, stats: StepStats) -> None:
        """Accumulate the minibatch's gradient over micro-batches, then one (guarded) optimizer step."""
        normalizer = self._normalizer(inputs.batch, mb_idx)
        self.optimizer.zero_grad(set_to_none=True)
        mb_loss = torch.zeros((), device=self.device)
        micro = list(self._micro_slices(mb_idx)) or [None]
        for j, idx in enumerate(micro):
            with self.dist.no_sync(self.model, active=j < len(micro) - 1):
                if idx is None:  # no row of this minibatch here: join the all-reduce with zero
                    logp, _, _, _ = self._score(self.model, inputs.batch, torch.arange(1, device=self.device))
                    (logp.sum() * 0.0).backward()
                    continue
                mb_loss = mb_loss + self._micro_step(inputs, idx, normalizer, stats)
        mb_loss = self.dist.all_reduce(mb_loss)
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm > 0 else float("inf")
        grad_norm = self.dist.clip_grad_norm(self.model, params, max_norm)
        skipped = not (torch.isfinite(grad_norm) and torch.isfinite(mb_loss))
        if skipped:
            self.optimizer.zero_grad(set_to_none=True)
            logger.warning("step %d: non-finite loss or gradient; optimizer step skipped", self.step + 1)
        else:
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer_steps += 1
        stats.add_update(mb_loss, grad_norm, skipped)
        if self.critic is not None:  # the critic's own step on the same rows
            self.critic.minibatch_step(inputs.batch, mb_idx)

    def _micro_step(self, inputs: UpdateInputs, idx: Tensor, normalizer, stats: StepStats) -> Tensor:
        """Forward + backward of one micro-batch; accumulates its weighted statistics."""
        cfg = self.config
        logp, ent, mask, last = self._score(self.model, inputs.batch, idx, with_entropy=True)
        old = inputs.old.take(idx, last, logp)
        ref = None if inputs.ref_logp_BT is None else inputs.ref_logp_BT[idx, :last]
        weight = None if inputs.old.token_weight_BT is None else inputs.old.token_weight_BT[idx, :last]
        loss, step_stats = policy_loss(
            logp,
            old,
            inputs.batch.advantages(idx, last),
            mask,
            level=self.algorithm.loss,
            aggregation=self.aggregation,
            normalizer=normalizer,
            ref_logp=ref,
            kl_coef=cfg.kl_coef,
            max_log_ratio=cfg.max_log_ratio,
            hparams=scaled_clip(self.loss_hparams, self.clip_scale),
            token_weight_BT=weight,
            max_length=cfg.max_new_tokens,
        )
        loss.backward()
        stats.add_micro(step_stats, ent, mask, idx.numel())
        # the normaliser was divided by the world size (for DDP's gradient mean): undo it for the value, whose
        # sum over processes (all_reduce in the caller) is then the global-batch loss
        return loss.detach() / self.dist.world

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, Any]:
        cfg = self.config
        t0 = time.perf_counter()
        batch = self._rollout()
        t1 = time.perf_counter()
        # Minibatch orders of every epoch, drawn before the old-log-prob pass (which skips the rows
        # the first minibatch will score itself).
        perms = [self._epoch_order(batch.size * self.dist.world) for _ in range(cfg.num_epochs)]
        old = self._old_logprobs(batch, perms)
        ref_logp = self._reference_logprobs(batch)
        if self.critic is not None:  # values, GAE and whitening replace the rollout's advantages
            self.critic.prepare(batch, ref_logp)
        apply_reward_kl(self, batch, ref_logp)  # REINFORCE++'s KL in the reward (no critic)
        t2 = time.perf_counter()
        stats = self._update(UpdateInputs(batch, old, ref_logp, perms))
        t3 = time.perf_counter()
        self.step += 1
        clip_metrics = adapt_clip(self, stats.get("clip_frac", 0.0))
        metrics: dict[str, Any] = {
            **rollout_metrics(batch.sampled, batch.rewards, batch.rewards_B, batch.adv_B),
            **batch.metrics,
            **stats,
            **clip_metrics,
            **(self.critic.metrics() if self.critic is not None else {}),
            "lr": self.scheduler.get_last_lr()[0],
            "optimizer_steps": self.optimizer_steps,
            "skipped_steps_total": self.skipped_steps,
            "tokens_per_s": int(batch.sampled.completion_mask_BT.sum()) / max(t3 - t0, 1e-9),
            "time/sample": batch.seconds["sample"],
            "time/reward": batch.seconds["reward"],
            "time/old_logp": t2 - t1,
            "time/update": t3 - t2,
            "time/step": t3 - t0,
        }
        if self.pairs is None:  # a pair loss clips nothing: no clip fraction (a dash in reports)
            metrics["clip_frac"] = metrics.get("clip_frac", 0.0)
        return metrics

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> float | None:
        """Greedy accuracy on the held-out rows (main process; the others wait and get the same number)."""
        if self.eval_task is None or not self.eval_data or self.config.eval_limit == 0:
            return None
        from gspo.evaluation import evaluate_task

        accuracy = torch.zeros((), dtype=torch.float64, device=self.device)
        if self.dist.is_main:
            rows = self.eval_data[: self.config.eval_limit]
            with self._sampling_model() as model:
                result = evaluate_task(
                    model,
                    self.tokenizer,
                    self.eval_task,
                    rows,
                    samples=1,
                    greedy=True,
                    max_new_tokens=self.config.eval_max_new_tokens or self.config.max_new_tokens,
                    batch_size=max(self.config.micro_batch_size, 64),
                    seed=self.config.seed,
                )
            accuracy += float(result.accuracy)
        self.model.train()
        return float(self.dist.all_reduce(accuracy))

    # ------------------------------------------------------------------ checkpoints
    def save(self, target: Path) -> Path:
        """Write a checkpoint from the main process; every process waits until it is complete."""
        from gspo.trainer.loop import save_checkpoint

        return save_checkpoint(self, target)

    def load(self, path: Path) -> None:
        """Restore weights and trainer state from a checkpoint folder (verified against its manifest)."""
        from gspo.trainer.loop import load_checkpoint

        load_checkpoint(self, path)

    # ------------------------------------------------------------------ the run
    def train(self) -> dict[str, Any]:
        """The whole run (resume, evaluation, logging, checkpoints): :func:`gspo.trainer.loop.run`."""
        from gspo.trainer.loop import run

        with library_bars_off():
            return run(self)
