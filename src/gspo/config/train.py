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
import sys
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from gspo.algorithms import (
    ADVANTAGE_ESTIMATOR_NAMES,
    ALGORITHMS,
    PER_TOKEN_ADVANTAGE_LOSSES,
    PROVIDED_NEEDS,
    TOKEN_REWARD_ESTIMATORS,
    get_algorithm,
)
from gspo.config.run import RunConfig, check_task_options, config_loader, parse_task_options

__all__ = ["GSPOConfig", "check_task_options", "load_config", "parse_task_options"]


#: What a run setting is when neither the config nor the algorithm sets it (see ``GSPOConfig.setting``).
SETTING_DEFAULTS: dict[str, Any] = {
    "aggregation": "seq-mean",
    "advantage_scale": "group",
    "dynamic_sampling": False,
    "overlong_buffer_frac": 0.0,
}


def ADVANTAGE_NAMES() -> set[str]:  # noqa: N802 - reads like the constant it stands for
    """The built-in advantage estimators and any registered since (without importing torch here)."""
    registry = getattr(sys.modules.get("gspo.losses.advantages"), "ADVANTAGE_ESTIMATORS", {})
    return set(ADVANTAGE_ESTIMATOR_NAMES) | set(registry)


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
    aggregation: Optional[Literal["seq-mean", "token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]] = None
    """Loss aggregation; None: the algorithm's. 'seq-mean' is GSPO's; 'token-mean' the length-weighted one (DAPO, TRL, AReaL); 'seq-mean-token-sum-norm' Dr. GRPO's constant denominator (sequences × max_new_tokens)."""
    advantage: Optional[str] = None
    """Advantage estimator, independent of the loss; None: the algorithm's. 'group' (mean/std of the group, eq. 6), 'rloo' (leave-one-out), 'reinforce++' (whitened over the whole batch)."""
    advantage_scale: Optional[Literal["group", "batch", "none"]] = None
    """Denominator of the 'group' estimator; None: the algorithm's ('group' std, the paper's; Dr. GRPO: 'none', mean-centred only; or one 'batch' std)."""
    kl_coef: float = 0.0
    """β of the k3 KL penalty to the initial (reference) policy; 0 disables it and loads no reference."""
    log_kl: bool = False
    """Measure the k3 KL to the initial (reference) policy every step and log it as 'kl', without adding it to the loss (kl_coef 0). Costs a reference forward per step (and, without LoRA, a frozen copy of the model)."""
    max_log_ratio: float = 20.0
    """Log-ratios are clamped to ± this before exp (a numerical guard; never active in normal training)."""
    adaptive_clip: bool = False
    """Adapt ε between steps to hold the clip fraction near adaptive_clip_target: both clip_low and clip_high are scaled by a factor that grows by (1 + adaptive_clip_rate) after a step that clipped more than the target and shrinks by it after one that clipped less, within adaptive_clip_bounds; logged as clip/scale, clip/low, clip/high. Off by default."""
    adaptive_clip_target: float = 0.1
    """Target clip fraction of adaptive_clip (the logged clip_frac: sequences for GSPO, tokens for token-level losses)."""
    adaptive_clip_rate: float = 0.1
    """Relative change of the clip scale per step under adaptive_clip."""
    adaptive_clip_bounds: list[float] = field(default_factory=lambda: [0.1, 10.0])
    """[lowest, highest] factor adaptive_clip may apply to the algorithm's ε (clip_low stays <= 1)."""
    old_logp_source: Literal["auto", "recompute", "sampler"] = "auto"
    """π_old log-probs: 'sampler' reuses the sampling log-probs (section 5.4), 'recompute' runs a no-grad trainer forward; 'auto' is 'sampler' when the sampler is the trained model in float32/float64 without dropout (both are then the same numbers up to float rounding, measured <= 2e-6 per token), else 'recompute'."""

    sampler_dtype: Literal["same", "bfloat16", "float16"] = "same"
    """Sample from a copy of the model in this dtype, refreshed before each rollout (as a separate inference engine would): 'same' samples with the trained model itself. Another dtype makes π_old recomputed by the trainer, and its difference from the sampler is measured (mismatch/*)."""
    mismatch_correction: Literal["none", "tis", "mis"] = "none"
    """Rollout-mismatch correction for a sampler that is not numerically the trainer (sampler_dtype, top_p/top_k): 'tis' multiplies each token's loss term by min(π_old/μ, mismatch_cap); 'mis' drops responses whose geometric-mean ratio leaves [1/mismatch_cap, mismatch_cap]; 'none' only logs. Any value other than 'none' recomputes π_old with the trainer. Raw ratios are logged before truncation (mismatch/*)."""
    mismatch_cap: float = 2.0
    """C of the mismatch correction (TIS token cap, MIS sequence bounds [1/C, C])."""

    # ----------------------------------------------------------------- critic (algorithms that need one: 'ppo')
    critic_path: Optional[str] = None
    """Weights of the critic's body (a Hugging Face model folder, 'embedded' or 'smollm2'); None: a copy of the policy's weights. Its scalar value head starts at 0. With lora_r > 0 the critic trains LoRA adapters of the same rank (and its head) instead of all weights."""
    critic_learning_rate: Optional[float] = None
    """Learning rate of the critic's AdamW (same betas, schedule and warm-up as the policy's); None: 10 × learning_rate (verl's ratio)."""
    value_clip: float = 0.2
    """c of PPO's clipped value loss 0.5·max((V−R)², (clip(V, V_old−c, V_old+c)−R)²)."""
    gae_gamma: float = 1.0
    """γ of generalised advantage estimation (discount per token)."""
    gae_lambda: float = 1.0
    """λ of generalised advantage estimation (1: reward-to-go minus value; lower trusts the critic more)."""
    reward_kl_coef: float = 0.0
    """β of the KL penalty inside the token rewards: r_t −= β·(log μ − log π_ref) per token (μ the sampler's log-probs; the reward-side KL of Ouyang et al. 2022), for PPO (critic, GAE) and for REINFORCE++ (returns-to-go whitened over the batch, Hu et al. 2025); 0: none and no reference loaded. Independent of kl_coef, the KL term in the loss."""

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
    dynamic_sampling: Optional[bool] = None
    """DAPO's dynamic sampling, for any algorithm; None: the algorithm's (on for 'dapo'). Groups whose rewards are all equal are dropped and more prompts are sampled until prompts_per_step informative groups are in hand or dynamic_sampling_max_rounds extra rounds were spent; then the step goes on with what it has, filled with constant groups, and says so (dynamic_sampling/* metrics)."""
    dynamic_sampling_max_rounds: int = 3
    """The bound on dynamic sampling: at most this many extra sampling rounds (of prompts_per_step prompts each) per step."""
    overlong_filter: bool = False
    """DAPO's overlong filtering: completions truncated at max_new_tokens (no EOS) are masked out of the loss (they still count in the rollout)."""
    overlong_buffer_frac: Optional[float] = None
    """DAPO's soft overlong punishment: L_cache = round(this × max_new_tokens); a completion longer than max_new_tokens − L_cache gets a reward penalty growing linearly to −overlong_penalty_factor at max_new_tokens. None: the algorithm's (DAPO: 0.2, its 4,096 of 20,480); 0: off."""
    overlong_penalty_factor: float = 1.0
    """Scale of the soft overlong punishment (DAPO: 1.0)."""

    # ----------------------------------------------------------------- environments (multi-turn)
    environment: Optional[str] = None
    """Train on episodes with an environment instead of single completions: 'python' (a Python tool; rows from the task), 'guess' (a number-guessing game with higher/lower replies; its own rows), 'openenv' (an OpenEnv environment, named in environment_options' 'env') or 'package.module:Class' (see docs/environments.md). With an environment, max_new_tokens bounds each episode's tokens after the first prompt (model and environment tokens) and the task's reward is the environment's."""
    environment_options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the environment's class (a YAML mapping, or a JSON object on the command line)."""
    max_turns: int = 4
    """Model turns per episode at most; an episode still running after them ends (truncated) and is scored as it stands."""
    max_turn_tokens: Optional[int] = None
    """Tokens per model turn at most (None: max_new_tokens)."""
    environment_timeout_s: float = 60.0
    """Deadline of each environment call (reset, step, reward), in seconds; 0: none. A call past it is a failure (environment_errors). An environment's own batched step_many gets this times the number of episodes it answers."""
    environment_errors: Literal["raise", "end"] = "raise"
    """An environment that raises, hangs past environment_timeout_s or returns the wrong type: 'raise' stops the run naming it; 'end' ends those episodes with final reward 0 (turn rewards already earned are kept), warns and counts them (episodes/env_errors)."""
    turn_advantages: Optional[bool] = None
    """Per-turn advantages (reward-to-go of each turn against the group baseline) when the environment gives per-turn rewards; None: on for losses with per-token advantages (gspo-token, grpo and the token-level family), off for GSPO's sequence loss, which takes one advantage per episode."""

    # ----------------------------------------------------------------- optimisation (RL only)
    num_minibatches: int = 4
    """Each rollout is split into this many minibatches, one optimizer step each (the paper: 4)."""
    num_epochs: int = 1
    """Passes over each rollout."""
    minibatch_grouping: Literal["random", "group"] = "random"
    """How each epoch splits the rollout into minibatches: random rows, or whole groups ('group': each minibatch holds complete groups, so prompt sharing computes each prompt once per group; minibatch size must be a multiple of group_size)."""
    share_prompts: bool = True
    """Score rows of a micro-batch that share a prompt by running the prompt once (same result up to float rounding; off: one full forward per row)."""
    pack_sequences: bool = True
    """Score each micro-batch as one packed sequence of its real tokens: no padding, one backbone call (same result up to float rounding; Llama, Mistral, Qwen2/3 and GPT-2 families with sdpa attention, up to 2,048 tokens; otherwise padded rows)."""
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

    def setting(self, name: str) -> Any:
        """A run setting that the algorithm may choose: the field's value, else the algorithm's, else the default."""
        value = getattr(self, name)
        if value is not None:
            return value
        if name == "advantage":
            return self.algorithm_spec.advantage
        return self.algorithm_spec.settings.get(name, SETTING_DEFAULTS[name])

    @property
    def overlong_buffer_tokens(self) -> int:
        """L_cache of the soft overlong punishment, in tokens (0: off)."""
        return round(self.setting("overlong_buffer_frac") * self.max_new_tokens)

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
        self._validate_environment()

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
        need(self.clip_low is None or 0 <= self.clip_low <= 1, "clip_low", "must be in [0, 1] or None")
        unknown = sorted(set(self.algorithm_spec.settings) - set(SETTING_DEFAULTS))
        need(not unknown, "algorithm", f"sets unknown settings {unknown}; valid: {sorted(SETTING_DEFAULTS)}")
        need(
            self.setting("advantage") in ADVANTAGE_NAMES(),
            "advantage",
            f"must be one of {sorted(ADVANTAGE_NAMES())}, got {self.setting('advantage')!r}",
        )
        self._validate_switches()
        self._validate_critic()
        need(
            "pairs" not in self.algorithm_spec.needs or self.kl_coef == 0,
            "kl_coef",
            f"must be 0 for {self.algorithm!r}: its pair loss holds the policy to the reference itself (β in algorithm_options)",
        )
        need(self.clip_high is None or self.clip_high >= 0, "clip_high", "must be >= 0 or None")
        need(self.kl_coef >= 0, "kl_coef", "must be >= 0")
        need(self.max_log_ratio > 0, "max_log_ratio", "must be > 0")

    def _validate_critic(self) -> None:
        need = self.need
        critic = "critic" in self.algorithm_spec.needs
        need(
            (self.setting("advantage") == "gae") == critic,
            "advantage",
            "'gae' goes with an algorithm that has a critic ('ppo'), and such an algorithm needs 'gae'",
        )
        token_rewards = critic or self.setting("advantage") in TOKEN_REWARD_ESTIMATORS
        need(
            token_rewards or self.reward_kl_coef == 0.0,
            "reward_kl_coef",
            f"applies to algorithms with a critic ('ppo') or a token-reward estimator ({list(TOKEN_REWARD_ESTIMATORS)}: "
            f"'--advantage reinforce++'); {self.algorithm!r} uses {self.setting('advantage')!r}",
        )
        need(
            critic or self.reward_kl_coef == 0.0 or self.algorithm_spec.loss in PER_TOKEN_ADVANTAGE_LOSSES,
            "reward_kl_coef",
            f"the KL in the reward gives per-token advantages, which {self.algorithm!r}'s loss "
            f"({self.algorithm_spec.loss_name!r}) does not take; use a token-level loss (e.g. reinforce++, grpo)",
        )
        for name in ("critic_path", "critic_learning_rate"):
            need(
                critic or getattr(self, name) in (None, 0.0),
                name,
                f"applies to algorithms with a critic ('ppo'); {self.algorithm!r} has none",
            )
        if self.critic_path is not None:
            need(_model_source_exists(self.critic_path), "critic_path", "must be an existing model folder")
        need(
            not (critic and self.load_in_4bit and self.critic_path is None),
            "critic_path",
            "must name the critic's weights when load_in_4bit is on (a 4-bit policy is not copied into a critic)",
        )
        need(
            self.critic_learning_rate is None or self.critic_learning_rate > 0,
            "critic_learning_rate",
            "must be > 0 or None",
        )
        need(self.value_clip > 0, "value_clip", "must be > 0")
        need(0 <= self.gae_gamma <= 1, "gae_gamma", "must be in [0, 1]")
        need(0 <= self.gae_lambda <= 1, "gae_lambda", "must be in [0, 1]")
        need(self.reward_kl_coef >= 0, "reward_kl_coef", "must be >= 0")

    @property
    def critic_lr(self) -> float:
        """The critic's learning rate: critic_learning_rate, else 10 × learning_rate."""
        return self.critic_learning_rate if self.critic_learning_rate is not None else 10 * self.learning_rate

    def _validate_switches(self) -> None:
        need = self.need
        need(self.dynamic_sampling_max_rounds >= 0, "dynamic_sampling_max_rounds", "must be >= 0")
        frac = self.setting("overlong_buffer_frac")
        need(0 <= frac < 1, "overlong_buffer_frac", f"must be in [0, 1), got {frac}")
        need(self.overlong_penalty_factor >= 0, "overlong_penalty_factor", "must be >= 0")
        need(self.mismatch_cap > 1, "mismatch_cap", "must be > 1")
        need(0 <= self.adaptive_clip_target <= 1, "adaptive_clip_target", "must be in [0, 1]")
        need(self.adaptive_clip_rate > 0, "adaptive_clip_rate", "must be > 0")
        bounds = self.adaptive_clip_bounds
        need(
            len(bounds) == 2 and 0 < bounds[0] <= 1 <= bounds[1],
            "adaptive_clip_bounds",
            f"must be [low, high] with 0 < low <= 1 <= high, got {bounds}",
        )

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

    def _validate_environment(self) -> None:
        need = self.need
        need(self.max_turns >= 1, "max_turns", "must be >= 1")
        need(self.max_turn_tokens is None or self.max_turn_tokens >= 1, "max_turn_tokens", "must be >= 1 or None")
        need(self.environment_timeout_s >= 0, "environment_timeout_s", "must be >= 0 (0: no deadline)")
        self.environment_options = parse_task_options(self.environment_options, "environment_options")
        if self.environment is None:
            return
        need(bool(str(self.environment).strip()), "environment", "must name an environment or be None")
        need(
            not (self.turn_advantages and self.algorithm_spec.loss not in PER_TOKEN_ADVANTAGE_LOSSES),
            "turn_advantages",
            f"needs a loss with per-token advantages (e.g. gspo-token, grpo); {self.algorithm!r} takes one per episode",
        )
        need(
            not (self.turn_advantages and self.setting("advantage") != "group"),
            "turn_advantages",
            f"per-turn advantages are the group estimator's (the turn's reward-to-go against the group mean, "
            f"over its std); the {self.setting('advantage')!r} estimator has no per-turn form",
        )


def _model_source_exists(name: str) -> bool:
    """Whether ``name`` names a model here without loading anything: 'embedded', 'smollm2', or a folder
    holding a config.json (a Hub id must be downloaded first, e.g. into a folder)."""
    from pathlib import Path

    from gspo.models.loading import EMBEDDED_NAMES, SMOLLM2_NAMES

    if name.strip().lower() in EMBEDDED_NAMES + SMOLLM2_NAMES:
        return True
    try:
        return (Path(name).expanduser() / "config.json").is_file()
    except (RuntimeError, OSError, ValueError):  # '~nosuchuser/...', a name the OS refuses
        return False


#: Defaults < YAML file < overrides, validated.
load_config = config_loader(GSPOConfig)

#: The algorithm names (the table's keys), for callers that list them.
ALGORITHM_NAMES = tuple(ALGORITHMS)
