"""``gspo prepare-model``: argument handling and the printed path (the heavy work is stubbed here;
tests/models covers the real preparations)."""

import pytest

import gspo.models.embedded as embedded
import gspo.models.smollm2 as smollm2
from gspo.cli.main import main


def test_help():
    with pytest.raises(SystemExit):
        main(["prepare-model", "--help"])


def test_smollm2_prints_the_prepared_path(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_prepare(cache_dir=None, force=False):
        seen.update(cache_dir=cache_dir, force=force)
        return tmp_path / "models" / "SmolLM2-135M-Instruct"

    monkeypatch.setattr(smollm2, "prepare_smollm2", fake_prepare)
    assert main(["prepare-model", "smollm2", "--cache-dir", str(tmp_path), "--force"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "models" / "SmolLM2-135M-Instruct")
    assert seen == {"cache_dir": str(tmp_path), "force": True}


def test_embedded_needs_output_and_passes_seed_and_steps(monkeypatch, tmp_path, capsys):
    assert main(["prepare-model", "embedded"]) == 2
    assert "--output" in capsys.readouterr().err
    seen = {}

    def fake_pretrain(output_dir, seed=0, steps=0):
        seen.update(output_dir=output_dir, seed=seed, steps=steps)
        return tmp_path / "out"

    monkeypatch.setattr(embedded, "pretrain_embedded_model", fake_pretrain)
    assert main(["prepare-model", "embedded", "--output", str(tmp_path / "out"), "--seed", "3", "--steps", "7"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out")
    assert seen == {"output_dir": str(tmp_path / "out"), "seed": 3, "steps": 7}
