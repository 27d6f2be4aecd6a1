"""Fixtures for the evaluation tests: a tiny model, and the same model saved as a Hugging Face folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # `tests.helpers_tiny` also under a bare `pytest` (no cwd on sys.path)
    sys.path.insert(0, _ROOT)

from tests.helpers_tiny import tiny_model_and_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def eval_model_and_tok():
    return tiny_model_and_tokenizer(arch="llama", seed=3)


@pytest.fixture(scope="session")
def saved_tiny_models(tmp_path_factory):
    """``{"chat": dir, "plain": dir}``: tiny models saved with ``save_pretrained`` (with / without a chat template)."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    for name, chat in (("chat", True), ("plain", False)):
        model, tok = tiny_model_and_tokenizer(arch="llama", seed=3, chat=chat)
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        out[name] = str(root / name)
    return out
