#!/usr/bin/env bash
# The canary: the test suite against the NEWEST releases of every dependency, in a throw-away
# environment (.venv-latest), so that a release that breaks gspo is found here before it reaches
# users or a fresh clone. Prints the versions it tested. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CANARY_VENV:-.venv-latest}
bash scripts/latest_env.sh "$VENV"
echo "[canary] newest releases under test:" >&2
"$VENV/bin/python" - <<'PY' >&2
import importlib.metadata as m
for name in ("torch", "transformers", "accelerate", "peft", "tokenizers", "safetensors", "math-verify",
             "reasoning-gym", "tensorboard", "wandb", "trackio", "numpy", "pytest"):
    try:
        print(f"  {name}=={m.version(name)}")
    except m.PackageNotFoundError:
        print(f"  {name}: not installed")
PY
GSPO_UNLOCKED_ENV=1 "$VENV/bin/python" -m pytest -q "$@"
