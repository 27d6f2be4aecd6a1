# The two commands of the Quickstart, and the dependency lock's two. Each sets up .venv first
# (idempotent, from requirements/lock.txt: see scripts/setup_env.sh).
.PHONY: setup train test lint format lock test-latest
setup:
	@bash scripts/setup_env.sh
train: setup
	.venv/bin/gspo train $(ARGS)
test: setup
	.venv/bin/python -m pytest -q $(ARGS)
# Linter, formatter check and type checker (settings in pyproject.toml); `make format` rewrites.
LINT_PATHS = src tests benchmarks
lint: setup
	.venv/bin/ruff check $(LINT_PATHS)
	.venv/bin/ruff format --check $(LINT_PATHS)
	.venv/bin/mypy
format: setup
	.venv/bin/ruff check --fix $(LINT_PATHS)
	.venv/bin/ruff format $(LINT_PATHS)
# Refresh requirements/lock.txt from the newest releases (after the suite passes on them).
lock:
	@bash scripts/lock.sh
# The canary: the suite on the newest releases, in a throw-away .venv-latest.
test-latest:
	@bash scripts/test_latest.sh $(ARGS)
