"""Fixtures for the sampler tests: tiny models, built once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # `tests.helpers_tiny` also under a bare `pytest` (no cwd on sys.path)
    sys.path.insert(0, _ROOT)

from tests.helpers_tiny import tiny_model_and_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def llama_and_tok():
    return tiny_model_and_tokenizer(arch="llama")


@pytest.fixture(scope="session")
def tiny_by_arch():
    cache: dict[str, tuple] = {}

    def get(arch: str):
        if arch not in cache:
            cache[arch] = tiny_model_and_tokenizer(arch=arch, seed=1)
        return cache[arch]

    return get
