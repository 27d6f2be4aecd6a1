"""The set-up installs exactly the locked versions (requirements/lock.txt), and nothing unlocked.

Skipped only in the environments that are built from the newest releases on purpose: the canary
(``make test-latest``) and ``make lock`` itself, which set GSPO_UNLOCKED_ENV=1.
"""

import importlib.metadata as metadata
import os
import re
from pathlib import Path

import pytest

LOCK = Path(__file__).resolve().parents[1] / "requirements" / "lock.txt"
#: Installed alongside by pip/venv or by a CUDA build of torch (the one part a GPU set-up may add).
NOT_LOCKED = re.compile(r"^(gspo|pip|setuptools|wheel|nvidia-.*|triton|cuda-.*)$")

pytestmark = pytest.mark.skipif(
    os.environ.get("GSPO_UNLOCKED_ENV") == "1",
    reason="an environment of the newest releases, built on purpose (canary / make lock)",
)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[_canonical(name)] = version
    return pins


def test_lock_file_pins_every_line_exactly():
    lines = [line for line in LOCK.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.\-+!]+", line) for line in lines)
    assert "torch" in _locked() and "transformers" in _locked()


def test_installed_versions_equal_the_lock():
    wrong = {}
    for name, version in _locked().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong[name] = (version, "not installed")
            continue
        if installed.split("+")[0] != version:  # torch's local label (+cpu, +cu128) is the build
            wrong[name] = (version, installed)
    assert not wrong, f"installed versions differ from {LOCK.name} (locked, installed): {wrong}"


def test_nothing_installed_outside_the_lock():
    locked = _locked()
    extra = sorted({_canonical(d.metadata["Name"]) for d in metadata.distributions()} - set(locked))
    extra = [name for name in extra if not NOT_LOCKED.match(name)]
    assert not extra, f"installed but not in {LOCK.name}: {extra} (refresh it with `make lock`)"
