# The two commands of the Quickstart. Each sets up .venv first (idempotent, see scripts/setup_env.sh).
.PHONY: setup train test
setup:
	@bash scripts/setup_env.sh
train: setup
	.venv/bin/gspo train $(ARGS)
test: setup
	.venv/bin/python -m pytest -q $(ARGS)
