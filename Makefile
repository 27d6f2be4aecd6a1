# The two commands of the Quickstart, and the dependency lock's two. Each sets up .venv first
# (idempotent, from requirements/lock.txt: see scripts/setup_env.sh).
.PHONY: setup train test lock test-latest
setup:
	@bash scripts/setup_env.sh
train: setup
	.venv/bin/gspo train $(ARGS)
test: setup
	.venv/bin/python -m pytest -q $(ARGS)
# Refresh requirements/lock.txt from the newest releases (after the suite passes on them).
lock:
	@bash scripts/lock.sh
# The canary: the suite on the newest releases, in a throw-away .venv-latest.
test-latest:
	@bash scripts/test_latest.sh $(ARGS)
