"""``python -m gspo`` is the ``gspo`` command (also what ``accelerate launch -m gspo`` runs)."""

from gspo.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
