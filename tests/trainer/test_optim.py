"""Optimizer and schedule choices: 8-bit AdamW falls back clearly on CPU; schedules have the right shape."""

import logging

import pytest
import torch

from gspo.config import ConfigError, GSPOConfig
from gspo.trainer.build import build_trainer
from gspo.trainer.optim import build_optimizer, build_scheduler


def test_adamw_8bit_on_cpu_falls_back_with_a_message(caplog):
    params = [torch.nn.Parameter(torch.zeros(3))]
    with caplog.at_level(logging.WARNING, logger="gspo"):
        opt = build_optimizer(
            params,
            kind="adamw_8bit",
            lr=1e-3,
            weight_decay=0.0,
            betas=(0.9, 0.999),
            eps=1e-8,
            device=torch.device("cpu"),
        )
    assert isinstance(opt, torch.optim.AdamW)
    assert "adamw_8bit needs a CUDA device" in caplog.text


def test_qlora_on_cpu_is_refused_before_any_model_loads():
    cfg = GSPOConfig(model="/nonexistent", lora_r=4, load_in_4bit=True, device="cpu")
    with pytest.raises(ConfigError, match="load_in_4bit: QLoRA needs a CUDA device"):
        build_trainer(cfg)
    with pytest.raises(ConfigError, match="load_in_4bit: needs lora_r > 0"):
        GSPOConfig(load_in_4bit=True).validate()


@pytest.mark.parametrize(
    "schedule, expected",
    [
        ("constant", [0.5, 1.0, 1.0, 1.0, 1.0]),
        # as transformers' get_*_schedule_with_warmup: peak at the first step after warm-up, 0 at total_steps
        ("linear", [0.5, 1.0, 1.0, 2 / 3, 1 / 3]),
        ("cosine", [0.5, 1.0, 1.0, 0.75, 0.25]),
    ],
)
def test_warmup_then_schedule(schedule, expected):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, schedule=schedule, warmup_steps=2, total_steps=5)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx(expected)
