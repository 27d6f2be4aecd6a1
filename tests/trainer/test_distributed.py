"""Data parallelism through accelerate (CPU, gloo): 2 processes equal 1 process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers_tiny import tiny_model_and_tokenizer

ROOT = Path(__file__).resolve().parents[2]


def _train(tmp_path, model_dir, name, processes, micro_batch_size, extra=()):
    out = tmp_path / name
    cmd = [
        sys.executable,
        "-m",
        "gspo",
        "train",
        "--model",
        str(model_dir),
        "--task",
        "addition",
        "--rewards",
        "tests.trainer.conftest:count_a_reward",
        "--max-steps",
        "2",
        "--prompts-per-step",
        "4",
        "--group-size",
        "4",
        "--max-new-tokens",
        "5",
        "--num-minibatches",
        "2",
        "--learning-rate",
        "1e-3",
        "--micro-batch-size",
        str(micro_batch_size),
        "--eval-limit",
        "0",
        "--output-dir",
        str(out),
        "--progress",
        "false",
        "--num-threads",
        "1",
        "--num-processes",
        str(processes),
        *extra,
    ]
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-4000:]
    for rank in range(1, processes + 1):  # every process really ran (not one process told it is two)
        assert f"process {rank} of {processes}" in res.stderr, res.stderr[-4000:]
    if processes > 1:
        assert "accelerate.commands.launch" in res.stderr
    weights = load_file(str(out / "final" / "model.safetensors"))
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return weights, metrics


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model, tok = tiny_model_and_tokenizer(chat=False)
    folder = tmp_path_factory.mktemp("ddp") / "model"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


SIGNATURES = {
    "gspo": ("reward/mean", "loss", "clip_frac", "ratio_mean", "ratio_max", "completion/length_mean"),
    "ppo": ("reward/mean", "loss", "clip_frac", "critic/value_loss", "critic/returns_mean"),
    "dpo": ("reward/mean", "loss", "pairs", "reward_margin", "reward_accuracy"),
}


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", sorted(SIGNATURES))
def test_two_processes_equal_one_process(tmp_path, model_dir, algorithm):
    extra = ("--algorithm", algorithm)
    w1, m1 = _train(tmp_path, model_dir, "one", 1, micro_batch_size=4, extra=extra)
    # 2 processes x 2 micro-batches of 2 against 1 process x 1 micro-batch of 4 (per minibatch of 8 rows)
    w2, m2 = _train(tmp_path, model_dir, "two", 2, micro_batch_size=2, extra=extra)
    initial = tiny_model_and_tokenizer(chat=False)[0].state_dict()
    assert any(not torch.equal(w1[k], initial[k]) for k in w1), "the run must change the parameters"
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=0, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
    for a, b in zip(m1, m2):
        for key in SIGNATURES[algorithm]:
            if "eval/accuracy" not in a:
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    if algorithm == "ppo":  # the critic too
        c1, c2 = (load_file(str(tmp_path / n / "final" / "critic" / "critic.safetensors")) for n in ("one", "two"))
        for k in c1:
            torch.testing.assert_close(c2[k], c1[k], rtol=0, atol=1e-5, msg=lambda m, k=k: f"critic {k}: {m}")
