"""The reward registry and loading rewards by dotted path (gspo.rewards.registry)."""

from __future__ import annotations

import pytest

from gspo.rewards import registry
from gspo.rewards.format import format_boxed_reward
from gspo.rewards.math import math_reward
from gspo.rewards.registry import available_rewards, get_reward, load_reward, register_reward, resolve_reward

SAMPLE_CONSTANT = 3


def test_builtin_names_resolve():
    for name in available_rewards():
        assert callable(get_reward(name))
    assert get_reward("math") is math_reward
    assert {"math", "choice", "code", "format_boxed", "format_hash", "format_code_block"} <= set(available_rewards())


def test_load_by_dotted_path():
    assert load_reward("gspo.rewards.format:format_boxed_reward") is format_boxed_reward
    assert load_reward("gspo.rewards.format.format_boxed_reward") is format_boxed_reward
    assert resolve_reward("gspo.rewards.math:math_reward") is math_reward
    assert resolve_reward(math_reward) is math_reward


@pytest.mark.parametrize(
    "path, message",
    [
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
        ("gspo.rewards.format:nope", "has no attribute 'nope'"),
        (f"{__name__}:SAMPLE_CONSTANT", "not a function"),
        ("gspo.rewards.format:", "must look like"),
        (":f", "must look like"),
        ("", "non-empty"),
    ],
)
def test_bad_paths_have_clear_errors(path, message):
    with pytest.raises(ValueError, match=message):
        load_reward(path)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="valid rewards"):
        resolve_reward("no_such_reward")
    with pytest.raises(ValueError, match="valid rewards"):
        get_reward("no_such_reward")
    with pytest.raises(ValueError):
        resolve_reward(42)


def test_register_reward(monkeypatch):
    monkeypatch.setattr(registry, "REWARD_REGISTRY", dict(registry.REWARD_REGISTRY))

    def length_reward(prompts, completions, **_):
        return [float(len(c)) for c in completions]

    register_reward("length", length_reward)
    assert resolve_reward("length") is length_reward
    with pytest.raises(ValueError, match="already registered"):
        register_reward("length", length_reward)
    register_reward("length", "gspo.rewards.math:math_reward", overwrite=True)
    assert get_reward("length") is math_reward
    with pytest.raises(ValueError):
        register_reward("bad:name", length_reward)
