"""Fixtures for trainer tests: a tiny random model and a toy rule-based task, built in the test."""

from __future__ import annotations

import pytest

from tests.helpers_tiny import tiny_model_and_tokenizer


def count_a_reward(prompts, completions, **_):
    """1 point per lower-case letter, digit or 'a' (a toy verifiable reward with plenty of variance)."""
    return [float(sum(ch.islower() or ch.isdigit() for ch in c) + c.count("a")) for c in completions]


def make_rows(n=16):
    return [{"prompt": f"q{i}:", "target": "a"} for i in range(n)]


@pytest.fixture
def tiny():
    return tiny_model_and_tokenizer(arch="llama", seed=0, chat=False)
