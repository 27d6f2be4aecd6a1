"""Fixtures for trainer tests: a tiny random model and a toy rule-based task, built in the test."""

from __future__ import annotations

import pytest

from gspo.config import GSPOConfig
from tests.helpers_tiny import tiny_model_and_tokenizer


def count_a_reward(prompts, completions, **_):
    """1 point per lower-case letter, digit or 'a' (a toy verifiable reward with plenty of variance)."""
    return [float(sum(ch.islower() or ch.isdigit() for ch in c) + c.count("a")) for c in completions]


def make_rows(n=16):
    return [{"prompt": f"q{i}:", "target": "a"} for i in range(n)]


def trainer_config(tmp_path, **overrides) -> GSPOConfig:
    """A small, fast GSPOConfig for trainer tests (4 prompts x 4, 2 minibatches, 2 steps); overrides win."""
    base = dict(
        model="tiny",
        task="addition",
        prompts_per_step=4,
        group_size=4,
        max_new_tokens=6,
        num_minibatches=2,
        micro_batch_size=8,
        learning_rate=1e-2,
        max_steps=2,
        output_dir=str(tmp_path / "run"),
        eval_limit=0,
        progress=False,
        seed=3,
    )
    base.update(overrides)
    return GSPOConfig(**base)


def model_params(model):
    """A detached copy of the model's state dict."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def tiny():
    return tiny_model_and_tokenizer(arch="llama", seed=0, chat=False)
