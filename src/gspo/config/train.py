"""``GSPOConfig``: every setting of an RL run, with its docstring and its allowed values.

The fields shared with SFT (model, task, evaluation, optimiser basics, run) are declared once in
:class:`gspo.config.run.RunConfig`; this class adds the RL ones. Defaults are the paper's where the
paper has one (the clip range of each algorithm comes from the algorithm table, :mod:`gspo.algorithms`,
via ``clip_low/clip_high = None``; 4 minibatches per rollout, no KL, seq-mean aggregation) and
otherwise the embedded default run's (``gspo train`` with no arguments: the project's tiny
pre-trained adder on the procedural addition task, a few minutes on 2 CPU cores).

This module imports neither torch nor transformers, so a bad value is reported before any model loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from gspo.algorithms import ALGORITHMS, PROVIDED_NEEDS, get_algorithm
from gspo.config.run import RunConfig, check_task_options, config_loader, parse_task_options

__all__ = ["GSPOConfig", "check_task_options", "load_config", "parse_task_options"]


@dataclass
class GSPOConfig(RunConfig):
    # ----------------------------------------------------------------- model (RL only)
    gradient_checkpointing: bool = False
    """Recompute activations in backward to save memory (slower)."""
    lora_r: int = 0
    """LoRA rank (peft); 0 trains all weights. With LoRA the KL reference is the base model with the adapter disabled."""
    lora_alpha: float = 16.0
    """LoRA scaling α."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA path (keep 0 for exact GSPO ratios)."""
    lora_target_modules: str = "all-linear"
    """Modules that get adapters: 'all-linear' or a comma-separated list such as 'q_proj,v_proj'."""
    load_in_4bit: bool = False
    """QLoRA: load the base weights in 4-bit (bitsandbytes, CUDA only; needs lora_r > 0)."""

    # ----------------------------------------------------------------- rewards
    rewards: list[str] = field(default_factory=lambda: ["task"])
    """Reward functions: 'task' (the task's own scorer), a registered name, or 'module:function'."""
    reward_weights: list[float] = field(default_factory=list)
    """One weight per reward function (empty: all 1.0)."""
    reward_errors: Literal["raise", "zero"] = "raise"
    """A reward function that raises: 'raise' stops the run naming it; 'zero' scores 0 and warns."""

    # ----------------------------------------------------------------- algorithm
    algorithm: str = "gspo"
    """An entry of the algorithm table (gspo.algorithms): 'gspo' is the paper's."""
    algorithm_options: dict[str, Any] = field(default_factory=dict)
    """Hyper-parameters of the algorithm's loss by name, over the table's defaults (a YAML mapping, or a JSON object on the command line); unknown names are an error listing the valid ones."""
    clip_low: Optional[float] = None
    """ε_low. None: the paper's value for the algorithm (3e-4 for GSPO, 0.2 for GRPO)."""
    clip_high: Optional[float] = None
    """ε_high. None: the paper's value for the algorithm (4e-4 for GSPO, 0.27 for GRPO)."""
    aggregation: Literal["seq-mean", "token-mean", "seq-mean-token-sum"] = "seq-mean"
    """Loss aggregation: 'seq-mean' is the paper's; 'token-mean' is the length-weighted one of TRL/AReaL."""
    advantage_scale: Literal["group", "batch", "none"] = "group"
    """Advantage denominator: group std (the paper's), batch std, or none (mean-centred only)."""
    kl_coef: float = 0.0
    """β of the k3 KL penalty to the initial (reference) policy; 0 disables it and loads no reference."""
    max_log_ratio: float = 20.0
    """Log-ratios are clamped to ± this before exp (a numerical guard; never active in normal training)."""
    old_logp_source: Literal["auto", "recompute", "sampler"] = "auto"
    """π_old log-probs: 'sampler' reuses the sampling log-probs (section 5.4), 'recompute' runs a no-grad trainer forward; 'auto' is 'sampler' when the sampler is the trained model in float32/float64 without dropout (both are then the same numbers up to float rounding, measured <= 2e-6 per token), else 'recompute'."""

    # ----------------------------------------------------------------- rollout
    prompts_per_step: int = 32
    """Prompts per rollout; each is answered group_size times."""
    group_size: int = 8
    """G: responses sampled per prompt."""
    max_new_tokens: int = 8
    """Longest completion; completions that reach it without EOS are truncated and still scored."""
    temperature: float = 1.0
    """Sampling temperature (the trainer's log-probs use the same temperature)."""
    top_p: float = 1.0
    """Nucleus sampling threshold (1.0: off)."""
    top_k: int = 0
    """Top-k sampling (0: off)."""

    # ----------------------------------------------------------------- optimisation (RL only)
    num_minibatches: int = 4
    """Each rollout is split into this many minibatches, one optimizer step each (the paper: 4)."""
    num_epochs: int = 1
    """Passes over each rollout."""
    minibatch_grouping: Literal["random", "group"] = "random"
    """How each epoch splits the rollout into minibatches: random rows, or whole groups ('group': each minibatch holds complete groups, so prompt sharing computes each prompt once per group; minibatch size must be a multiple of group_size)."""
    share_prompts: bool = True
    """Score rows of a micro-batch that share a prompt by running the prompt once (same result up to float rounding; off: one full forward per row)."""
    adam_beta1: float = 0.9
    """AdamW β1."""
    adam_beta2: float = 0.999
    """AdamW β2."""
    adam_eps: float = 1e-8
    """AdamW ε."""
    optimizer: Literal["adamw", "adamw_8bit"] = "adamw"
    """'adamw', or 'adamw_8bit' (bitsandbytes, CUDA only; on CPU falls back to adamw with a message)."""

    # ----------------------------------------------------------------- run (RL only)
    save_steps: int = 0
    """Save a checkpoint every N steps (0: only the final one, and 'best' when eval_every > 0)."""
    save_total_limit: int = 2
    """Keep at most this many periodic checkpoints (best and final are kept apart)."""
    resume: bool = False
    """Continue from the latest complete checkpoint in output_dir."""

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def field_choices() -> dict[str, dict[str, str]]:
        """Fields whose values come from a table: ``algorithm`` (its entries, with their summaries)."""
        return {"algorithm": {name: a.summary for name, a in ALGORITHMS.items()}}

    @property
    def algorithm_spec(self):
        """This run's entry of the algorithm table."""
        return get_algorithm(self.algorithm)

    @property
    def loss_hparams(self) -> dict[str, Any]:
        """The loss's hyper-parameters by name: table defaults < set config fields < algorithm_options."""
        params = dict(self.algorithm_spec.defaults)
        for name in params:
            value = getattr(self, name, None)
            if value is not None:
                params[name] = value
        params.update(self.algorithm_options)
        return params

    @property
    def clip_range(self) -> tuple[float, float]:
        """(ε_low, ε_high) after applying the algorithm's paper defaults."""
        params = self.loss_hparams
        return params.get("clip_low"), params.get("clip_high")  # type: ignore[return-value]

    @property
    def rollout_size(self) -> int:
        """Sequences per rollout: prompts_per_step × group_size."""
        return self.prompts_per_step * self.group_size

    @property
    def minibatch_size(self) -> int:
        return self.rollout_size // self.num_minibatches

    @property
    def on_policy(self) -> bool:
        """True when π_old ≡ π_θ at every update, so the old-log-prob pass can be skipped."""
        return self.num_minibatches == 1 and self.num_epochs == 1

    def validate_own(self) -> None:
        self._validate_algorithm()
        self._validate_rollout()
        self._validate_optimisation()
        self._validate_rewards_and_model()

    def _validate_algorithm(self) -> None:
        need = self.need
        need(self.algorithm in ALGORITHMS, "algorithm", f"must be one of {list(ALGORITHMS)}")
        missing = sorted(set(self.algorithm_spec.needs) - set(PROVIDED_NEEDS))
        need(not missing, "algorithm", f"needs {missing}, which the trainer does not provide yet")
        self.algorithm_options = parse_task_options(self.algorithm_options, "algorithm_options")
        unknown = sorted(set(self.algorithm_options) - set(self.algorithm_spec.defaults))
        need(
            not unknown,
            "algorithm_options",
            f"has unknown names {unknown}; {self.algorithm!r} takes {sorted(self.algorithm_spec.defaults)}",
        )
        need(self.clip_low is None or 0 <= self.clip_low < 1, "clip_low", "must be in [0, 1) or None")
        need(self.clip_high is None or self.clip_high >= 0, "clip_high", "must be >= 0 or None")
        need(self.kl_coef >= 0, "kl_coef", "must be >= 0")
        need(self.max_log_ratio > 0, "max_log_ratio", "must be > 0")

    def _validate_rollout(self) -> None:
        need = self.need
        need(self.prompts_per_step >= 1, "prompts_per_step", "must be >= 1")
        need(self.group_size >= 2, "group_size", "must be >= 2 (group advantages need two responses)")
        need(self.max_new_tokens >= 1, "max_new_tokens", "must be >= 1")
        need(self.temperature > 0, "temperature", "must be > 0")
        need(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        need(self.top_k >= 0, "top_k", "must be >= 0 (0 disables top-k)")

    def _validate_optimisation(self) -> None:
        need = self.need
        need(self.num_minibatches >= 1, "num_minibatches", "must be >= 1")
        need(
            self.rollout_size % self.num_minibatches == 0,
            "num_minibatches",
            f"must divide prompts_per_step × group_size = {self.rollout_size}",
        )
        need(
            self.minibatch_grouping != "group" or self.minibatch_size % self.group_size == 0,
            "minibatch_grouping",
            f"'group' needs the minibatch size (rollout {self.rollout_size} / num_minibatches "
            f"{self.num_minibatches} = {self.minibatch_size}) to be a multiple of group_size {self.group_size}",
        )
        need(self.num_epochs >= 1, "num_epochs", "must be >= 1")
        need(0 <= self.adam_beta1 < 1, "adam_beta1", "must be in [0, 1)")
        need(0 <= self.adam_beta2 < 1, "adam_beta2", "must be in [0, 1)")
        need(self.adam_eps > 0, "adam_eps", "must be > 0")
        need(self.max_steps >= 1, "max_steps", "must be >= 1")
        need(self.save_steps >= 0, "save_steps", "must be >= 0")
        need(self.save_total_limit >= 1, "save_total_limit", "must be >= 1")

    def _validate_rewards_and_model(self) -> None:
        need = self.need
        need(self.lora_r >= 0, "lora_r", "must be >= 0 (0 disables LoRA)")
        need(self.lora_alpha > 0, "lora_alpha", "must be > 0")
        need(0 <= self.lora_dropout < 1, "lora_dropout", "must be in [0, 1)")
        need(bool(self.lora_target_modules.strip()), "lora_target_modules", "must name modules or 'all-linear'")
        need(not self.load_in_4bit or self.lora_r > 0, "load_in_4bit", "needs lora_r > 0 (QLoRA trains adapters only)")
        need(bool(self.rewards), "rewards", "must list at least one reward function")
        need(all(math.isfinite(w) for w in self.reward_weights), "reward_weights", "must be finite numbers")
        need(
            not self.reward_weights or len(self.reward_weights) == len(self.rewards),
            "reward_weights",
            f"must be empty or have one weight per reward ({len(self.rewards)})",
        )


#: Defaults < YAML file < overrides, validated.
load_config = config_loader(GSPOConfig)

#: The algorithm names (the table's keys), for callers that list them.
ALGORITHM_NAMES = tuple(ALGORITHMS)
