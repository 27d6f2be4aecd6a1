"""Offline DPO (``gspo dpo --data pairs.jsonl``): the pairs file and its errors, the loss against the
starting model, micro-batch invariance, SFT's conventions (outputs, summary), held-out accuracy rising
on the embedded task. Tiny models built in the test where the embedded model is not the point."""

from __future__ import annotations

import json
import math

import pytest
import torch

from gspo.config import ConfigError
from gspo.tasks import get_task
from gspo.tasks.io import DataError
from gspo.trainer.dpo import DPOConfig, DPOTrainer, build_dpo_trainer, read_pairs
from tests.helpers_cli import run_gspo
from tests.helpers_tiny import tiny_model_and_tokenizer


def write_pairs(path, n=64, *, start=0):
    """Addition pairs: the right sum chosen, the sum with its tens digit one lower rejected."""
    rows = get_task("addition").load("train")[start : start + n]
    with open(path, "w") as f:
        for r in rows:
            right = int(r["answer"])
            wrong = right - 10 if right >= 10 else right + 1  # the tens digit one too low: the carry forgotten
            f.write(json.dumps({"prompt": r["prompt"], "chosen": str(right), "rejected": str(wrong)}) + "\n")
    return path


def _config(tmp_path, data, **overrides):
    base = dict(
        model="tiny",
        task="addition",
        data=str(data),
        batch_size=8,
        micro_batch_size=8,
        max_steps=4,
        learning_rate=1e-2,
        eval_limit=0,
        output_dir=str(tmp_path / "dpo"),
        progress=False,
        seed=1,
    )
    base.update(overrides)
    return DPOConfig(**base)


def _trainer(tmp_path, model=None, n=16, **overrides):
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = write_pairs(tmp_path / "pairs.jsonl", n)
    model, tok = model or tiny_model_and_tokenizer(chat=False)
    return DPOTrainer(model, tok, get_task("addition"), read_pairs(data), _config(tmp_path, data, **overrides))


def test_read_pairs_and_chat_prompts(tmp_path):
    path = write_pairs(tmp_path / "p.jsonl", 3)
    pairs = read_pairs(path)
    assert len(pairs) == 3 and pairs[0]["where"] == f"{path}:1" and isinstance(pairs[0]["prompt"], str)
    assert read_pairs(path, chat=True)[0]["prompt"] == [{"role": "user", "content": pairs[0]["prompt"]}]


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"prompt": "1+1=", "chosen": "2", "rejected": "3"}', '{"prompt": "1+2=", "chosen": "3"}'],
         r":2: missing column 'rejected'"),
        (['{"prompt": "1+1=", "chosen": "2", "rejected": "3"}', "", '{"prompt": "1+2=", "chosen": "3", "rejected": "3"}'],
         r":3: 'chosen' and 'rejected' are the same text"),
        (['{"prompt": "1+1=", "chosen": 2, "rejected": "3"}'], r":1: column 'chosen' must be str"),
        (['{"prompt": [{"text": "hi"}], "chosen": "a", "rejected": "b"}'], r":1: a list 'prompt' must hold chat messages"),
        (["not json"], r":1: invalid JSON"),
    ],
)  # fmt: skip
def test_bad_pairs_files_name_the_file_and_line(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"^{path}{message}"):
        read_pairs(path)


def test_bad_pairs_file_fails_before_any_model_loads(tmp_path, monkeypatch):
    import gspo.models.loading as loading

    def no_load(*_a, **_k):
        raise AssertionError("the model must not load")

    monkeypatch.setattr(loading, "load_model_and_tokenizer", no_load)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "1+1=", "chosen": "2", "rejected": "2"}\n')
    with pytest.raises(DataError, match="same text"):
        build_dpo_trainer(_config(tmp_path, bad))
    with pytest.raises(ConfigError, match="data: must be an existing file"):
        _config(tmp_path, tmp_path / "missing.jsonl").validate()


def test_the_first_step_starts_at_log_2_and_the_margin_grows(tmp_path):
    trainer = _trainer(tmp_path)
    first = trainer.train_step()
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)  # the policy is the reference
    assert first["reward_margin"] == pytest.approx(0.0, abs=1e-6) and first["pairs"] == 8
    later = [trainer.train_step() for _ in range(3)]
    assert later[-1]["reward_margin"] > 0 and later[-1]["reward_accuracy"] > 0.5
    assert later[-1]["loss"] < math.log(2)


def test_micro_batch_size_does_not_change_the_result(tmp_path):
    states = []
    for micro in (1, 8):  # one pair per micro-batch, or four
        model, tok = tiny_model_and_tokenizer(chat=False)
        trainer = _trainer(tmp_path / str(micro), model=(model.double(), tok), micro_batch_size=micro, max_grad_norm=0)
        for _ in range(2):
            trainer.train_step()
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    for k in states[0]:
        torch.testing.assert_close(states[0][k], states[1][k], rtol=0, atol=1e-10)


@pytest.mark.slow
def test_gspo_dpo_raises_held_out_accuracy_on_the_embedded_task(tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", 256)
    out = tmp_path / "run"
    res = run_gspo("dpo", "--data", data, "--max-steps", "12", "--eval-limit", "100", "--output-dir", out)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algorithm"] == "dpo" and summary["train_pairs"] == 256 and summary["steps"] == 12
    assert summary["eval_before"] <= 0.05 and summary["eval_after"] >= 0.5, summary
    assert (out / "final" / "model.safetensors").is_file() and "held-out accuracy" in res.stdout
