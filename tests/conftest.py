"""Fixtures shared by several test folders."""

import pytest

from tests.helpers_cli import save_tiny_model


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A tiny chat-template model saved once per session, for tests that run ``gspo`` on a model folder (read-only)."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny"), chat=True)
