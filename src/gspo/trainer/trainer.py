"""``GSPOTrainer``: the RL loop — sample, reward, advantages, minibatched off-policy updates.

One training *step* is:

1. take ``prompts_per_step`` prompts (deterministic, resumable order) and sample ``group_size``
   completions each with the KV-cache sampler (the same code ``gspo eval`` uses);
2. score them with the reward functions and compute group advantages (eq. 6);
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

The algorithm is chosen by name (``gspo``, ``gspo-token``, ``grpo``), mapping to a loss level in the
``gspo.losses`` registry: the trainer never branches on the algorithm.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from gspo.config import ConfigError, GSPOConfig
from gspo.losses import ALGORITHMS, group_advantages, policy_loss
from gspo.models.lora import is_peft_model, reference_context
from gspo.sampling import decode_completions, encode_prompts, sample, special_token_ids
from gspo.trainer import checkpoint as ckpt
from gspo.trainer.data_order import PromptOrder
from gspo.trainer.distributed import Dist
from gspo.trainer.metrics import MetricsLogger, rollout_metrics
from gspo.trainer.optim import build_optimizer, build_scheduler
from gspo.trainer.progress import Progress, library_bars_off
from gspo.trainer.reward_runner import RewardRunner
from gspo.trainer.scoring import completion_logprobs, sampler_matches_trainer

logger = logging.getLogger("gspo")

Tensor = torch.Tensor


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _context_length(model) -> int | None:
    """The model's context window (max_position_embeddings / n_positions / n_ctx), if it declares one."""
    config = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class GSPOTrainer:
    """Train ``model`` with GSPO (or GSPO-token / GRPO) on ``train_data`` rows.

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
            raise ConfigError("prompts_per_step", f"must be divisible by the number of processes ({self.dist.world}), got {config.prompts_per_step}")
        self.model = model
        self.tokenizer = tokenizer
        self.train_data = list(train_data)
        for i, row in enumerate(self.train_data[:1] + self.train_data[-1:]):
            if not isinstance(row, dict) or "prompt" not in row:
                raise ValueError(f"train_data: every row must be a dict with a 'prompt' key (row {i} is {type(row).__name__})")
        self.eval_task, self.eval_data = eval_task, list(eval_data or [])
        self.rewards = RewardRunner(reward_funcs, reward_weights or config.reward_weights or None, config.reward_errors)
        self.level, _, _ = ALGORITHMS[config.algorithm]
        self.clip_low, self.clip_high = config.clip_range
        self.device = _device(model)
        self.eos_ids, self.pad_id = special_token_ids(tokenizer, model)
        self.max_prompt_tokens = config.max_prompt_tokens
        context = _context_length(model)
        if context is not None:
            if config.max_new_tokens >= context:
                raise ConfigError("max_new_tokens", f"must be smaller than the model's context of {context} tokens, got {config.max_new_tokens}")
            if config.max_prompt_tokens + config.max_new_tokens > context:
                self.max_prompt_tokens = context - config.max_new_tokens
                logger.info("max_prompt_tokens lowered from %d to %d so that prompt + max_new_tokens=%d fits the model's context of %d tokens",
                               config.max_prompt_tokens, self.max_prompt_tokens, config.max_new_tokens, context)

        # π_old from the sampler (section 5.4) when asked, or under 'auto' when it is the same numbers
        self.old_logp_from_sampler = config.old_logp_source == "sampler" or (
            config.old_logp_source == "auto" and sampler_matches_trainer(model)
        )
        if config.old_logp_source == "auto":
            logger.info("old_logp_source=auto: π_old from the %s", "sampler's log-probs" if self.old_logp_from_sampler
                        else "trainer (recomputed; the model is half precision or has dropout)")
        self.sample_gen = torch.Generator(device=self.device).manual_seed(config.seed)
        self.shuffle_gen = torch.Generator().manual_seed(config.seed + 1)
        self.order = PromptOrder(len(self.train_data), config.seed)
        updates_per_step = config.num_minibatches * config.num_epochs
        self.optimizer = build_optimizer(
            model.parameters(), kind=config.optimizer, lr=config.learning_rate, weight_decay=config.weight_decay,
            betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_eps, device=self.device,
        )
        if accelerator is not None:  # wraps the model for DDP / FSDP / DeepSpeed; the schedule stays ours
            self.model, self.optimizer = accelerator.prepare(model, self.optimizer)
        self.scheduler = build_scheduler(
            self.optimizer, schedule=config.lr_schedule, warmup_steps=config.warmup_steps,
            total_steps=config.max_steps * updates_per_step,
        )
        # KL reference: the adapter-disabled model for LoRA (no second copy), else a frozen copy.
        self.ref_model = None
        if config.kl_coef > 0 and not is_peft_model(model):
            self.ref_model = copy.deepcopy(model).eval().requires_grad_(False)
        if config.gradient_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if hasattr(model, "enable_input_require_grads"):
                model.enable_input_require_grads()
        self.step = 0
        self.optimizer_steps = 0
        self.skipped_steps = 0
        self.best_score: float | None = None
        self.eval_before: float | None = None
        self.output_dir = Path(config.output_dir)

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

    def _rollout(self) -> dict[str, Any]:
        cfg = self.config
        G = cfg.group_size
        t0 = time.perf_counter()
        # Every process draws the same global prompts and keeps its contiguous share (whole groups).
        share = cfg.prompts_per_step // self.dist.world
        global_idx = self.order.take(cfg.prompts_per_step)
        rows = [self.train_data[i] for i in global_idx[self.dist.rank * share : (self.dist.rank + 1) * share]]
        prompts = [r["prompt"] for r in rows]
        ids_BP, mask_BP = encode_prompts(self.tokenizer, prompts, max_prompt_tokens=self.max_prompt_tokens)
        with self._sampling_model() as sampler_model:
            # each prompt is prefilled once and its KV cache repeated G times (rows i*G .. i*G+G-1)
            roll = sample(
                sampler_model, ids_BP.to(self.device), mask_BP.to(self.device), max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, eos_token_ids=self.eos_ids,
                pad_token_id=self.pad_id, generator=self.sample_gen, row_offset=self.dist.rank * share * G,
                global_rows=cfg.rollout_size, repeats=G,
            )
        t1 = time.perf_counter()
        completions = decode_completions(self.tokenizer, roll)
        rep_prompts = [p for p in prompts for _ in range(G)]
        columns = {k: [r.get(k) for r in rows for _ in range(G)] for k in rows[0] if k != "prompt"}
        rewards = self.rewards(rep_prompts, completions, columns)
        # All-gather the (small) reward lists: advantages and logged means then see the global batch.
        rewards.total = self.dist.gather_objects(rewards.total)
        rewards.per_function = {k: self.dist.gather_objects(v) for k, v in rewards.per_function.items()}
        rewards_B = torch.tensor(rewards.total, dtype=torch.float32)
        local = slice(self.dist.rank * share * G, (self.dist.rank + 1) * share * G)
        adv_B = group_advantages(rewards_B, G, scale=cfg.advantage_scale)[local].to(self.device)
        t2 = time.perf_counter()
        return dict(roll=roll, completions=completions, rewards=rewards, rewards_B=rewards_B, adv_B=adv_B,
                    t_sample=t1 - t0, t_reward=t2 - t1)

    def _micro_slices(self, idx: Tensor):
        for start in range(0, idx.numel(), self.config.micro_batch_size):
            yield idx[start : start + self.config.micro_batch_size]

    def _batch(self, roll, idx: Tensor):
        """Index a rollout and trim all-padding columns (left of prompts, right of completions)."""
        p_ids, p_mask = roll.prompt_ids_BP[idx], roll.prompt_mask_BP[idx]
        c_ids, c_mask = roll.completion_ids_BT[idx], roll.completion_mask_BT[idx]
        first = int(p_mask.any(0).long().argmax())
        last = int(c_mask.any(0).long().cumsum(0).argmax()) + 1
        return p_ids[:, first:], p_mask[:, first:], c_ids[:, :last], c_mask[:, :last], last

    def _score(self, model, roll, idx, with_entropy=False):
        p_ids, p_mask, c_ids, c_mask, last = self._batch(roll, idx)
        logp, ent = completion_logprobs(
            model, p_ids, p_mask, c_ids, c_mask, temperature=self.config.temperature, with_entropy=with_entropy,
            force_plain=self.dist.sharded_params, share_prompts=self.config.share_prompts,
        )
        return logp, ent, c_mask.bool(), last

    @torch.no_grad()
    def _logprobs_no_grad(self, model, roll, rows: Tensor | None = None) -> Tensor:
        """``[B, T]`` log-probs of the rollout's completions (only ``rows``, the others stay 0)."""
        B, T = roll.completion_ids_BT.shape
        out = torch.zeros(B, T, device=self.device, dtype=torch.float32)
        for idx in self._micro_slices(torch.arange(B, device=self.device) if rows is None else rows):
            logp, _, _, last = self._score(model, roll, idx)
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

    # ------------------------------------------------------------------ update
    def _update(self, roll, adv_B: Tensor, old_logp_BT: Tensor | None, ref_logp_BT: Tensor | None,
                perms: list[Tensor], old_from_first_minibatch: bool = False) -> dict[str, float]:
        """The optimizer steps of one rollout: ``perms[e]`` orders the global rows in epoch e.

        ``old_from_first_minibatch``: ``old_logp_BT`` was left 0 for the rows of epoch 0's first
        minibatch; their π_old is π_θ before any update, so the update's own forward provides it
        (detached) and fills ``old_logp_BT`` in for later epochs.
        """
        cfg = self.config
        B_local = roll.completion_ids_BT.shape[0]
        B = B_local * self.dist.world  # global rollout size
        M = cfg.minibatch_size
        sums: dict[str, float] = {}
        mins, maxs = [], []
        losses, grad_norms, entropies = [], [], []
        skipped = 0
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        for epoch, perm in enumerate(perms):
            for mb in range(cfg.num_minibatches):
                global_idx = perm[mb * M : (mb + 1) * M]
                mb_idx = self._local_rows(global_idx, B_local)
                fresh_old = old_from_first_minibatch and epoch == 0 and mb == 0
                if cfg.aggregation == "token-mean":
                    local_tokens = roll.completion_mask_BT[mb_idx].sum().float()
                    normalizer = self.dist.all_reduce(local_tokens).clamp(min=1)
                else:
                    normalizer = float(M)
                # DDP averages gradients over processes: dividing the normaliser by the world size
                # makes the synchronised gradient the global-batch one.
                normalizer = normalizer / self.dist.world
                self.optimizer.zero_grad(set_to_none=True)
                mb_loss = torch.zeros((), device=self.device)
                micro = list(self._micro_slices(mb_idx)) or [None]
                for j, idx in enumerate(micro):
                    with self.dist.no_sync(self.model, active=j < len(micro) - 1):
                        if idx is None:  # no row of this minibatch here: join the all-reduce with zero
                            logp, _, _, _ = self._score(self.model, roll, torch.arange(1, device=self.device))
                            (logp.sum() * 0.0).backward()
                            continue
                        mb_loss = mb_loss + self._micro_step(roll, idx, adv_B, old_logp_BT, ref_logp_BT, normalizer,
                                                             B, sums, mins, maxs, entropies, fresh_old)
                mb_loss = self.dist.all_reduce(mb_loss)
                max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
                grad_norm = self.dist.clip_grad_norm(self.model, params, max_norm)
                if not (torch.isfinite(grad_norm) and torch.isfinite(mb_loss)):
                    self.optimizer.zero_grad(set_to_none=True)
                    skipped += 1
                    logger.warning("step %d: non-finite loss or gradient; optimizer step skipped", self.step + 1)
                else:
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer_steps += 1
                losses.append(mb_loss)
                grad_norms.append(grad_norm)
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped_steps += skipped
        keys = sorted(sums)
        reduced = self.dist.all_reduce(torch.stack([torch.as_tensor(sums[k], device=self.device, dtype=torch.float64)
                                                    for k in keys] + [torch.stack(entropies).sum().double()]))
        out = {k: float(v) for k, v in zip(keys, reduced[:-1])}
        inf = torch.tensor(float("inf"), device=self.device, dtype=torch.float64)
        out.update(
            loss=float(torch.stack(losses).mean()),
            grad_norm=float(torch.stack(grad_norms).mean()),
            ratio_min=float(self.dist.all_reduce(torch.stack([m.double() for m in mins]).min() if mins else inf, "min")),
            ratio_max=float(self.dist.all_reduce(torch.stack([m.double() for m in maxs]).max() if maxs else -inf, "max")),
            entropy=float(reduced[-1]),
            skipped_steps=skipped,
        )
        return out

    def _micro_step(self, roll, idx, adv_B, old_logp_BT, ref_logp_BT, normalizer, B, sums, mins, maxs, entropies,
                    fresh_old: bool = False) -> Tensor:
        """Forward + backward of one micro-batch; accumulates its weighted statistics.

        ``fresh_old``: no optimizer step has been taken on this rollout yet, so π_old = π_θ here:
        the old log-probs are this forward's, detached (and recorded in ``old_logp_BT``).
        """
        cfg = self.config
        logp, ent, mask, last = self._score(self.model, roll, idx, with_entropy=True)
        if old_logp_BT is None:
            old = logp.detach()
        elif fresh_old:
            old = logp.detach()
            old_logp_BT[idx, :last] = old.to(old_logp_BT.dtype)
        else:
            old = old_logp_BT[idx, :last]
        ref = None if ref_logp_BT is None else ref_logp_BT[idx, :last]
        loss, stats = policy_loss(
            logp, old, adv_B[idx], mask, level=self.level, clip_low=self.clip_low, clip_high=self.clip_high,
            aggregation=cfg.aggregation, normalizer=normalizer, ref_logp=ref, kl_coef=cfg.kl_coef,
            max_log_ratio=cfg.max_log_ratio,
        )
        loss.backward()
        w = idx.numel() / B / cfg.num_epochs
        for key, value in stats.items():
            if key not in ("ratio_min", "ratio_max"):
                sums[key] = sums.get(key, 0.0) + w * value
        mins.append(stats["ratio_min"])
        maxs.append(stats["ratio_max"])
        entropies.append((torch.where(mask, ent, 0.0).sum() / mask.sum().clamp(min=1)) * w)
        # the normaliser was divided by the world size (for DDP's gradient mean): undo it for the value, whose
        # sum over processes (all_reduce in the caller) is then the global-batch loss
        return loss.detach() / self.dist.world

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, Any]:
        cfg = self.config
        t0 = time.perf_counter()
        r = self._rollout()
        roll = r["roll"]
        t1 = time.perf_counter()
        B_local = roll.completion_ids_BT.shape[0]
        # Minibatch orders of every epoch, drawn before the old-log-prob pass (which skips the rows
        # the first minibatch will score itself).
        perms = [self._epoch_order(B_local * self.dist.world) for _ in range(cfg.num_epochs)]
        old_from_first = False
        if cfg.on_policy:
            old_logp = None  # π_old ≡ π_θ at the single update: no extra forward needed
        elif self.old_logp_from_sampler:
            old_logp = roll.logp_BT
        else:
            # Exact and cheaper: the first minibatch's rows get π_old from the update's own forward
            # (π_θ has not moved yet), so only the other rows are recomputed here.
            self.model.train()
            first_rows = self._local_rows(perms[0][: cfg.minibatch_size], B_local)
            keep = torch.ones(B_local, dtype=torch.bool, device=self.device)
            keep[first_rows] = False
            old_logp = self._logprobs_no_grad(self.model, roll, rows=keep.nonzero().squeeze(1))
            old_from_first = True
        ref_logp = None
        if self.ref_model is not None:
            ref_logp = self._logprobs_no_grad(self.ref_model, roll)
        elif cfg.kl_coef > 0:
            with reference_context(self.model):
                ref_logp = self._logprobs_no_grad(self.model, roll)
        t2 = time.perf_counter()
        stats = self._update(roll, r["adv_B"], old_logp, ref_logp, perms, old_from_first)
        t3 = time.perf_counter()
        self.step += 1

        metrics: dict[str, Any] = {
            **rollout_metrics(roll, r["rewards"], r["rewards_B"], r["adv_B"]),
            **stats,
            "lr": self.scheduler.get_last_lr()[0],
            "optimizer_steps": self.optimizer_steps,
            "skipped_steps_total": self.skipped_steps,
            "tokens_per_s": int(roll.completion_mask_BT.sum()) / max(t3 - t0, 1e-9),
            "time/sample": r["t_sample"],
            "time/reward": r["t_reward"],
            "time/old_logp": t2 - t1,
            "time/update": t3 - t2,
            "time/step": t3 - t0,
        }
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
                    model, self.tokenizer, self.eval_task, rows, samples=1, greedy=True,
                    max_new_tokens=self.config.eval_max_new_tokens or self.config.max_new_tokens,
                    batch_size=max(self.config.micro_batch_size, 64), seed=self.config.seed,
                )
            accuracy += float(result.accuracy)
        self.model.train()
        return float(self.dist.all_reduce(accuracy))

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "optimizer_steps": self.optimizer_steps,
            "skipped_steps": self.skipped_steps,
            "best_score": self.best_score,
            "eval_before": self.eval_before,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "data_order": self.order.state_dict(),
            "rng": ckpt.rng_state({"sample": self.sample_gen, "shuffle": self.shuffle_gen}),
            "config": dataclasses.asdict(self.config),
        }

    def save(self, target: Path) -> Path:
        """Write a checkpoint from the main process; every process waits until it is complete."""
        if self.dist.is_main:
            ckpt.save_checkpoint(target, self.dist.unwrap(self.model), self.tokenizer, self._state())
        self.dist.barrier()
        return target

    def load(self, path: Path) -> None:
        """Restore weights and trainer state from a checkpoint folder (verified against its manifest)."""
        state = ckpt.load_trainer_state(path)
        ckpt.load_model_weights(self.model, path, self.device)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.order.load_state_dict(state["data_order"])
        ckpt.restore_rng_state(state["rng"], {"sample": self.sample_gen, "shuffle": self.shuffle_gen})
        self.step, self.optimizer_steps = state["step"], state["optimizer_steps"]
        self.skipped_steps, self.best_score = state["skipped_steps"], state["best_score"]
        self.eval_before = state.get("eval_before")
        logger.info("resumed from %s at step %d", path, self.step)

    # ------------------------------------------------------------------ the run
    def train(self) -> dict[str, Any]:
        with library_bars_off():
            return self._train()

    def _train(self) -> dict[str, Any]:
        cfg = self.config
        self.output_dir.mkdir(parents=True, exist_ok=True)
        resume_step = None
        if cfg.resume:
            latest = ckpt.latest_checkpoint(self.output_dir)
            if latest is None:
                logger.warning("resume: no complete checkpoint in %s; starting from scratch", self.output_dir)
            else:
                self.load(latest)
                resume_step = self.step
        if self.dist.is_main:
            (self.output_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
        metrics_log = MetricsLogger(self.output_dir, report_to=cfg.report_to, run_config=dataclasses.asdict(cfg),
                                    resume_step=resume_step, enabled=self.dist.is_main)
        start = time.perf_counter()
        if self.eval_before is None:
            self.eval_before = self.evaluate()
            if self.eval_before is not None:
                logger.info("eval before training: %.3f", self.eval_before)
                metrics_log.log(0, {"eval/accuracy": self.eval_before})
        bar = Progress(cfg.max_steps, initial=self.step, desc="gspo", enabled=cfg.progress and self.dist.is_main)
        last_metrics: dict[str, Any] = {}
        try:
            while self.step < cfg.max_steps:
                metrics = self.train_step()
                last_metrics = metrics
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.max_steps:
                    score = self.evaluate()
                    metrics["eval/accuracy"] = score
                    if score is not None and (self.best_score is None or score > self.best_score):
                        self.best_score = score
                        self.save(self.output_dir / "best")
                if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                    metrics_log.log(self.step, metrics)
                if cfg.save_steps and self.step % cfg.save_steps == 0 and self.step < cfg.max_steps:
                    self.save(self.output_dir / "checkpoints" / f"step-{self.step:06d}")
                    if self.dist.is_main:
                        ckpt.prune_checkpoints(self.output_dir, cfg.save_total_limit)
                bar.update(metrics)
        finally:
            bar.close()
        eval_after = self.evaluate()
        if eval_after is not None:
            metrics_log.log(self.step, {"eval/accuracy": eval_after})
            if cfg.eval_every and (self.best_score is None or eval_after > self.best_score):
                self.best_score = eval_after
                self.save(self.output_dir / "best")
        self.save(self.output_dir / "final")
        if self.dist.is_main:
            ckpt.prune_checkpoints(self.output_dir, cfg.save_total_limit)
        metrics_log.close()
        summary = {
            "eval_before": self.eval_before,
            "eval_after": eval_after,
            "steps": self.step,
            "optimizer_steps": self.optimizer_steps,
            "skipped_steps": self.skipped_steps,
            "best_eval": self.best_score,
            "final_reward": last_metrics.get("reward/mean"),
            "train_seconds": time.perf_counter() - start,
            "algorithm": cfg.algorithm,
            "model": cfg.model,
            "task": cfg.task,
            "seed": cfg.seed,
        }
        if self.dist.is_main:
            (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        return summary
