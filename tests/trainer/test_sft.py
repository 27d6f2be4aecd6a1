"""Supervised fine-tuning: prompt-masked loss with EOS, micro-batch invariance, the reference rule,
and a checkpoint that loads for RL. Tiny random models built in the test, the ``addition`` task."""

from __future__ import annotations

import json
import math

import pytest
import torch

from gspo.config import ConfigError, GSPOConfig
from gspo.models.loading import load_model_and_tokenizer
from gspo.tasks import get_task
from gspo.trainer import GSPOTrainer
from gspo.trainer.sft import (
    SFTConfig,
    SFTTrainer,
    build_examples,
    build_sft_trainer,
    completion_loss,
    encode_batch,
    pick_reference_column,
)
from tests.helpers_tiny import tiny_model_and_tokenizer


def _config(tmp_path, **overrides):
    base = dict(
        model="tiny",
        task="addition",
        batch_size=8,
        micro_batch_size=8,
        max_steps=20,
        learning_rate=1e-2,
        eval_limit=0,
        output_dir=str(tmp_path / "sft"),
        progress=False,
        seed=1,
    )
    base.update(overrides)
    return SFTConfig(**base)


def _rows(n=24):
    return get_task("addition").load("train", limit=n)


def test_encode_batch_masks_the_prompt_and_appends_eos():
    _, tok = tiny_model_and_tokenizer(chat=False)
    examples, _ = build_examples(_rows(3), "answer")
    p_ids, p_mask, c_ids, c_mask = encode_batch(tok, examples, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id)
    for b, ex in enumerate(examples):
        completion = c_ids[b, c_mask[b].bool()].tolist()
        assert completion[-1] == tok.eos_token_id
        assert tok.decode(completion[:-1]) == ex["completion"]
        assert tok.decode(p_ids[b, p_mask[b].bool()].tolist()) == ex["prompt"]  # prompt is separate (masked out)
    assert p_mask[:, -1].all()  # prompts are left-padded, as for sampling


def test_sft_lowers_the_loss_on_its_training_data(tmp_path):
    model, tok = tiny_model_and_tokenizer(chat=False)
    rows = _rows(16)
    examples, _ = build_examples(rows, "answer")
    before = completion_loss(model, tok, examples)
    trainer = SFTTrainer(model, tok, get_task("addition"), rows, _config(tmp_path, max_steps=30))
    summary = trainer.train()
    after = completion_loss(model, tok, examples)
    assert after < 0.6 * before, (before, after)
    assert summary["steps"] == 30 and summary["examples_seen"] == 240 and summary["reference_column"] == "answer"
    assert summary["reference_accuracy"] == 1.0
    lines = [json.loads(x) for x in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == list(range(1, 31))
    assert all(math.isfinite(m["loss"]) for m in lines)
    assert sum(m["loss"] for m in lines[-5:]) < sum(m["loss"] for m in lines[:5])


def test_micro_batch_size_does_not_change_the_result(tmp_path):
    states = []
    for micro in (3, 8):
        model, tok = tiny_model_and_tokenizer(chat=False)
        cfg = _config(tmp_path / str(micro), micro_batch_size=micro, max_steps=3)
        trainer = SFTTrainer(model, tok, get_task("addition"), _rows(), cfg)
        for _ in range(3):
            trainer.train_step()
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    for k in states[0]:
        torch.testing.assert_close(states[0][k], states[1][k], rtol=0, atol=1e-5)


def test_reference_column_rule():
    rows = [{"prompt": "p", "answer": "7", "solution": "3+4=7\n#### 7"}]
    assert pick_reference_column(rows) == "solution"  # the full solution beats the bare answer
    assert pick_reference_column([{**rows[0], "reference": "r"}]) == "reference"
    assert pick_reference_column([{"prompt": "p", "answer": 7}]) == "answer"
    assert pick_reference_column(rows, "answer") == "answer"
    with pytest.raises(ConfigError, match="reference_column"):
        pick_reference_column(rows, "nope")
    with pytest.raises(ConfigError, match="reference_column"):
        pick_reference_column([{"prompt": "p", "id": 1}])
    examples, skipped = build_examples([{"prompt": "a", "answer": ""}, {"prompt": "b", "answer": "2"}], "answer")
    assert skipped == 1 and [e["completion"] for e in examples] == ["2"]


def test_config_is_validated(capsys):
    with pytest.raises(ConfigError, match="batch_size"):
        SFTConfig(batch_size=0).validate()
    from gspo.cli.main import main

    assert main(["sft", "--learning-rate", "-1", "--model", "/nonexistent"]) == 2
    assert "learning_rate" in capsys.readouterr().err


def test_checkpoint_loads_and_a_gspo_step_runs_on_it(tmp_path):
    model, tok = tiny_model_and_tokenizer(chat=False)
    model_dir = tmp_path / "base"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    cfg = _config(tmp_path, model=str(model_dir), max_steps=4, eval_limit=8, eval_every=2, train_limit=40)
    summary = build_sft_trainer(cfg).train()
    assert 0.0 <= summary["eval_before"] <= 1.0 and 0.0 <= summary["eval_after"] <= 1.0
    evals = [json.loads(x) for x in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in evals if "eval/accuracy" in m] == [2, 4]

    model2, tok2 = load_model_and_tokenizer(str(tmp_path / "sft" / "final"))
    trained = model2.state_dict()
    assert any(not torch.equal(v, trained[k]) for k, v in model.state_dict().items()), "SFT must change the weights"
    task = get_task("addition")
    rl = GSPOConfig(
        model=str(tmp_path / "sft" / "final"),
        prompts_per_step=4,
        group_size=4,
        max_new_tokens=4,
        num_minibatches=2,
        max_steps=1,
        eval_limit=0,
        progress=False,
        output_dir=str(tmp_path / "rl"),
    )
    metrics = GSPOTrainer(model2, tok2, [task.reward], task.load("train", limit=16), rl).train_step()
    assert math.isfinite(metrics["loss"]) and 0.0 <= metrics["reward/mean"] <= 1.0
